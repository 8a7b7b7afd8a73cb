//! `kandinsky`: text-to-image with Kandinsky 2.1 and 2.2 from the published diffusers folders,
//! on the backend compiled in (`flex` CPU by default; `wgpu`, `vulkan`, `metal`, `cuda`).
//!
//! ```text
//! kandinsky generate --prompt "a red cat" --prior kandinsky-2-2-prior \
//!     --decoder kandinsky-2-2-decoder --output cat.png
//! ```
//!
//! Exit codes: 0 success, 1 generation failed (weights, configs, components), 2 invalid usage
//! (bad option values), 3 the output cannot be written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};
use kandinsky_pipeline::{Image, Kandinsky21, Kandinsky22, Progress, Text2ImageOptions};

/// Largest accepted image side in pixels (a 2048² image needs a 256² latent).
const MAX_SIDE: usize = 2048;

#[derive(Parser, Debug)]
#[command(
    name = "kandinsky",
    version,
    about = "Text-to-image with Kandinsky 2.1 and 2.2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate images from a prompt.
    Generate(Generate),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Model {
    #[value(name = "2.1")]
    V21,
    #[value(name = "2.2")]
    V22,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The best compiled in: cuda, metal, vulkan, wgpu, then cpu.
    Auto,
    Cpu,
    Wgpu,
    Vulkan,
    Metal,
    Cuda,
}

#[derive(clap::Args, Debug)]
struct Generate {
    /// What to draw.
    #[arg(long)]
    prompt: String,
    /// What to steer away from.
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Model version.
    #[arg(long, value_enum, default_value = "2.2")]
    model: Model,
    /// The prior repository folder (diffusers layout, e.g. kandinsky-2-2-prior).
    #[arg(long)]
    prior: PathBuf,
    /// The decoder repository folder (e.g. kandinsky-2-2-decoder or kandinsky-2-1).
    #[arg(long)]
    decoder: PathBuf,
    /// Image width in pixels (rounded up to a multiple of 64, as the reference pipelines do).
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Image height in pixels.
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Decoder steps.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Prior steps.
    #[arg(long, default_value_t = 25)]
    prior_steps: usize,
    /// Decoder guidance scale.
    #[arg(long, default_value_t = 4.0)]
    guidance: f64,
    /// Prior guidance scale.
    #[arg(long, default_value_t = 4.0)]
    prior_guidance: f64,
    /// Seed of the portable generator; random (and printed) when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Images to generate.
    #[arg(long, default_value_t = 1)]
    num_images: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Float precision of weights and computation (the files are cast on load).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Output PNG; several images get numbered names (cat-1.png, cat-2.png, ...).
    #[arg(long, default_value = "kandinsky.png")]
    output: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dtype {
    F32,
    F16,
    Bf16,
}

/// A failure and its exit code.
struct Failure(u8, anyhow::Error);

fn usage(e: anyhow::Error) -> Failure {
    Failure(2, e)
}

/// The best backend compiled into this binary.
fn best_backend() -> Backend {
    if cfg!(feature = "cuda") {
        Backend::Cuda
    } else if cfg!(feature = "metal") {
        Backend::Metal
    } else if cfg!(feature = "vulkan") {
        Backend::Vulkan
    } else if cfg!(feature = "wgpu") {
        Backend::Wgpu
    } else {
        Backend::Cpu
    }
}

fn device(backend: Backend, dtype: Dtype) -> Result<Device> {
    let mut device = backend_device(backend)?;
    let float = match dtype {
        Dtype::F32 => return Ok(device),
        Dtype::F16 => burn::tensor::FloatDType::F16,
        Dtype::Bf16 => burn::tensor::FloatDType::BF16,
    };
    if !device.supports_dtype(float) {
        bail!("the {backend:?} backend does not compute in {dtype:?}");
    }
    device
        .configure(float)
        .map_err(|e| anyhow::anyhow!("cannot use {dtype:?} on {backend:?}: {e:?}"))?;
    Ok(device)
}

fn backend_device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Auto => backend_device(best_backend()),
        Backend::Cpu => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[cfg(not(feature = "flex"))]
            bail!("the cpu backend is not compiled in (build with --features flex)")
        }
        Backend::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(0));
            #[cfg(not(feature = "cuda"))]
            bail!("the cuda backend is not compiled in (build with --features cuda)")
        }
        Backend::Vulkan => {
            #[cfg(feature = "vulkan")]
            return Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "vulkan"))]
            bail!("the vulkan backend is not compiled in (build with --features vulkan)")
        }
        Backend::Metal => {
            #[cfg(feature = "metal")]
            return Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "metal"))]
            bail!("the metal backend is not compiled in (build with --features metal)")
        }
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "wgpu"))]
            bail!("the wgpu backend is not compiled in (build with --features wgpu)")
        }
    }
}

