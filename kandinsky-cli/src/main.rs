//! `kandinsky`: text-to-image with Kandinsky 2.1 and 2.2 from the published diffusers
//! repositories (downloaded from the Hugging Face Hub into its standard cache, or local
//! folders), on the backend compiled in (`flex` CPU by default; `wgpu`, `vulkan`, `metal`,
//! `cuda`).
//!
//! ```text
//! kandinsky generate --prompt "a red cat" --output cat.png
//! kandinsky generate --prompt "a red cat" --prior ./kandinsky-2-2-prior \
//!     --decoder ./kandinsky-2-2-decoder --offline --output cat.png
//! ```
//!
//! Exit codes: 0 success, 1 generation failed (weights missing, corrupt or not downloadable,
//! configs, components), 2 invalid usage (bad option values, a backend not compiled in),
//! 3 the output cannot be written.

mod backend;
mod hub;
mod output;
mod progress;
mod zero_cache;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use burn::tensor::Tensor;
use clap::{Parser, Subcommand, ValueEnum};
use kandinsky_pipeline::{
    Image, Kandinsky21, Kandinsky22, PipelineError, Progress, Text2ImageOptions,
};

use hub::{Component, HubRepo, Source};
use progress::Reporter;
use zero_cache::ZeroEmbedCache;

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
    /// The prior: a Hub repository id or a local folder in diffusers layout
    /// [default: kandinsky-community/kandinsky-2-2-prior, or -2-1-prior with --model 2.1].
    #[arg(long)]
    prior: Option<String>,
    /// The decoder: a Hub repository id or a local folder
    /// [default: kandinsky-community/kandinsky-2-2-decoder, or kandinsky-2-1 with --model 2.1].
    #[arg(long)]
    decoder: Option<String>,
    /// Use only the Hugging Face cache, download nothing (also set by HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
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

/// A prior or decoder repository, opened (a Hub repository knows its commit) but not yet
/// fetched.
enum Opened {
    Local(PathBuf),
    Hub(Box<HubRepo>),
}

impl Opened {
    fn open(spec: &str, offline: bool) -> anyhow::Result<Self> {
        Ok(match Source::parse(spec) {
            Source::Local(dir) => Opened::Local(dir),
            Source::Hub(id) => Opened::Hub(Box::new(HubRepo::open(&id, offline)?)),
        })
    }

    /// What identifies the contents (for the zero-embedding cache).
    fn key(&self) -> String {
        match self {
            Opened::Local(dir) => ZeroEmbedCache::local_key(dir),
            Opened::Hub(repo) => repo.key(),
        }
    }

    /// The folder, with what `components` need downloaded.
    fn folder(
        &self,
        components: &[Component],
        prefer_fp16: bool,
        reporter: &mut Reporter,
    ) -> anyhow::Result<PathBuf> {
        match self {
            Opened::Local(dir) => Ok(dir.clone()),
            Opened::Hub(repo) => repo.fetch(components, prefer_fp16, reporter),
        }
    }
}

/// Either model's text-to-image pipeline.
enum Pipeline {
    V21(Kandinsky21),
    V22(Kandinsky22),
}

impl Pipeline {
    fn set_zero_image_embeds(&self, embed: Tensor<2>) -> Result<(), PipelineError> {
        match self {
            Pipeline::V21(p) => p.set_zero_image_embeds(embed),
            Pipeline::V22(p) => p.set_zero_image_embeds(embed),
        }
    }

    fn zero_image_embeds(&self) -> Option<Tensor<2>> {
        match self {
            Pipeline::V21(p) => p.zero_image_embeds(),
            Pipeline::V22(p) => p.zero_image_embeds(),
        }
    }

