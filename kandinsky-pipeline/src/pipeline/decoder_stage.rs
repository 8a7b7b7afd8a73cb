//! The decoder stage over a decoder repository (`kandinsky-2-2-decoder`, `-2-2-decoder-inpaint`,
//! `-2-2-controlnet-depth`, `kandinsky-2-1`, `kandinsky-2-1-inpaint`): image embeddings and a
//! request's init image, mask or hint → latents → pixels.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use kandinsky_clip::{MultilingualClip, Resample, TextTokenizer};
use kandinsky_movq::MoVQ;
use kandinsky_unet::UNet;
use kandinsky_unet::config::UNetConfig;

use super::hooks::{Event, Events};
use super::output::Output;
use super::repository::Repository;
use super::request::{Init, Request, SamplerChoice};
use super::{Residency, Run};
use crate::decoder::{
    DecoderInputs, DecoderModels, DecoderOptions, DecoderStart, image_start_index, latent_size,
    run_decoder,
};
use crate::error::PipelineError;
use crate::layout::{
    DecoderKind, DecoderLayout, MOVQ, SCHEDULER_CONFIG, TEXT_ENCODER, TOKENIZER, UNET, Version,
    unet_embedding_width,
};
use crate::preview::LatentPreview;
use crate::scheduler::Scheduler;

/// The decoder's models.
struct Parts {
    unet: UNet,
    movq: MoVQ,
    /// 2.1: the MultilingualCLIP and its tokenizer.
    text: Option<(MultilingualClip, TextTokenizer)>,
}

/// The decoder stage: loads its models when first needed and, with [`Residency::Resident`],
/// keeps them for the next call. Which model it is (2.1 or 2.2; plain, inpainting or
/// ControlNet-depth) is read from the folder's UNet config.
pub struct DecoderStage {
    repo: Repository,
    device: Device,
    residency: Residency,
    layout: DecoderLayout,
    embedding_width: usize,
    parts: Option<Parts>,
    preview: Option<LatentPreview>,
}

impl std::fmt::Debug for DecoderStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderStage")
            .field("repo", &self.repo.name())
            .field("residency", &self.residency)
            .field("layout", &self.layout)
            .field("embedding_width", &self.embedding_width)
            .field("loaded", &self.parts.is_some())
            .finish()
    }
}

impl DecoderStage {
    /// Opens a decoder folder: reads its UNet config (which says what it is) and checks that
    /// the components that model needs are there; nothing is loaded yet.
    pub fn open(dir: &Path, device: &Device) -> Result<Self, PipelineError> {
        Repository::local(dir, &[UNET])?;
        let layout = DecoderLayout::of_folder(dir)?;
        Self::from_repository(Repository::local(dir, layout.components())?, device)
    }

    /// A decoder given as a Hub repository id (`org/name`, its components for the model its
    /// UNet config names fetched into the Hugging Face cache now) or a local folder (an
    /// existing path); nothing is loaded yet.
    #[cfg(feature = "hub")]
    pub fn from_pretrained(
        spec: &str,
        device: &Device,
        options: &crate::hub::HubOptions,
        progress: &mut dyn crate::hub::DownloadProgress,
    ) -> Result<Self, PipelineError> {
        let repo = Repository::open(spec, &[UNET], options, progress)?;
        let layout = DecoderLayout::of_folder(repo.dir())?;
        match &repo {
            Repository::Local(dir) => crate::layout::check_folder(dir, layout.components())?,
            Repository::Hub { repo, prefer_fp16 } => {
                repo.fetch(layout.components(), *prefer_fp16, progress)?;
            }
        }
        Self::from_repository(repo, device)
    }

    pub(crate) fn from_repository(
        repo: Repository,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        let config = UNetConfig::from_file(&repo.dir().join(UNET.folder).join("config.json"))?;
        Ok(Self {
            repo,
            device: device.clone(),
            residency: Residency::default(),
            layout: DecoderLayout::of_unet(&config),
            embedding_width: unet_embedding_width(&config),
            parts: None,
            preview: None,
        })
    }

    /// Where the decoder comes from (a folder or a Hub id).
    pub fn source(&self) -> String {
        self.repo.name()
    }

    /// Which model this decoder is.
    pub fn layout(&self) -> DecoderLayout {
        self.layout
    }

    /// The width of the image embeddings the UNet takes.
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

    /// Drops the loaded models.
    pub fn release(&mut self) {
        self.parts = None;
    }

    /// Loads the models now.
    pub fn preload(&mut self) -> Result<(), PipelineError> {
        self.load(&mut Events::default()).map(drop)
    }

    /// The low-cost preview map of this decoder's latents (see [`LatentPreview`]): fitted to
    /// its MoVQ the first time (loading the models if they are not), then kept.
    pub fn latent_preview(&mut self) -> Result<LatentPreview, PipelineError> {
        if let Some(preview) = &self.preview {
            return Ok(preview.clone());
        }
        let device = self.device.clone();
        let preview = LatentPreview::fit(&self.load(&mut Events::default())?.movq, &device)?;
        if self.residency == Residency::Sequential {
            self.release();
        }
        Ok(self.preview.insert(preview).clone())
    }

    /// Decodes `request` guided by `image_embeds` against `negative` (both (B, E), B the
    /// request's number of images), e.g. from [`PriorStage::embed`](crate::PriorStage::embed).
    /// With [`Hooks`](crate::Hooks): the noise source, starting latents, the scheduler and the
    /// step callback.
    pub fn decode(
        &mut self,
        request: &Request,
        image_embeds: Tensor<2>,
        negative: Tensor<2>,
        hooks: crate::Hooks<'_>,
    ) -> Result<Output, PipelineError> {
        super::with_run(request, hooks, |run| {
            self.run(request, image_embeds, negative, run)
        })
    }

