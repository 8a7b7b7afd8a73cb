//! The prior stage over a prior repository (`kandinsky-2-2-prior`, `-2-1-prior`): a request's
//! prompt, fusion or emb2emb → image embeddings and their negatives, for the decoder stage.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use kandinsky_clip::{ClipImageProcessor, ClipTextModel, ClipVisionModel, TextTokenizer};
use kandinsky_common::ConfigError;
use kandinsky_prior::PriorTransformer;
use kandinsky_prior::config::PriorConfig;

use super::hooks::{Event, Events};
use super::repository::Repository;
use super::request::{Embedding, FusionInput, Request, SamplerChoice};
use super::{Residency, Run};
use crate::error::PipelineError;
use crate::fusion::{FusionItem, PriorModels, interpolate_with};
use crate::layout::{
    IMAGE_ENCODER, IMAGE_PROCESSOR, PRIOR, PRIOR_CORE, SCHEDULER_CONFIG, TEXT_ENCODER, TOKENIZER,
};
use crate::prior::{
    PriorOptions, PriorStart, PriorText, image_embeds, prior_loop, zero_image_embeds,
};
use crate::scheduler::Scheduler;

/// The prior with its text encoder and tokenizer.
struct TextParts {
    prior: PriorTransformer,
    text_encoder: ClipTextModel,
    tokenizer: TextTokenizer,
}

/// The image encoder and its preprocessing.
struct ImageParts {
    encoder: ClipVisionModel,
    processor: ClipImageProcessor,
}

/// The prior stage: loads its models when first needed and, with [`Residency::Resident`],
/// keeps them for the next call. The zero-image negative embedding (the decoder's negative
/// without a negative prompt) is computed once with the image encoder and kept, or supplied
/// with [`set_zero_image_embeds`](Self::set_zero_image_embeds), in which case text-to-image
/// never needs the image encoder.
pub struct PriorStage {
    repo: Repository,
    device: Device,
    residency: Residency,
    embedding_width: usize,
    text: Option<TextParts>,
    images: Option<ImageParts>,
    zero: Option<Tensor<2>>,
}

impl std::fmt::Debug for PriorStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorStage")
            .field("repo", &self.repo.name())
            .field("residency", &self.residency)
            .field("embedding_width", &self.embedding_width)
            .field("text_loaded", &self.text.is_some())
            .field("images_loaded", &self.images.is_some())
            .field("zero_image_embeds", &self.zero.is_some())
            .finish()
    }
}

impl PriorStage {
    /// Opens a prior folder: checks its components and reads the prior's config; nothing is
    /// loaded yet.
    pub fn open(dir: &Path, device: &Device) -> Result<Self, PipelineError> {
        Self::from_repository(Repository::local(dir, PRIOR_CORE)?, device)
    }

    pub(crate) fn from_repository(
        repo: Repository,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        let config = PriorConfig::from_file(&repo.dir().join(PRIOR.folder).join("config.json"))?;
        Ok(Self {
            repo,
            device: device.clone(),
            residency: Residency::default(),
            embedding_width: config.embedding_dim,
            text: None,
            images: None,
            zero: None,
        })
    }

    /// Where the prior comes from (a folder or a Hub id).
    pub fn source(&self) -> String {
        self.repo.name()
    }

    /// What identifies the prior's image encoder (a Hub repository's id and commit, or a
    /// folder's canonical path with the size and modification time of each of the encoder's
    /// files): the key of its cached zero-image embedding.
    pub fn cache_key(&self) -> String {
        self.repo.key(&[IMAGE_ENCODER])
    }

    /// Fetches the image encoder and image processor from the Hub now (a local folder: checks
    /// they are there), reporting the download to `progress`; otherwise they are fetched when a
    /// request first needs them.
    #[cfg(feature = "hub")]
    pub fn fetch_images(
        &self,
        progress: &mut dyn crate::hub::DownloadProgress,
    ) -> Result<(), PipelineError> {
        match &self.repo {
            Repository::Local(dir) => crate::layout::check_folder(dir, crate::layout::PRIOR_IMAGES),
            Repository::Hub { repo, prefer_fp16 } => repo
                .fetch(crate::layout::PRIOR_IMAGES, *prefer_fp16, progress)
                .map(drop)
                .map_err(Into::into),
        }
    }

    /// The width of the image embeddings it makes.
    pub fn embedding_width(&self) -> usize {
        self.embedding_width
    }

    /// Keep the models between calls, or load them for each call.
    pub fn set_residency(&mut self, residency: Residency) {
        self.residency = residency;
        if residency == Residency::Sequential {
            self.release();
        }
    }

