//! Command-line arguments: the options every subcommand shares and each mode's own.

use std::path::PathBuf;

use clap::ValueEnum;

/// Model version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    #[value(name = "2.1")]
    V21,
    #[value(name = "2.2")]
    V22,
}

/// Compute backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The best compiled in: cuda, metal, vulkan, wgpu, then cpu.
    Auto,
    Cpu,
    Wgpu,
    Vulkan,
    Metal,
    Cuda,
}

impl From<Backend> for kandinsky_pipeline::device::Backend {
    fn from(backend: Backend) -> Self {
        use kandinsky_pipeline::device::Backend as B;
        match backend {
            Backend::Auto => B::Auto,
            Backend::Cpu => B::Cpu,
            Backend::Wgpu => B::Wgpu,
            Backend::Vulkan => B::Vulkan,
            Backend::Metal => B::Metal,
            Backend::Cuda => B::Cuda,
        }
    }
}

/// Float precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl From<Dtype> for burn::tensor::FloatDType {
    fn from(dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => Self::F32,
            Dtype::F16 => Self::F16,
            Dtype::Bf16 => Self::BF16,
        }
    }
}

/// The samplers, with their aliases and diffusers class names, for clap (which lists them in
/// `--help` and in the error for an unknown name).
fn samplers() -> clap::builder::PossibleValuesParser {
    use clap::builder::PossibleValue;
    kandinsky_pipeline::scheduler::SAMPLERS
        .iter()
        .map(|s| {
            PossibleValue::new(s.name)
                .help(s.summary)
                .aliases(s.aliases.iter().copied().chain([s.class]))
        })
        .collect::<Vec<_>>()
        .into()
}

/// Which models, where from and on what: the options of every subcommand, `serve` included.
#[derive(clap::Args, Debug, Clone)]
pub struct Models {
    /// Model version.
    #[arg(long, value_enum, default_value = "2.2")]
    pub model: Model,
    /// The prior: a Hub repository id or a local folder in diffusers layout
    /// [default: kandinsky-community/kandinsky-2-2-prior, or -2-1-prior with --model 2.1].
    #[arg(long)]
    pub prior: Option<String>,
    /// The decoder: a Hub repository id or a local folder [default: the kandinsky-community
    /// decoder of the model and mode, e.g. kandinsky-2-2-decoder, -2-2-decoder-inpaint,
    /// -2-2-controlnet-depth, kandinsky-2-1, kandinsky-2-1-inpaint].
    #[arg(long)]
    pub decoder: Option<String>,
    /// Use only the Hugging Face cache, download nothing (also set by HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Backend,
    /// Float precision of weights and computation (the files are cast on load).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// Options of every generation subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    pub models: Models,
    /// Image width in pixels (rounded up to a multiple of 64, as the reference pipelines do).
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    /// Image height in pixels.
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    /// Decoder steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Prior steps.
    #[arg(long, default_value_t = 25)]
    pub prior_steps: usize,
    /// Decoder guidance scale [default: 4, or 7 for 2.1 image-to-image, as the reference].
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Prior guidance scale.
    #[arg(long, default_value_t = 4.0)]
    pub prior_guidance: f64,
    /// Decoder sampler (a name below, or a diffusers class name) [default: the decoder's own
    /// scheduler: DDPM for 2.2, DDIM for 2.1]. Fast setting: --scheduler dpm++2m --karras
    /// --steps 25.
    #[arg(long, value_name = "NAME", ignore_case = true, value_parser = samplers())]
    pub scheduler: Option<String>,
    /// Karras sigmas for --scheduler.
    #[arg(long, requires = "scheduler")]
    pub karras: bool,
    /// Prior sampler [default: the prior's own, UnCLIP].
    #[arg(long, value_name = "NAME", ignore_case = true, value_parser = samplers())]
    pub prior_scheduler: Option<String>,
    /// Seed of the portable generator; random (and printed) when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Images to generate.
    #[arg(long, default_value_t = 1)]
    pub num_images: usize,
    /// Output PNG; several images get numbered names (cat-1.png, cat-2.png, ...).
    #[arg(long, default_value = "kandinsky.png")]
    pub output: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
}

/// A prompt and its negative.
#[derive(clap::Args, Debug, Clone)]
pub struct Prompt {
    /// What to draw.
    #[arg(long)]
    pub prompt: String,
    /// What to steer away from.
    #[arg(long)]
    pub negative_prompt: Option<String>,
}

/// `generate`: text-to-image.
#[derive(clap::Args, Debug)]
pub struct Generate {
    #[command(flatten)]
    pub prompt: Prompt,
    #[command(flatten)]
    pub common: Common,
}

