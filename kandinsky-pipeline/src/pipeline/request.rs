//! One request type for every mode: what to generate, as plain data (no tensors, no
//! callbacks) that a program, the CLI or a server fills in. What is injected at run time
//! (noise, latents, schedulers, a step callback) goes in [`Hooks`](crate::Hooks).

use std::path::Path;

use crate::error::PipelineError;
use crate::image::Image;
use crate::layout::{DecoderKind, Version};
use crate::scheduler::{SAMPLERS, Sampler, Scheduler, SchedulerConfig, load_scheduler};

/// The largest image side a request may ask for, in pixels (a 2048² image needs a 256² latent).
pub const MAX_SIDE: usize = 2048;
/// The most images one request may ask for.
pub const MAX_IMAGES: usize = 64;
/// The most sampling steps a stage may run (the schedulers' training timesteps).
pub const MAX_STEPS: usize = 1000;

/// Steps, guidance and sampler of one stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Sampling steps.
    pub steps: usize,
    /// Classifier-free guidance scale (≤ 1 turns guidance off); `None`: the reference
    /// pipeline's default for the mode (4, and 7 for 2.1 image-to-image's decoder).
    pub guidance_scale: Option<f64>,
    /// The sampler, built on the stage's own `scheduler_config.json`; `None`: that config's
    /// scheduler itself (the reference's: DDPM for the 2.2 decoder, DDIM for 2.1, UnCLIP for
    /// the priors). A [`Hooks::scheduler`](crate::Hooks::scheduler) given to a run wins.
    pub sampler: Option<SamplerChoice>,
}

/// A sampler by name ([`Sampler`]) and whether it uses Karras sigmas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerChoice {
    /// The sampler.
    pub sampler: &'static Sampler,
    /// Karras et al.'s sigma spacing.
    pub karras: bool,
}