/// The output paths: `out` for one image, `stem-1.ext`, `stem-2.ext`, ... for several.
fn output_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out
        .file_stem()
        .map_or("kandinsky".into(), |s| s.to_string_lossy().into_owned());
    let ext = out
        .extension()
        .map_or("png".into(), |s| s.to_string_lossy().into_owned());
    (1..=n)
        .map(|i| out.with_file_name(format!("{stem}-{i}.{ext}")))
        .collect()
}

/// Writes the PNG with the generation parameters as text chunks, through a temporary file in the
/// same folder renamed into place.
fn write_png(path: &Path, image: &Image, metadata: &[(&str, String)]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or("kandinsky".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            image.width as u32,
            image.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (key, value) in metadata {
            encoder.add_text_chunk((*key).to_string(), value.clone())?;
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&image.rgb)?;
        writer.finish()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Progress on stderr: one line per event, steps rewritten in place on a terminal; nothing
/// with `--quiet`.
fn reporter(quiet: bool) -> impl FnMut(Progress) {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    move |event| {
        if quiet {
            return;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let (line, step) = match event {
            Progress::Loading(component) => (format!("loading {component}"), false),
            Progress::PriorStep { step, of } => (format!("prior step {step}/{of}"), step < of),
            Progress::DecoderStep { step, of } => (format!("decoder step {step}/{of}"), step < of),
            Progress::Decoding => ("decoding".to_string(), false),
        };
        let mut err = std::io::stderr();
        if terminal && step {
            let _ = write!(err, "\r[{elapsed:7.1} s] {line}   ");
        } else {
            let lead = if terminal { "\r" } else { "" };
            let _ = writeln!(err, "{lead}[{elapsed:7.1} s] {line}   ");
        }
        let _ = err.flush();
    }
}

fn generate(args: Generate) -> std::result::Result<(), Failure> {
    for (name, value) in [("--width", args.width), ("--height", args.height)] {
        if value == 0 || value > MAX_SIDE {
            return Err(usage(anyhow::anyhow!(
                "invalid {name} {value}: expected 1 to {MAX_SIDE} pixels"
            )));
        }
    }
    for (name, value, min) in [
        ("--steps", args.steps, 1),
        ("--prior-steps", args.prior_steps, 2),
        ("--num-images", args.num_images, 1),
    ] {
        if value < min {
            return Err(usage(anyhow::anyhow!(
                "invalid {name} {value}: expected at least {min}"
            )));
        }
    }
    let paths = output_paths(&args.output, args.num_images);
    if !args.force
        && let Some(existing) = paths.iter().find(|p| p.exists())
    {
        return Err(Failure(
            3,
            anyhow::anyhow!(
                "{} exists; pass --force to overwrite it",
                existing.display()
            ),
        ));
    }
    let device = device(args.backend, args.dtype).map_err(usage)?;
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (std::process::id() as u64) << 32
    });
    if !args.quiet {
        eprintln!("seed {seed}");
    }
    let mut options = Text2ImageOptions::default();
    options.prior.steps = args.prior_steps;
    options.prior.guidance_scale = args.prior_guidance;
    options.decoder.steps = args.steps;
    options.decoder.guidance_scale = args.guidance;
    options.decoder.width = args.width;
    options.decoder.height = args.height;
    options.seed = seed;
    let prompts = vec![args.prompt.as_str(); args.num_images];
    let negatives = args
        .negative_prompt
        .as_deref()
        .map(|n| vec![n; args.num_images]);
    let failed = |e: kandinsky_pipeline::PipelineError| Failure(1, e.into());
    let mut report = reporter(args.quiet);
    let negatives = negatives.as_deref();
    let images = match args.model {
        Model::V22 => Kandinsky22::new(&args.prior, &args.decoder, &device)
            .and_then(|p| p.generate_with_progress(&prompts, negatives, &options, &mut report)),
        Model::V21 => Kandinsky21::new(&args.prior, &args.decoder, &device)
            .and_then(|p| p.generate_with_progress(&prompts, negatives, &options, &mut report)),
    }
    .map_err(failed)?;
    let model = match args.model {
        Model::V21 => "kandinsky-2.1",
        Model::V22 => "kandinsky-2.2",
    };
    let metadata = vec![
        ("prompt", args.prompt.clone()),
        (
            "negative_prompt",
            args.negative_prompt.clone().unwrap_or_default(),
        ),
        ("model", model.to_string()),
        ("seed", seed.to_string()),
        ("steps", args.steps.to_string()),
        ("prior_steps", args.prior_steps.to_string()),
        ("guidance", args.guidance.to_string()),
        ("prior_guidance", args.prior_guidance.to_string()),
        ("size", format!("{}x{}", args.width, args.height)),
    ];
    for (image, path) in images.iter().zip(&paths) {
        write_png(path, image, &metadata).map_err(|e| Failure(3, e))?;
        if !args.quiet {
            println!("{}", path.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
