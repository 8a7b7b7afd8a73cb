//! One generation: a [`Job`] built from a subcommand's arguments, then [`run`]: weights
//! resolved (downloaded when needed), embeddings (prompt, fusion or emb2emb), the decoder in
//! its mode, PNGs written with their parameters.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use burn::tensor::Tensor;
use kandinsky_pipeline::{
    DecoderMode, DecoderOptions, FusionItem, Image, Kandinsky21, Kandinsky22, PipelineError,
    PriorOptions, PriorStage, Progress, Rng,
};

use crate::args::{self, Common, Dtype, Model};
use crate::hub::{self, Component, HubRepo, Source};
use crate::output;
use crate::progress::Reporter;
use crate::zero_cache::ZeroEmbedCache;

/// Largest accepted image side in pixels (a 2048² image needs a 256² latent).
const MAX_SIDE: usize = 2048;

/// A failure and its exit code.
pub struct Failure(pub u8, pub anyhow::Error);

fn usage(e: anyhow::Error) -> Failure {
    Failure(2, e)
}

/// Where the image embeddings come from.
enum Embedding {
    /// The prior on the prompt.
    Prompt,
    /// A weighted mix of prompts and images.
    Fuse(Vec<(Item, f64)>),
    /// An image's embedding re-sampled with the prompt.
    Emb2Emb { image: Image, strength: f64 },
}

enum Item {
    Text(String),
    Image(Image),
}

/// What the decoder does.
enum Mode {
    Text,
    Image { image: Image, strength: f64 },
    Inpaint { image: Image, mask: Image },
}

/// Which published decoder a mode needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DecoderKind {
    Plain,
    Inpaint,
    ControlNet,
}

/// A generation to run.
pub struct Job {
    name: &'static str,
    common: Common,
    prompt: String,
    negative: Option<String>,
    embedding: Embedding,
    mode: Mode,
    hint: Option<Image>,
    decoder: DecoderKind,
    /// Extra PNG metadata of the mode.
    extra: Vec<(&'static str, String)>,
}

/// Reads an input image; an unreadable one is a usage error.
fn read_image(path: &Path) -> Result<Image, Failure> {
    Image::open(path).map_err(|e| usage(e.into()))
}

impl Job {
    fn new(name: &'static str, common: Common, prompt: &args::Prompt) -> Self {
        Self {
            name,
            common,
            prompt: prompt.prompt.clone(),
            negative: prompt.negative_prompt.clone(),
            embedding: Embedding::Prompt,
            mode: Mode::Text,
            hint: None,
            decoder: DecoderKind::Plain,
            extra: Vec::new(),
        }
    }

    pub fn generate(a: args::Generate) -> Result<Self, Failure> {
        Ok(Self::new("text2img", a.common, &a.prompt))
    }

    pub fn img2img(a: args::Img2Img) -> Result<Self, Failure> {
        let mut job = Self::new("img2img", a.common, &a.prompt);
        job.mode = Mode::Image {
            image: read_image(&a.image)?,
            strength: a.strength,
        };
        job.extra = vec![
            ("image", a.image.display().to_string()),
            ("strength", a.strength.to_string()),
        ];
        Ok(job)
    }

    pub fn inpaint(a: args::Inpaint) -> Result<Self, Failure> {
        let mut job = Self::new("inpaint", a.common, &a.prompt);
        job.mode = Mode::Inpaint {
            image: read_image(&a.image)?,
            mask: read_image(&a.mask)?,
        };
        job.decoder = DecoderKind::Inpaint;
        job.extra = vec![
            ("image", a.image.display().to_string()),
            ("mask", a.mask.display().to_string()),
        ];
        Ok(job)
    }