/// `img2img`: image-to-image.
#[derive(clap::Args, Debug)]
pub struct Img2Img {
    #[command(flatten)]
    pub prompt: Prompt,
    /// The source image (PNG, JPEG or WebP); resized to the output size.
    #[arg(long)]
    pub image: PathBuf,
    /// How much to change it, in (0, 1]: the share of the decoder steps that run.
    #[arg(long, default_value_t = 0.3)]
    pub strength: f64,
    #[command(flatten)]
    pub common: Common,
}

/// `inpaint`: repaint a masked region.
#[derive(clap::Args, Debug)]
pub struct Inpaint {
    #[command(flatten)]
    pub prompt: Prompt,
    /// The source image.
    #[arg(long)]
    pub image: PathBuf,
    /// The mask: white (luma ≥ 50 %) = repaint, black = keep; resized to the output size.
    #[arg(long)]
    pub mask: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// `outpaint`: extend an image beyond its borders.
#[derive(clap::Args, Debug)]
pub struct Outpaint {
    #[command(flatten)]
    pub prompt: Prompt,
    /// The source image.
    #[arg(long)]
    pub image: PathBuf,
    /// Pixels to add on each side: LEFT,TOP,RIGHT,BOTTOM. The output size is the extended
    /// canvas (--width/--height are ignored), rounded up to a multiple of 64.
    #[arg(long, value_parser = parse_extend)]
    pub extend: [usize; 4],
    #[command(flatten)]
    pub common: Common,
}

/// `fuse`: mix prompts and images.
#[derive(clap::Args, Debug)]
pub struct Fuse {
    /// An ingredient: `text:PROMPT` or `image:PATH`; repeat for each.
    #[arg(long = "item", required = true)]
    pub items: Vec<String>,
    /// One weight per item, comma-separated, used as given (e.g. 0.3,0.7).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        allow_negative_numbers = true
    )]
    pub weights: Vec<f64>,
    /// A prompt to steer away from (default: the zero-image embedding).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// `variation`: variations of an image.
#[derive(clap::Args, Debug)]
pub struct Variation {
    /// The image.
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// `controlnet`: text-to-image (or image-to-image) following a depth hint (2.2).
#[derive(clap::Args, Debug)]
pub struct ControlNet {
    #[command(flatten)]
    pub prompt: Prompt,
    /// The hint: a depth map (grey or RGB, near = bright), resized to the output size.
    #[arg(long)]
    pub hint: PathBuf,
    /// A source image for image-to-image (optional).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// With --image: how much to change it, in (0, 1].
    #[arg(long, default_value_t = 0.3)]
    pub strength: f64,
    #[command(flatten)]
    pub common: Common,
}

/// `emb2emb`: re-sample an image's embedding with a prompt (prior emb2emb).
#[derive(clap::Args, Debug)]
pub struct Emb2Emb {
    #[command(flatten)]
    pub prompt: Prompt,
    /// The image whose CLIP embedding is the start.
    #[arg(long)]
    pub image: PathBuf,
    /// How far the embedding moves, in (0, 1]: the share of the prior steps that run.
    #[arg(long, default_value_t = 0.3)]
    pub strength: f64,
    #[command(flatten)]
    pub common: Common,
}

fn parse_extend(text: &str) -> Result<[usize; 4], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let values: Result<Vec<usize>, _> = parts.iter().map(|p| p.parse::<usize>()).collect();
    match values {
        Ok(v) if v.len() == 4 => Ok([v[0], v[1], v[2], v[3]]),
        _ => Err(format!(
            "expected LEFT,TOP,RIGHT,BOTTOM as four non-negative pixel counts, found {text:?}"
        )),
    }
}

/// `serve`: the HTTP server.
#[derive(clap::Args, Debug)]
pub struct Serve {
    #[command(flatten)]
    pub models: Models,
    /// Address to listen on; any but a loopback one needs --api-key (or the opt-out below).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port to listen on (7860, AUTOMATIC1111's).
    #[arg(long, default_value_t = 7860)]
    pub port: u16,
    /// The key clients must send (`Authorization: Bearer KEY`); also read from
    /// KANDINSKY_API_KEY.
    #[arg(long, env = "KANDINSKY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve a non-loopback address without an API key (anyone who reaches it can use it).
    #[arg(long)]
    pub insecure_no_api_key: bool,
    /// The decoder for inpainting and outpainting requests, opened when the first one comes
    /// [default: kandinsky-community/kandinsky-2-2-decoder-inpaint, or -2-1-inpaint];
    /// `none` serves no inpainting.
    #[arg(long, value_name = "REPO_OR_FOLDER")]
    pub inpaint_decoder: Option<String>,
    /// The decoder for ControlNet-depth requests, opened when the first one comes
    /// [default with 2.2: kandinsky-community/kandinsky-2-2-controlnet-depth]; `none` serves
    /// no ControlNet.
    #[arg(long, value_name = "REPO_OR_FOLDER")]
    pub controlnet_decoder: Option<String>,
    /// Jobs that may wait; more get 429 Too Many Requests.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub queue: u16,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
}