impl SamplerChoice {
    /// The sampler called `name` (a short name such as `dpm++2m`, an alias, or a diffusers
    /// class name), with Karras sigmas if `karras`; an unknown name or Karras sigmas on a
    /// sampler without them is an [`InvalidOption`](PipelineError::InvalidOption) listing the
    /// valid ones.
    pub fn parse(name: &str, karras: bool) -> Result<Self, PipelineError> {
        let sampler = Sampler::find(name).ok_or_else(|| {
            PipelineError::invalid("sampler", name, format!("one of {}", Sampler::names()))
        })?;
        if karras && !sampler.karras {
            return Err(PipelineError::invalid(
                "Karras sigmas for sampler",
                name,
                format!(
                    "a sampler with Karras sigmas ({})",
                    SAMPLERS
                        .iter()
                        .filter(|s| s.karras)
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(Self { sampler, karras })
    }

    /// `name`, or `name+karras`.
    pub fn label(&self) -> String {
        match self.karras {
            true => format!("{}+karras", self.sampler.name),
            false => self.sampler.name.to_string(),
        }
    }

    /// The scheduler of a stage whose `scheduler_config.json` is at `path`: `choice` built on
    /// it, or the config's own class.
    pub(crate) fn scheduler(
        choice: Option<Self>,
        path: &Path,
    ) -> Result<Box<dyn Scheduler>, PipelineError> {
        Ok(match choice {
            Some(c) => c
                .sampler
                .build(&SchedulerConfig::from_file(path)?, c.karras, path)?,
            None => load_scheduler(path)?,
        })
    }
}

/// An ingredient of an image fusion.
#[derive(Debug, Clone, PartialEq)]
pub enum FusionInput {
    /// A prompt, turned into an image embedding by the prior.
    Text(String),
    /// An image, embedded by the prior repository's CLIP image encoder.
    Image(Image),
}

/// Where the image embeddings that guide the decoder come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Embedding {
    /// The prior on the prompt (text-to-image and the decoder modes).
    #[default]
    Prompt,
    /// Σ weight · embedding over prompts and images (the paper's image fusion; one image of
    /// weight 1 is an image variation). Weights are used as given, as the reference does.
    Fusion(Vec<(FusionInput, f64)>),
    /// The image's CLIP embedding noised to `strength` ∈ (0, 1] and re-sampled by the prior
    /// guided by the prompt (`KandinskyV22PriorEmb2EmbPipeline`; 0.3 in the reference).
    Emb2Emb {
        /// The source image.
        image: Image,
        /// How much of the prior's schedule runs.
        strength: f64,
    },
}

/// Where the decoder's latents start.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Init {
    /// Noise (text-to-image).
    #[default]
    Noise,
    /// Image-to-image: `image` (resized to the output size) noised to `strength` ∈ (0, 1]
    /// (0.3 in the reference); only the last ⌊steps · strength⌋ decoder steps run.
    Image {
        /// The source image.
        image: Image,
        /// How much of the decoder's schedule runs.
        strength: f64,
    },
    /// Inpainting with an inpainting decoder: repaint where `mask` is white (luma ≥ 0.5).
    Inpaint {
        /// The source image.
        image: Image,
        /// White = repaint, black = keep; resized to the output size.
        mask: Image,
    },
}

/// A generation: every mode of the paper's demo is a combination of an [`Embedding`], an
/// [`Init`] and an optional ControlNet hint, with the options all modes share. Build one with
/// a mode constructor ([`text_to_image`](Self::text_to_image), [`image_to_image`](Self::image_to_image),
/// [`inpaint`](Self::inpaint), [`outpaint`](Self::outpaint), [`fusion`](Self::fusion),
/// [`variation`](Self::variation), [`controlnet`](Self::controlnet), [`emb2emb`](Self::emb2emb)),
/// then set fields or chain the `with_` methods.
///
/// ```
/// use kandinsky_pipeline::Request;
///
/// let request = Request::text_to_image("a red cat sitting on a windowsill")
///     .with_negative_prompt("blurry")
///     .with_size(768, 512)
///     .with_steps(50)
///     .with_seed(42);
/// assert!(request.validate().is_ok());
/// assert!(Request::text_to_image("a cat").with_size(0, 512).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The prompt (for fusion and variations: the empty prompt; the decoder of 2.1 reads it too).
    pub prompt: String,
    /// The negative prompt; without one the prior's negative is the zero-image embedding (and
    /// the 2.1 decoder's negative text is "").
    pub negative_prompt: Option<String>,
    /// Where the image embeddings come from.
    pub embedding: Embedding,
    /// Where the decoder starts.
    pub init: Init,
    /// A depth map for the ControlNet-depth decoder (resized to the output size).
    pub hint: Option<Image>,
    /// Image width in pixels (rounded up to a multiple of 64).
    pub width: usize,
    /// Image height in pixels (rounded up to a multiple of 64).
    pub height: usize,
    /// Images to generate (one embedding each, all from one noise stream).
    pub num_images: usize,
    /// The prior's steps (25) and guidance (4).
    pub prior: Sampling,
    /// The decoder's steps (100) and guidance (4; 7 for 2.1 image-to-image).
    pub decoder: Sampling,
    /// Seed of the portable generator ([`Rng`](crate::Rng)) used unless a noise source is
    /// injected.
    pub seed: u64,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            embedding: Embedding::Prompt,
            init: Init::Noise,
            hint: None,
            width: 512,
            height: 512,
            num_images: 1,
            prior: Sampling {
                steps: 25,
                guidance_scale: None,
                sampler: None,
            },
            decoder: Sampling {
                steps: 100,
                guidance_scale: None,
                sampler: None,
            },
            seed: 0,
        }
    }
}

