//! One generation: a [`Job`] (a library [`Request`] and the PNG metadata of its mode) built
//! from a subcommand's arguments, then [`run`]: the pipeline opened (weights downloaded when
//! needed), the request generated, the PNGs written.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::anyhow;
use kandinsky_pipeline::scheduler::Sampler;
use kandinsky_pipeline::{
    Event, FusionInput, Hooks, IfExists, Image, PipelineError, Request, Residency, SamplerChoice,
    Sampling,
};

use crate::args::{self, Common, Model};
use crate::output;
use crate::progress::Reporter;

/// A failure and its exit code.
pub struct Failure(pub u8, pub anyhow::Error);

pub(crate) fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure(2, e.into())
}

/// The exit code of a library error: 2 for the caller's input, 3 for an unwritable output, 1
/// for the rest (weights, folders, devices).
pub(crate) fn failed(e: PipelineError) -> Failure {
    let code = match &e {
        e if e.is_invalid_input() => 2,
        PipelineError::Output { .. } => 3,
        _ => 1,
    };
    Failure(code, e.into())
}

/// A generation to run: the request, and what to write beside the image.
pub struct Job {
    /// The mode, as the subcommand names it (`text2img` for `generate`).
    mode: &'static str,
    common: Common,
    request: Request,
    /// The mode's own PNG metadata (its input files, strength…).
    extra: Vec<(&'static str, String)>,
}

/// Reads an input image; an unreadable one is a usage error.
fn read_image(path: &Path) -> Result<Image, Failure> {
    Image::open(path).map_err(usage)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

impl Job {
    /// Validates the request (sizes, steps, scales, strengths, samplers) against the limits of
    /// the pipeline: what can be checked before any model loads.
    pub fn check(&self) -> Result<(), Failure> {
        self.request.validate().map_err(failed)
    }

    /// A job of `request` with the options every subcommand shares.
    fn new(mode: &'static str, common: Common, negative: Option<String>, request: Request) -> Self {
        let request = Request {
            negative_prompt: negative,
            width: common.width,
            height: common.height,
            num_images: common.num_images,
            prior: Sampling {
                steps: common.prior_steps,
                guidance_scale: Some(common.prior_guidance),
                sampler: common.prior_scheduler.as_deref().map(|name| SamplerChoice {
                    sampler: Sampler::find(name).expect("clap checked the name"),
                    karras: false,
                }),
            },
            decoder: Sampling {
                steps: common.steps,
                guidance_scale: common.guidance,
                sampler: common.scheduler.as_deref().map(|name| SamplerChoice {
                    sampler: Sampler::find(name).expect("clap checked the name"),
                    karras: common.karras,
                }),
            },
            ..request
        };
        Self {
            mode,
            common,
            request,
            extra: Vec::new(),
        }
    }

    fn with(mut self, extra: Vec<(&'static str, String)>) -> Self {
        self.extra = extra;
        self
    }

    pub fn generate(a: args::Generate) -> Result<Self, Failure> {
        let request = Request::text_to_image(a.prompt.prompt);
        Ok(Self::new(
            "text2img",
            a.common,
            a.prompt.negative_prompt,
            request,
        ))
    }

    pub fn img2img(a: args::Img2Img) -> Result<Self, Failure> {
        let request = Request::image_to_image(a.prompt.prompt, read_image(&a.image)?, a.strength);
        Ok(
            Self::new("img2img", a.common, a.prompt.negative_prompt, request).with(vec![
                ("image", shown(&a.image)),
                ("strength", a.strength.to_string()),
            ]),
        )
    }

    pub fn inpaint(a: args::Inpaint) -> Result<Self, Failure> {
        let (image, mask) = (read_image(&a.image)?, read_image(&a.mask)?);
        let request = Request::inpaint(a.prompt.prompt, image, mask);
        Ok(
            Self::new("inpaint", a.common, a.prompt.negative_prompt, request)
                .with(vec![("image", shown(&a.image)), ("mask", shown(&a.mask))]),
        )
    }

    pub fn outpaint(a: args::Outpaint) -> Result<Self, Failure> {
        let source = read_image(&a.image)?;
        let request = Request::outpaint(a.prompt.prompt, &source, a.extend).map_err(usage)?;
        let [l, t, r, b] = a.extend;
        let mut common = a.common;
        (common.width, common.height) = (request.width, request.height);
        Ok(
            Self::new("outpaint", common, a.prompt.negative_prompt, request).with(vec![
                ("image", shown(&a.image)),
                ("extend", format!("{l},{t},{r},{b}")),
            ]),
        )
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
            let item = match item.split_once(':') {
                Some(("text", text)) => FusionInput::Text(text.to_string()),
                Some(("image", path)) => FusionInput::Image(read_image(Path::new(path))?),
                _ => {
                    return Err(usage(anyhow!(
                        "invalid --item {item:?}: expected text:PROMPT or image:PATH"
                    )));
                }
            };
            items.push((item, weight));
        }
        let weights: Vec<String> = a.weights.iter().map(f64::to_string).collect();
        Ok(
            Self::new("fuse", a.common, a.negative_prompt, Request::fusion(items)).with(vec![
                ("items", a.items.join(" | ")),
                ("weights", weights.join(",")),
            ]),
        )
    }

    pub fn variation(a: args::Variation) -> Result<Self, Failure> {
        let request = Request::variation(read_image(&a.image)?);
        Ok(Self::new("variation", a.common, None, request).with(vec![("image", shown(&a.image))]))
    }

    pub fn controlnet(a: args::ControlNet) -> Result<Self, Failure> {
        if a.common.models.model == Model::V21 {
            return Err(usage(anyhow!(
                "ControlNet-depth exists for Kandinsky 2.2 only (--model 2.2)"
            )));
        }
        let mut request = Request::controlnet(a.prompt.prompt, read_image(&a.hint)?);
        let mut extra = vec![("hint", shown(&a.hint))];
        if let Some(path) = &a.image {
            request.init = kandinsky_pipeline::Init::Image {
                image: read_image(path)?,
                strength: a.strength,
            };
            extra.push(("image", shown(path)));
            extra.push(("strength", a.strength.to_string()));
        }
        Ok(Self::new("controlnet", a.common, a.prompt.negative_prompt, request).with(extra))
    }

    pub fn emb2emb(a: args::Emb2Emb) -> Result<Self, Failure> {
        let request = Request::emb2emb(a.prompt.prompt, read_image(&a.image)?, a.strength);
        Ok(
            Self::new("emb2emb", a.common, a.prompt.negative_prompt, request).with(vec![
                ("image", shown(&a.image)),
                ("strength", a.strength.to_string()),
            ]),
        )
    }
}

/// A sampler choice for the PNG metadata: `dpm++2m+karras`, or `default` (the folder's own).
/// Runs a job.
pub fn run(job: Job) -> Result<(), Failure> {
    let Job {
        mode,
        common: c,
        mut request,
        extra,
    } = job;
    let paths = output::output_paths(&c.output, c.num_images);
    if !c.force
        && let Some(existing) = paths.iter().find(|p| p.exists())
    {
        let e = anyhow!(
            "{} exists; pass --force to overwrite it",
            existing.display()
        );
        return Err(Failure(3, e));
    }
    output::check_writable(&paths).map_err(|e| Failure(3, anyhow!(e)))?;
    output::clean_up_on_signals(&paths);
    request.seed = c.seed.unwrap_or_else(random_seed);
    let mut reporter = Reporter::new(c.quiet);
    reporter.line(&format!("seed {}", request.seed));

    // The pipeline, fetching only what this request needs. Without a negative prompt the
    // zero-image embedding is needed: from the disk cache, else computed by the image encoder.
    // One generation: each stage loads for its turn and is dropped after (lower peak memory).
    let mut opened = c.models.open(
        request.decoder_kind(),
        request.uses_images(),
        request.negative_prompt.is_none(),
        Residency::Sequential,
        &mut reporter,
    )?;
    let mut on_event = |event: Event<'_>| {
        reporter.event(event);
        ControlFlow::Continue(())
    };
    let result = opened
        .pipeline
        .generate_with(&request, Hooks::default().on_event(&mut on_event));
    reporter.finish();
    let images = result.and_then(|out| out.images()).map_err(failed)?;
    opened.keep_zero_embedding(&mut reporter);
    let (pipeline, prior_spec, decoder_spec, dtype) = (
        &opened.pipeline,
        &opened.prior,
        &opened.decoder,
        opened.dtype,
    );

    let version = pipeline.version().expect("built with a decoder");
    // The CLI's own fields around the request's parameters, in the order it always wrote them.
    let mut metadata = vec![("mode", mode.to_string())];
    let parameters = request.parameters(version);
    let (text, sampling) = parameters.split_at(2);
    metadata.extend_from_slice(text);
    metadata.extend([
        ("model", format!("kandinsky-{version}")),
        ("prior", prior_spec.to_string()),
        ("decoder", decoder_spec.to_string()),
    ]);
    metadata.extend_from_slice(sampling);
    metadata.push(("dtype", dtype));
    metadata.extend(extra);
    for (image, path) in images.iter().zip(&paths) {
        let if_exists = match c.force {
            true => IfExists::Replace,
            false => IfExists::Fail,
        };
        image
            .save_png_with_text(path, &metadata, if_exists)
            .map_err(failed)?;
        if !c.quiet {
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// A seed from the clock and the process id.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 32)
}