    fn generate(
        &self,
        prompts: &[&str],
        negatives: Option<&[&str]>,
        options: &Text2ImageOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Image>, PipelineError> {
        match self {
            Pipeline::V21(p) => p.generate_with_progress(prompts, negatives, options, progress),
            Pipeline::V22(p) => p.generate_with_progress(prompts, negatives, options, progress),
        }
    }
}

fn check_args(args: &Generate) -> Result<(), Failure> {
    for (name, value) in [("--width", args.width), ("--height", args.height)] {
        if value == 0 || value > MAX_SIDE {
            return Err(usage(anyhow!(
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
            return Err(usage(anyhow!(
                "invalid {name} {value}: expected at least {min}"
            )));
        }
    }
    for (name, value) in [
        ("--guidance", args.guidance),
        ("--prior-guidance", args.prior_guidance),
    ] {
        if !value.is_finite() {
            return Err(usage(anyhow!(
                "invalid {name} {value}: expected a finite number"
            )));
        }
    }
    Ok(())
}

fn generate(args: Generate) -> Result<(), Failure> {
    check_args(&args)?;
    let paths = output::output_paths(&args.output, args.num_images);
    if !args.force
        && let Some(existing) = paths.iter().find(|p| p.exists())
    {
        return Err(Failure(
            3,
            anyhow!(
                "{} exists; pass --force to overwrite it",
                existing.display()
            ),
        ));
    }
    let device = backend::device(args.backend, args.dtype).map_err(usage)?;
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (std::process::id() as u64) << 32
    });
    let mut reporter = Reporter::new(args.quiet);
    reporter.line(&format!("seed {seed}"));
    let failed = |e: anyhow::Error| Failure(1, e);

    // Where the weights are, fetching only what this run needs.
    let offline = args.offline || hub::offline_from_env();
    let prefer_fp16 = args.dtype != Dtype::F32;
    let (prior_default, decoder_default) = match args.model {
        Model::V21 => (
            "kandinsky-community/kandinsky-2-1-prior",
            "kandinsky-community/kandinsky-2-1",
        ),
        Model::V22 => (
            "kandinsky-community/kandinsky-2-2-prior",
            "kandinsky-community/kandinsky-2-2-decoder",
        ),
    };
    let prior_spec = args.prior.as_deref().unwrap_or(prior_default);
    let decoder_spec = args.decoder.as_deref().unwrap_or(decoder_default);
    let prior_repo = Opened::open(prior_spec, offline).map_err(failed)?;
    let dtype_name = format!("{:?}", args.dtype).to_lowercase();
    let zero_cache = args
        .negative_prompt
        .is_none()
        .then(|| ZeroEmbedCache::new(&prior_repo.key(), &dtype_name))
        .flatten();
    let cached_zero = zero_cache.as_ref().and_then(|c| c.load(&device));
    let mut prior_components = vec![
        Component::diffusers("prior"),
        Component::transformers("text_encoder"),
        Component::files("tokenizer"),
        Component::files("scheduler"),
    ];
    if args.negative_prompt.is_none() && cached_zero.is_none() {
        prior_components.push(Component::transformers("image_encoder"));
    }
    let prior_dir = prior_repo
        .folder(&prior_components, prefer_fp16, &mut reporter)
        .map_err(failed)?;
    let mut decoder_components = vec![
        Component::diffusers("unet"),
        Component::diffusers("movq"),
        Component::files("scheduler"),
    ];
    if args.model == Model::V21 {
        decoder_components.push(Component::transformers("text_encoder"));
        decoder_components.push(Component::files("tokenizer"));
    }
    let decoder_dir = Opened::open(decoder_spec, offline)
        .and_then(|repo| repo.folder(&decoder_components, prefer_fp16, &mut reporter))
        .map_err(failed)?;

    let pipeline_failed = |e: PipelineError| Failure(1, e.into());
    let pipeline = match args.model {
        Model::V22 => Kandinsky22::new(&prior_dir, &decoder_dir, &device).map(Pipeline::V22),
        Model::V21 => Kandinsky21::new(&prior_dir, &decoder_dir, &device).map(Pipeline::V21),
    }
    .map_err(pipeline_failed)?;
    if let Some(zero) = cached_zero.clone() {
        pipeline
            .set_zero_image_embeds(zero)
            .map_err(pipeline_failed)?;
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
    let images = pipeline
        .generate(&prompts, negatives.as_deref(), &options, &mut |e| {
            reporter.event(e)
        })
        .map_err(pipeline_failed);
    reporter.finish();
    let images = images?;
    if let (Some(cache), None, Some(zero)) =
        (&zero_cache, &cached_zero, pipeline.zero_image_embeds())
        && let Err(e) = cache.save(zero)
    {
        reporter.line(&format!(
            "warning: cannot cache the zero-image embedding in {}: {e}",
            cache.path().display()
        ));
    }

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
        ("prior", prior_spec.to_string()),
        ("decoder", decoder_spec.to_string()),
        ("seed", seed.to_string()),
        ("steps", args.steps.to_string()),
        ("prior_steps", args.prior_steps.to_string()),
        ("guidance", args.guidance.to_string()),
        ("prior_guidance", args.prior_guidance.to_string()),
        ("size", format!("{}x{}", args.width, args.height)),
        ("dtype", dtype_name),
    ];
    for (image, path) in images.iter().zip(&paths) {
        output::write_png(path, image, &metadata).map_err(|e| Failure(3, e))?;
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