impl Request {
    /// Text-to-image.
    pub fn text_to_image(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// Image-to-image: `image` changed following `prompt`, `strength` ∈ (0, 1] of the way.
    pub fn image_to_image(prompt: impl Into<String>, image: Image, strength: f64) -> Self {
        Self {
            init: Init::Image { image, strength },
            ..Self::text_to_image(prompt)
        }
    }

    /// Inpainting (an inpainting decoder): repaint where `mask` is white.
    pub fn inpaint(prompt: impl Into<String>, image: Image, mask: Image) -> Self {
        Self {
            init: Init::Inpaint { image, mask },
            ..Self::text_to_image(prompt)
        }
    }

    /// Outpainting (an inpainting decoder): `image` extended by `[left, top, right, bottom]`
    /// pixels, the canvas grown to multiples of 64 (at most [`MAX_SIDE`]), and the new area
    /// painted. The request's size is the canvas's.
    pub fn outpaint(
        prompt: impl Into<String>,
        image: &Image,
        extend: [usize; 4],
    ) -> Result<Self, PipelineError> {
        let (canvas, mask) = image.extend(extend, MAX_SIDE)?;
        Ok(Self {
            width: canvas.width,
            height: canvas.height,
            ..Self::inpaint(prompt, canvas, mask)
        })
    }

    /// Image fusion: the weighted sum of the embeddings of prompts and images.
    pub fn fusion(items: Vec<(FusionInput, f64)>) -> Self {
        Self {
            embedding: Embedding::Fusion(items),
            ..Self::default()
        }
    }

    /// Variations of an image.
    pub fn variation(image: Image) -> Self {
        Self::fusion(vec![(FusionInput::Image(image), 1.0)])
    }

    /// ControlNet-depth (2.2): follow the depth map `hint`.
    pub fn controlnet(prompt: impl Into<String>, hint: Image) -> Self {
        Self {
            hint: Some(hint),
            ..Self::text_to_image(prompt)
        }
    }

    /// Embedding-to-embedding: the image's embedding re-sampled by the prior with the prompt.
    pub fn emb2emb(prompt: impl Into<String>, image: Image, strength: f64) -> Self {
        Self {
            embedding: Embedding::Emb2Emb { image, strength },
            ..Self::text_to_image(prompt)
        }
    }

    /// Sets the negative prompt.
    pub fn with_negative_prompt(mut self, negative: impl Into<String>) -> Self {
        self.negative_prompt = Some(negative.into());
        self
    }

    /// Sets the image size in pixels.
    pub fn with_size(mut self, width: usize, height: usize) -> Self {
        (self.width, self.height) = (width, height);
        self
    }

    /// Sets the decoder's steps.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.decoder.steps = steps;
        self
    }

    /// Sets the decoder's sampler (see [`SamplerChoice::parse`]).
    pub fn with_sampler(mut self, sampler: SamplerChoice) -> Self {
        self.decoder.sampler = Some(sampler);
        self
    }

    /// Sets the prior's sampler.
    pub fn with_prior_sampler(mut self, sampler: SamplerChoice) -> Self {
        self.prior.sampler = Some(sampler);
        self
    }

    /// Sets the prior's steps.
    pub fn with_prior_steps(mut self, steps: usize) -> Self {
        self.prior.steps = steps;
        self
    }

    /// Sets the decoder's guidance scale.
    pub fn with_guidance(mut self, scale: f64) -> Self {
        self.decoder.guidance_scale = Some(scale);
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the number of images.
    pub fn with_num_images(mut self, n: usize) -> Self {
        self.num_images = n;
        self
    }

    /// The decoder kind the request needs: inpainting for [`Init::Inpaint`], ControlNet-depth
    /// with a hint, else the plain decoder.
    pub fn decoder_kind(&self) -> DecoderKind {
        match (&self.init, &self.hint) {
            (_, Some(_)) => DecoderKind::ControlNetDepth,
            (Init::Inpaint { .. }, None) => DecoderKind::Inpaint,
            _ => DecoderKind::Plain,
        }
    }

    /// Whether the request has image inputs for the prior's image encoder (fusion with an
    /// image, variations, emb2emb). Without a negative prompt the encoder is also needed once,
    /// for the zero-image negative embedding, unless that is supplied.
    pub fn uses_images(&self) -> bool {
        match &self.embedding {
            Embedding::Prompt => false,
            Embedding::Emb2Emb { .. } => true,
            Embedding::Fusion(items) => items
                .iter()
                .any(|(item, _)| matches!(item, FusionInput::Image(_))),
        }
    }

    /// The prior's guidance scale: as given, else the reference's 4.
    pub fn prior_guidance(&self) -> f64 {
        self.prior.guidance_scale.unwrap_or(4.0)
    }

    /// The decoder's guidance scale for a `version` decoder: as given, else the reference's
    /// default (7 for 2.1 image-to-image, 4 otherwise).
    pub fn decoder_guidance(&self, version: Version) -> f64 {
        let default = match (version, &self.init) {
            (Version::V21, Init::Image { .. }) => 7.0,
            _ => 4.0,
        };
        self.decoder.guidance_scale.unwrap_or(default)
    }

    /// The mode as the CLI and the server name it: `text2img`, `img2img`, `inpaint` (also an
    /// outpainting's canvas), `fusion`, `variation` (a fusion of one image of weight 1),
    /// `controlnet` or `emb2emb`.
    pub fn mode_name(&self) -> &'static str {
        if self.hint.is_some() {
            return "controlnet";
        }
        match (&self.embedding, &self.init) {
            (_, Init::Inpaint { .. }) => "inpaint",
            (Embedding::Fusion(items), _) => match items.as_slice() {
                [(FusionInput::Image(_), w)] if *w == 1.0 => "variation",
                _ => "fusion",
            },
            (Embedding::Emb2Emb { .. }, _) => "emb2emb",
            (Embedding::Prompt, Init::Image { .. }) => "img2img",
            (Embedding::Prompt, Init::Noise) => "text2img",
        }
    }