    /// Checks that this decoder can run `request`, before anything is loaded.
    pub fn check(&self, request: &Request) -> Result<(), PipelineError> {
        let (mode, needs) = match (request.decoder_kind(), self.layout.kind) {
            (wanted, found) if wanted == found => return Ok(()),
            (DecoderKind::Inpaint, _) => ("inpainting", "an inpainting UNet (9 input channels)"),
            (DecoderKind::ControlNetDepth, _) => {
                ("a ControlNet hint", "the 2.2 ControlNet-depth decoder")
            }
            (DecoderKind::Plain, DecoderKind::Inpaint) => (
                "a request without an image and a mask",
                "a plain decoder (this inpainting one needs an image and a mask)",
            ),
            (DecoderKind::Plain, _) => (
                "a request without a hint",
                "a plain decoder (the ControlNet-depth one needs a hint)",
            ),
        };
        Err(PipelineError::UnsupportedMode {
            mode,
            needs: needs.into(),
            found: format!(
                "{} is a {} {:?} decoder",
                self.repo.name(),
                self.layout.version,
                self.layout.kind
            ),
        })
    }

    pub(crate) fn run(
        &mut self,
        request: &Request,
        image_embeds: Tensor<2>,
        negative: Tensor<2>,
        run: &mut Run<'_, '_>,
    ) -> Result<Output, PipelineError> {
        let result = self.decode_embeds(request, image_embeds, negative, run);
        if self.residency == Residency::Sequential {
            self.release();
        }
        result
    }

    fn decode_embeds(
        &mut self,
        request: &Request,
        image_embeds: Tensor<2>,
        negative: Tensor<2>,
        run: &mut Run<'_, '_>,
    ) -> Result<Output, PipelineError> {
        self.check(request)?;
        let n = request.num_images;
        let expected = [n, self.embedding_width];
        for (what, embeds) in [
            ("image embeddings", &image_embeds),
            ("negative image embeddings", &negative),
        ] {
            if embeds.dims() != expected {
                return Err(PipelineError::shape(what, &embeds.dims(), &expected));
            }
        }
        let options = DecoderOptions {
            height: request.height,
            width: request.width,
            steps: request.decoder.steps,
            guidance_scale: request.decoder_guidance(self.layout.version),
        };
        let mut owned: Box<dyn Scheduler>;
        let scheduler: &mut dyn Scheduler = match run.scheduler.take() {
            Some(s) => s,
            None => {
                let path = self.repo.dir().join(SCHEDULER_CONFIG);
                owned = SamplerChoice::scheduler(request.decoder.sampler, &path)?;
                owned.as_mut()
            }
        };
        let device = self.device.clone();
        let parts = self.load(&mut run.events)?;
        let scale = parts.movq.config().scale_factor();
        let (h, w) = latent_size(options.height, options.width, scale);
        let (width, height) = (w * scale, h * scale);
        let repeat = |t: Tensor<4>| t.repeat_dim(0, n);
        let (start, first) = match &request.init {
            Init::Noise => (DecoderStart::Noise(run.latents.take()), 0),
            Init::Image { image, strength } => {
                let image = repeat(image.to_tensor(width, height, &device)?);
                let first = image_start_index(options.steps, *strength)?;
                let start = DecoderStart::Image {
                    image,
                    strength: *strength,
                };
                (start, first)
            }
            Init::Inpaint { image, mask } => {
                let start = DecoderStart::Inpaint {
                    image: repeat(image.to_tensor(width, height, &device)?),
                    keep: repeat(mask.to_keep_mask(width, height, &device)?),
                    latents: run.latents.take(),
                };
                (start, 0)
            }
        };
        let hint = match &request.hint {
            Some(hint) => {
                // As the images: Pillow's bicubic with reducing_gap=1 (the reference takes the
                // hint as a tensor, resized by the caller).
                let pixels =
                    hint.resized(width, height, Resample::Bicubic, Some(1.0), &device)? / 255.0;
                Some(repeat(pixels.unsqueeze_dim::<4>(0)))
            }
            None => None,
        };
        let prompts = vec![request.prompt.as_str(); n];
        let negatives = request.negative_prompt.as_deref().map(|s| vec![s; n]);
        let models = DecoderModels {
            unet: &parts.unet,
            movq: &parts.movq,
            text: parts.text.as_ref().map(|(e, t)| (e, t)),
        };
        let inputs = DecoderInputs {
            prompts: &prompts,
            negative_prompts: negatives.as_deref(),
            image_embeds,
            negative_image_embeds: negative,
            hint,
            start,
        };
        let of = options.steps - first;
        let pixels = run_decoder(
            models,
            scheduler,
            inputs,
            &options,
            &mut *run.noise,
            &mut run.events.decoder_step(first, of),
        )?;
        Ok(Output::new(pixels))
    }

    /// The models, loaded if they are not.
    fn load(&mut self, events: &mut Events<'_>) -> Result<&Parts, PipelineError> {
        if self.parts.is_none() {
            let _ = events.emit(Event::Loading(UNET.folder));
            let device = &self.device;
            let unet = UNet::load(&self.repo.component(UNET)?, device)?;
            let text = match self.layout.version {
                Version::V21 => Some((
                    MultilingualClip::load(&self.repo.component(TEXT_ENCODER)?, device)?,
                    TextTokenizer::from_dir(&self.repo.component(TOKENIZER)?)?,
                )),
                Version::V22 => None,
            };
            let movq = MoVQ::load(&self.repo.component(MOVQ)?, device)?;
            self.parts = Some(Parts { unet, movq, text });
            let _ = events.emit(Event::Loaded(UNET.folder));
        }
        Ok(self.parts.as_ref().expect("loaded above"))
    }
}