    /// Drops the loaded models (the zero-image embedding is kept).
    pub fn release(&mut self) {
        self.text = None;
        self.images = None;
    }

    /// Loads the prior, its text encoder and tokenizer now (the image encoder loads when an
    /// image input first needs it).
    pub fn preload(&mut self) -> Result<(), PipelineError> {
        self.load_text(&mut Events::default()).map(drop)
    }

    /// The zero-image negative embedding (1, E) if it has been computed or supplied.
    pub fn zero_image_embeds(&self) -> Option<Tensor<2>> {
        self.zero.clone()
    }

    /// Supplies the zero-image negative embedding (1, E), e.g. one computed by an earlier run
    /// and kept on disk, so that the prior folder's `image_encoder` is neither needed nor loaded
    /// for text-to-image.
    pub fn set_zero_image_embeds(&mut self, embed: Tensor<2>) -> Result<(), PipelineError> {
        let expected = [1, self.embedding_width];
        if embed.dims() != expected {
            return Err(PipelineError::shape(
                "a zero-image embedding",
                &embed.dims(),
                &expected,
            ));
        }
        self.zero = Some(embed.to_device(&self.device));
        Ok(())
    }

    /// The image embeddings (B, E) of `request` (B = its number of images) and their negatives
    /// (B, E): the prior on the prompt, a fusion, or emb2emb, as its
    /// [`embedding`](Request::embedding) says. With [`Hooks`](crate::Hooks): the noise source,
    /// the prior's starting latents and scheduler, and the step callback.
    pub fn embed(
        &mut self,
        request: &Request,
        hooks: crate::Hooks<'_>,
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        super::with_run(request, hooks, |run| self.run(request, run))
    }

    pub(crate) fn run(
        &mut self,
        request: &Request,
        run: &mut Run<'_, '_>,
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let result = self.embeddings(request, run);
        if self.residency == Residency::Sequential {
            self.release();
        }
        result
    }

    fn embeddings(
        &mut self,
        request: &Request,
        run: &mut Run<'_, '_>,
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let n = request.num_images;
        let e = self.embedding_width;
        let options = PriorOptions {
            steps: request.prior.steps,
            guidance_scale: request.prior_guidance(),
        };
        let prompts = vec![request.prompt.as_str(); n];
        let negatives = request.negative_prompt.as_deref().map(|s| vec![s; n]);
        let negatives = negatives.as_deref();
        let mut owned: Box<dyn Scheduler>;
        let scheduler: &mut dyn Scheduler = match run.prior_scheduler.take() {
            Some(s) => s,
            None => {
                let path = self.repo.dir().join(SCHEDULER_CONFIG);
                owned = SamplerChoice::scheduler(request.prior.sampler, &path)?;
                owned.as_mut()
            }
        };
        let (start, first) = match &request.embedding {
            Embedding::Prompt => {
                // The zero-image negative first, so that the image encoder (the largest model
                // of a 2.2 prior repository) is never loaded beside the prior.
                if negatives.is_none() {
                    self.zero_embed(&mut run.events)?;
                }
                (PriorStart::Noise(run.prior_latents.take()), 0)
            }
            Embedding::Emb2Emb { image, strength } => {
                let device = self.device.clone();
                let images = self.load_images(&mut run.events)?;
                let source = image_embeds(&images.encoder, &images.processor, &[image], &device)?;
                if negatives.is_none() {
                    self.zero_embed(&mut run.events)?;
                }
                if self.residency == Residency::Sequential {
                    self.images = None; // the text parts load next
                }
                let start = PriorStart::Embedding {
                    image_embeds: source.expand([n, e]),
                    strength: *strength,
                };
                (start, crate::image_start_index(options.steps, *strength)?)
            }
            Embedding::Fusion(items) => {
                let (embeds, negative) = self.fuse(items, request, scheduler, &options, run)?;
                return Ok((embeds.expand([n, e]), negative.expand([n, e])));
            }
        };
        let parts = self.load_text(&mut run.events)?;
        let models = PriorText {
            prior: &parts.prior,
            text_encoder: &parts.text_encoder,
            tokenizer: &parts.tokenizer,
        };
        let of = options.steps - first;
        let out = prior_loop(
            models,
            scheduler,
            &prompts,
            negatives,
            start,
            &options,
            &mut *run.noise,
            &mut run.events.prior_step(first, of),
        )?;
        let negative = match out.negative_image_embeds {
            Some(negative) => negative,
            None => self.zero_embed(&mut run.events)?.expand([n, e]),
        };
        Ok((out.image_embeds, negative))
    }