    /// The generation parameters as PNG text chunks (what the CLI and the server write beside
    /// each image): prompt, negative prompt, seed, steps, guidance and sampler of each stage,
    /// size; `version` gives the default guidance.
    pub fn parameters(&self, version: Version) -> Vec<(&'static str, String)> {
        let sampler = |choice: Option<SamplerChoice>| {
            choice.map_or_else(|| "default".to_string(), |c| c.label())
        };
        vec![
            ("mode", self.mode_name().to_string()),
            ("prompt", self.prompt.clone()),
            (
                "negative_prompt",
                self.negative_prompt.clone().unwrap_or_default(),
            ),
            ("seed", self.seed.to_string()),
            ("steps", self.decoder.steps.to_string()),
            ("prior_steps", self.prior.steps.to_string()),
            ("guidance", self.decoder_guidance(version).to_string()),
            ("prior_guidance", self.prior_guidance().to_string()),
            ("scheduler", sampler(self.decoder.sampler)),
            ("prior_scheduler", sampler(self.prior.sampler)),
            ("size", format!("{}x{}", self.width, self.height)),
        ]
    }

    /// Checks every option against its range, before anything is loaded or allocated.
    pub fn validate(&self) -> Result<(), PipelineError> {
        for (option, value) in [("width", self.width), ("height", self.height)] {
            if value == 0 || value > MAX_SIDE {
                return Err(PipelineError::invalid(
                    option,
                    value,
                    format!("1 to {MAX_SIDE} pixels"),
                ));
            }
        }
        if self.num_images == 0 || self.num_images > MAX_IMAGES {
            return Err(PipelineError::invalid(
                "num_images",
                self.num_images,
                format!("1 to {MAX_IMAGES}"),
            ));
        }
        for (option, sampling, min) in [
            ("prior steps", &self.prior, 2),
            ("decoder steps", &self.decoder, 1),
        ] {
            if sampling.steps < min || sampling.steps > MAX_STEPS {
                return Err(PipelineError::invalid(
                    option,
                    sampling.steps,
                    format!("{min} to {MAX_STEPS}"),
                ));
            }
            if let Some(choice) = sampling.sampler {
                SamplerChoice::parse(choice.sampler.name, choice.karras)?;
            }
        }
        for (option, scale) in [
            ("prior guidance scale", self.prior.guidance_scale),
            ("decoder guidance scale", self.decoder.guidance_scale),
        ] {
            // The models compute in float32 (or narrower): a scale past its range is infinite.
            if let Some(scale) = scale.filter(|s| !crate::guidance::fits_f32(*s)) {
                return Err(PipelineError::invalid(
                    option,
                    scale,
                    "a finite number (within float32's ±3.4e38)",
                ));
            }
        }
        if let Init::Image { strength, .. } = self.init {
            crate::decoder::image_start_index(self.decoder.steps, strength)?;
        }
        match &self.embedding {
            Embedding::Prompt => {}
            Embedding::Emb2Emb { strength, .. } => {
                crate::decoder::image_start_index(self.prior.steps, *strength).map(drop)?
            }
            Embedding::Fusion(items) => {
                crate::fusion::check_weights(items.iter().map(|(_, w)| *w))?
            }
        }
        Ok(())
    }
}