    pub fn outpaint(a: args::Outpaint) -> Result<Self, Failure> {
        let mut job = Self::new("outpaint", a.common, &a.prompt);
        let source = read_image(&a.image)?;
        let (image, mask) = extend_canvas(&source, a.extend).map_err(usage)?;
        job.common.width = image.width;
        job.common.height = image.height;
        job.mode = Mode::Inpaint { image, mask };
        job.decoder = DecoderKind::Inpaint;
        let [l, t, r, b] = a.extend;
        job.extra = vec![
            ("image", a.image.display().to_string()),
            ("extend", format!("{l},{t},{r},{b}")),
        ];
        Ok(job)
    }

    pub fn fuse(a: args::Fuse) -> Result<Self, Failure> {
        if a.items.len() != a.weights.len() {
            return Err(usage(anyhow!(
                "{} items and {} weights: give one weight per --item",
                a.items.len(),
                a.weights.len()
            )));
        }
        let mut items = Vec::new();
        for (item, &weight) in a.items.iter().zip(&a.weights) {
            if !weight.is_finite() {
                return Err(usage(anyhow!("invalid weight {weight}")));
            }
            let item = match item.split_once(':') {
                Some(("text", text)) => Item::Text(text.to_string()),
                Some(("image", path)) => Item::Image(read_image(Path::new(path))?),
                _ => {
                    return Err(usage(anyhow!(
                        "invalid --item {item:?}: expected text:PROMPT or image:PATH"
                    )));
                }
            };
            items.push((item, weight));
        }
        let prompt = args::Prompt {
            prompt: String::new(),
            negative_prompt: a.negative_prompt,
        };
        let mut job = Self::new("fuse", a.common, &prompt);
        job.embedding = Embedding::Fuse(items);
        job.extra = vec![
            ("items", a.items.join(" | ")),
            (
                "weights",
                a.weights
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ];
        Ok(job)
    }

    pub fn variation(a: args::Variation) -> Result<Self, Failure> {
        let prompt = args::Prompt {
            prompt: String::new(),
            negative_prompt: None,
        };
        let mut job = Self::new("variation", a.common, &prompt);
        job.embedding = Embedding::Fuse(vec![(Item::Image(read_image(&a.image)?), 1.0)]);
        job.extra = vec![("image", a.image.display().to_string())];
        Ok(job)
    }

    pub fn controlnet(a: args::ControlNet) -> Result<Self, Failure> {
        if a.common.model == Model::V21 {
            return Err(usage(anyhow!(
                "ControlNet-depth exists for Kandinsky 2.2 only (--model 2.2)"
            )));
        }
        let mut job = Self::new("controlnet", a.common, &a.prompt);
        job.hint = Some(read_image(&a.hint)?);
        job.decoder = DecoderKind::ControlNet;
        job.extra = vec![("hint", a.hint.display().to_string())];
        if let Some(path) = &a.image {
            job.mode = Mode::Image {
                image: read_image(path)?,
                strength: a.strength,
            };
            job.extra.push(("image", path.display().to_string()));
            job.extra.push(("strength", a.strength.to_string()));
        }
        Ok(job)
    }

    pub fn emb2emb(a: args::Emb2Emb) -> Result<Self, Failure> {
        let mut job = Self::new("emb2emb", a.common, &a.prompt);
        job.embedding = Embedding::Emb2Emb {
            image: read_image(&a.image)?,
            strength: a.strength,
        };
        job.extra = vec![
            ("image", a.image.display().to_string()),
            ("strength", a.strength.to_string()),
        ];
        Ok(job)
    }

    /// The decoder guidance: as given, else the reference's default for the mode.
    fn guidance(&self) -> f64 {
        let img2img_21 = self.common.model == Model::V21 && matches!(self.mode, Mode::Image { .. });
        self.common
            .guidance
            .unwrap_or(if img2img_21 { 7.0 } else { 4.0 })
    }

    fn default_repos(&self) -> (&'static str, &'static str) {
        match (self.common.model, self.decoder) {
            (Model::V21, DecoderKind::Inpaint) => (
                "kandinsky-community/kandinsky-2-1-prior",
                "kandinsky-community/kandinsky-2-1-inpaint",
            ),
            (Model::V21, _) => (
                "kandinsky-community/kandinsky-2-1-prior",
                "kandinsky-community/kandinsky-2-1",
            ),
            (Model::V22, DecoderKind::Inpaint) => (
                "kandinsky-community/kandinsky-2-2-prior",
                "kandinsky-community/kandinsky-2-2-decoder-inpaint",
            ),
            (Model::V22, DecoderKind::ControlNet) => (
                "kandinsky-community/kandinsky-2-2-prior",
                "kandinsky-community/kandinsky-2-2-controlnet-depth",
            ),
            (Model::V22, DecoderKind::Plain) => (
                "kandinsky-community/kandinsky-2-2-prior",
                "kandinsky-community/kandinsky-2-2-decoder",
            ),
        }
    }
}

/// The outpainting canvas: `source` with `[left, top, right, bottom]` pixels added (grey),
/// grown on the right and bottom to multiples of 64, and its mask (white = the new area).
fn extend_canvas(source: &Image, [l, t, r, b]: [usize; 4]) -> anyhow::Result<(Image, Image)> {
    let width = (source.width + l + r).div_ceil(64) * 64;
    let height = (source.height + t + b).div_ceil(64) * 64;
    if l + t + r + b == 0 {
        anyhow::bail!("--extend adds nothing: give at least one positive side");
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        anyhow::bail!("the extended canvas {width}×{height} exceeds {MAX_SIDE} pixels a side");
    }
    let mut rgb = vec![127u8; width * height * 3];
    let mut mask = vec![255u8; width * height * 3];
    let row = source.width * 3;
    for y in 0..source.height {
        let at = ((t + y) * width + l) * 3;
        rgb[at..at + row].copy_from_slice(&source.rgb[y * row..(y + 1) * row]);
        mask[at..at + row].fill(0);
    }
    Ok((
        Image::from_rgb(width, height, rgb)?,
        Image::from_rgb(width, height, mask)?,
    ))
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

/// Either model's pipeline.
enum Pipeline {
    V21(Kandinsky21),
    V22(Kandinsky22),
}

type Progress2<'a> = &'a mut dyn FnMut(Progress);

impl Pipeline {
    fn prior(&self) -> &PriorStage {
        match self {
            Pipeline::V21(p) => p.prior(),
            Pipeline::V22(p) => p.prior(),
        }
    }

    /// The image embeddings and negatives for `n` images.
    fn embeddings(
        &self,
        job: &Job,
        n: usize,
        options: &PriorOptions,
        rng: &mut Rng,
        progress: Progress2<'_>,
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let prompts = vec![job.prompt.as_str(); n];
        let negatives = job.negative.as_deref().map(|s| vec![s; n]);
        let negatives = negatives.as_deref();
        let prior = self.prior();
        match &job.embedding {
            Embedding::Prompt => prior.embed(&prompts, negatives, options, rng, progress),
            Embedding::Emb2Emb { image, strength } => prior.emb2emb(
                &prompts, negatives, image, *strength, options, rng, progress,
            ),
            Embedding::Fuse(items) => {
                let items: Vec<(FusionItem<'_>, f64)> = items
                    .iter()
                    .map(|(item, w)| match item {
                        Item::Text(t) => (FusionItem::Prompt(t), *w),
                        Item::Image(i) => (FusionItem::Image(i), *w),
                    })
                    .collect();
                let negative = job.negative.as_deref().unwrap_or("");
                let (embeds, negative) = prior.fuse(&items, negative, options, rng, progress)?;
                let e = embeds.dims()[1];
                Ok((embeds.expand([n, e]), negative.expand([n, e])))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        job: &Job,
        embeds: Tensor<2>,
        negative: Tensor<2>,
        options: &DecoderOptions,
        rng: &mut Rng,
        progress: Progress2<'_>,
    ) -> Result<Vec<Image>, PipelineError> {
        let mode = match &job.mode {
            Mode::Text => DecoderMode::TextToImage,
            Mode::Image { image, strength } => DecoderMode::ImageToImage {
                image,
                strength: *strength,
            },
            Mode::Inpaint { image, mask } => DecoderMode::Inpaint { image, mask },
        };
        let n = embeds.dims()[0];
        match self {
            Pipeline::V22(p) => p.decode(
                embeds,
                negative,
                mode,
                job.hint.as_ref(),
                options,
                rng,
                progress,
            ),
            Pipeline::V21(p) => {
                let prompts = vec![job.prompt.as_str(); n];
                // The 2.1 decoder guides against the negative prompt ("" without one).
                let negatives = job.negative.as_deref().map(|s| vec![s; n]);
                p.decode(
                    &prompts,
                    negatives.as_deref(),
                    embeds,
                    negative,
                    mode,
                    options,
                    rng,
                    progress,
                )
            }
        }
    }
}

fn check_common(c: &Common) -> Result<(), Failure> {
    for (name, value) in [("--width", c.width), ("--height", c.height)] {
        if value == 0 || value > MAX_SIDE {
            return Err(usage(anyhow!(
                "invalid {name} {value}: expected 1 to {MAX_SIDE} pixels"
            )));
        }
    }
    for (name, value, min) in [
        ("--steps", c.steps, 1),
        ("--prior-steps", c.prior_steps, 2),
        ("--num-images", c.num_images, 1),
    ] {
        if value < min {
            return Err(usage(anyhow!(
                "invalid {name} {value}: expected at least {min}"
            )));
        }
    }
    for (name, value) in [
        ("--guidance", c.guidance.unwrap_or(4.0)),
        ("--prior-guidance", c.prior_guidance),
    ] {
        if !value.is_finite() {
            return Err(usage(anyhow!(
                "invalid {name} {value}: expected a finite number"
            )));
        }
    }
    Ok(())
}

fn check_strength(job: &Job) -> Result<(), Failure> {
    let strength = match (&job.mode, &job.embedding) {
        (Mode::Image { strength, .. }, _) | (_, Embedding::Emb2Emb { strength, .. }) => *strength,
        _ => return Ok(()),
    };
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(usage(anyhow!(
            "invalid --strength {strength}: expected a value in (0, 1]"
        )));
    }
    Ok(())
}

/// Runs a job.
pub fn run(job: Job) -> Result<(), Failure> {
    let c = &job.common;
    check_common(c)?;
    check_strength(&job)?;
    let paths = output::output_paths(&c.output, c.num_images);
    if !c.force
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
    let device = crate::backend::device(c.backend, c.dtype).map_err(usage)?;
    let seed = c.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (std::process::id() as u64) << 32
    });
    let mut reporter = Reporter::new(c.quiet);
    reporter.line(&format!("seed {seed}"));
    let failed = |e: anyhow::Error| Failure(1, e);

    // Where the weights are, fetching only what this run needs.
    let offline = c.offline || hub::offline_from_env();
    let prefer_fp16 = c.dtype != Dtype::F32;
    let (prior_default, decoder_default) = job.default_repos();
    let prior_spec = c.prior.as_deref().unwrap_or(prior_default);
    let decoder_spec = c.decoder.as_deref().unwrap_or(decoder_default);
    let prior_repo = Opened::open(prior_spec, offline).map_err(failed)?;
    let dtype_name = format!("{:?}", c.dtype).to_lowercase();
    let zero_negative = job.negative.is_none();
    let zero_cache = zero_negative
        .then(|| ZeroEmbedCache::new(&prior_repo.key(), &dtype_name))
        .flatten();
    let cached_zero = zero_cache.as_ref().and_then(|z| z.load(&device));
    let mut prior_components = vec![
        Component::diffusers("prior"),
        Component::transformers("text_encoder"),
        Component::files("tokenizer"),
        Component::files("scheduler"),
    ];
    let needs_images = !matches!(job.embedding, Embedding::Prompt);
    if needs_images || (zero_negative && cached_zero.is_none()) {
        prior_components.push(Component::transformers("image_encoder"));
    }
    if needs_images {
        prior_components.push(Component::files("image_processor"));
    }
    let prior_dir = prior_repo
        .folder(&prior_components, prefer_fp16, &mut reporter)
        .map_err(failed)?;
    let mut decoder_components = vec![
        Component::diffusers("unet"),
        Component::diffusers("movq"),
        Component::files("scheduler"),
    ];
    if c.model == Model::V21 {
        decoder_components.push(Component::transformers("text_encoder"));
        decoder_components.push(Component::files("tokenizer"));
    }
    let decoder_dir = Opened::open(decoder_spec, offline)
        .and_then(|repo| repo.folder(&decoder_components, prefer_fp16, &mut reporter))
        .map_err(failed)?;

    let pipeline_failed = |e: PipelineError| Failure(1, e.into());
    let pipeline = match c.model {
        Model::V22 => Kandinsky22::new(&prior_dir, &decoder_dir, &device).map(Pipeline::V22),
        Model::V21 => Kandinsky21::new(&prior_dir, &decoder_dir, &device).map(Pipeline::V21),
    }
    .map_err(pipeline_failed)?;
    if let Some(zero) = cached_zero.clone() {
        pipeline
            .prior()
            .set_zero_image_embeds(zero)
            .map_err(pipeline_failed)?;
    }
    let prior_options = PriorOptions {
        steps: c.prior_steps,
        guidance_scale: c.prior_guidance,
    };
    let decoder_options = DecoderOptions {
        height: c.height,
        width: c.width,
        steps: c.steps,
        guidance_scale: job.guidance(),
    };
    let mut rng = Rng::new(seed);
    let result = pipeline
        .embeddings(&job, c.num_images, &prior_options, &mut rng, &mut |e| {
            reporter.event(e)
        })
        .and_then(|(embeds, negative)| {
            pipeline.decode(
                &job,
                embeds,
                negative,
                &decoder_options,
                &mut rng,
                &mut |e| reporter.event(e),
            )
        });
    reporter.finish();
    let images = result.map_err(pipeline_failed)?;
    if let (Some(cache), None, Some(zero)) = (
        &zero_cache,
        &cached_zero,
        pipeline.prior().zero_image_embeds(),
    ) && let Err(e) = cache.save(zero)
    {
        reporter.line(&format!(
            "warning: cannot cache the zero-image embedding in {}: {e}",
            cache.path().display()
        ));
    }

    let model = match c.model {
        Model::V21 => "kandinsky-2.1",
        Model::V22 => "kandinsky-2.2",
    };
    let mut metadata = vec![
        ("mode", job.name.to_string()),
        ("prompt", job.prompt.clone()),
        ("negative_prompt", job.negative.clone().unwrap_or_default()),
        ("model", model.to_string()),
        ("prior", prior_spec.to_string()),
        ("decoder", decoder_spec.to_string()),
        ("seed", seed.to_string()),
        ("steps", c.steps.to_string()),
        ("prior_steps", c.prior_steps.to_string()),
        ("guidance", job.guidance().to_string()),
        ("prior_guidance", c.prior_guidance.to_string()),
        ("size", format!("{}x{}", c.width, c.height)),
        ("dtype", dtype_name),
    ];
    metadata.extend(job.extra.iter().cloned());
    for (image, path) in images.iter().zip(&paths) {
        output::write_png(path, image, &metadata).map_err(|e| Failure(3, e))?;
        if !c.quiet {
            println!("{}", path.display());
        }
    }
    Ok(())
}