    /// A fusion (1, E) and its negative (1, E).
    fn fuse(
        &mut self,
        items: &[(FusionInput, f64)],
        request: &Request,
        scheduler: &mut dyn Scheduler,
        options: &PriorOptions,
        run: &mut Run<'_, '_>,
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let negative = request.negative_prompt.as_deref().unwrap_or("");
        self.load_images(&mut run.events)?;
        // Without a negative prompt the negative is the zero-image embedding: the kept one.
        let zero = match negative {
            "" => Some(self.zero_embed(&mut run.events)?),
            _ => None,
        };
        self.load_text(&mut run.events)?;
        let (Some(text), Some(images)) = (&self.text, &self.images) else {
            unreachable!("both were just loaded");
        };
        let models = PriorModels {
            prior: &text.prior,
            text_encoder: &text.text_encoder,
            tokenizer: &text.tokenizer,
            image_encoder: &images.encoder,
            image_processor: &images.processor,
        };
        let items: Vec<(FusionItem<'_>, f64)> = items
            .iter()
            .map(|(item, w)| match item {
                FusionInput::Text(t) => (FusionItem::Prompt(t), *w),
                FusionInput::Image(i) => (FusionItem::Image(i), *w),
            })
            .collect();
        interpolate_with(
            models,
            scheduler,
            (&items, negative, None),
            zero,
            options,
            &mut *run.noise,
        )
    }

    /// The prior, its text encoder and tokenizer, loaded if they are not.
    fn load_text(&mut self, events: &mut Events<'_>) -> Result<&TextParts, PipelineError> {
        if self.text.is_none() {
            let _ = events.emit(Event::Loading(PRIOR.folder));
            let device = &self.device;
            self.text = Some(TextParts {
                prior: PriorTransformer::load(&self.repo.component(PRIOR)?, device)?,
                text_encoder: ClipTextModel::load(&self.repo.component(TEXT_ENCODER)?, device)?,
                tokenizer: TextTokenizer::from_dir(&self.repo.component(TOKENIZER)?)?,
            });
            let _ = events.emit(Event::Loaded(PRIOR.folder));
        }
        Ok(self.text.as_ref().expect("loaded above"))
    }

    /// The CLIP image encoder and its preprocessing, loaded if they are not.
    fn load_images(&mut self, events: &mut Events<'_>) -> Result<&ImageParts, PipelineError> {
        if self.images.is_none() {
            let processor_dir = self.repo.component(IMAGE_PROCESSOR)?;
            let encoder_dir = self.repo.component(IMAGE_ENCODER)?;
            let _ = events.emit(Event::Loading(IMAGE_ENCODER.folder));
            let processor_config = processor_dir.join("preprocessor_config.json");
            let processor = ClipImageProcessor::from_file(&processor_config)
                .map_err(kandinsky_clip::ClipError::from)?;
            let encoder = ClipVisionModel::load(&encoder_dir, &self.device)?;
            let side = encoder.config().image_size;
            if processor.crop_size != (side, side) {
                let (h, w) = processor.crop_size;
                return Err(kandinsky_clip::ClipError::from(ConfigError::invalid(
                    &processor_config,
                    "crop_size",
                    format!("expected the image encoder's {side}×{side}, found {h}×{w}"),
                ))
                .into());
            }
            self.images = Some(ImageParts { encoder, processor });
            let _ = events.emit(Event::Loaded(IMAGE_ENCODER.folder));
        }
        Ok(self.images.as_ref().expect("loaded above"))
    }

    /// The zero-image negative embedding (1, E), computed with the image encoder on first use
    /// (loaded for it alone unless image inputs keep it loaded).
    fn zero_embed(&mut self, events: &mut Events<'_>) -> Result<Tensor<2>, PipelineError> {
        if let Some(zero) = &self.zero {
            return Ok(zero.clone());
        }
        let zero = match &self.images {
            Some(images) => zero_image_embeds(&images.encoder, 1, &self.device)?,
            None => {
                let dir = self.repo.component(IMAGE_ENCODER).map_err(|e| match e {
                    PipelineError::MissingComponent { dir, .. } => {
                        PipelineError::MissingComponent {
                            dir,
                            component: "image_encoder (needed for the zero-image embedding)".into(),
                        }
                    }
                    other => other,
                })?;
                let _ = events.emit(Event::Loading(IMAGE_ENCODER.folder));
                let encoder = ClipVisionModel::load(&dir, &self.device)?;
                let _ = events.emit(Event::Loaded(IMAGE_ENCODER.folder));
                zero_image_embeds(&encoder, 1, &self.device)?
            }
        };
        self.zero = Some(zero.clone());
        Ok(zero)
    }
}
