//! [`Kandinsky`]: one pipeline for 2.1 and 2.2, built once from a prior and a decoder
//! repository, keeping its stages loaded between calls, and running any [`Request`].
//!
//! A generation reads top to bottom as the reference's combined pipeline does:
//! the prior stage makes the image embeddings ([`PriorStage::embed`]), the decoder stage
//! denoises and decodes them ([`DecoderStage::decode`]).

mod decoder_stage;
mod hooks;
mod output;
mod prior_stage;
mod repository;
mod request;

use std::path::Path;

use burn::tensor::{Device, Tensor};

pub use decoder_stage::DecoderStage;
pub use hooks::{Callback, Event, Hooks, Step};
pub use output::Output;
pub use prior_stage::PriorStage;
#[cfg(feature = "hub")]
pub(crate) use repository::Repository;
pub use request::{
    Embedding, FusionInput, Init, MAX_IMAGES, MAX_SIDE, MAX_STEPS, Request, SamplerChoice, Sampling,
};

use crate::error::{PipelineError, Stage};
use crate::layout::Version;
use crate::rng::{NoiseSource, Rng};
use crate::scheduler::Scheduler;
use hooks::Events;

/// Whether a pipeline keeps its models loaded between calls.
///
/// Measured with `examples/load_once.rs` on real-size random 2.2 folders in f32 (2 prior and 2
/// decoder steps at 64², 2 CPU cores): resident, the first generation took 118 s of which 91 s
/// loading, the second 16 s loading nothing, peak RSS 12.3 GB; sequential, 108 s (82 s loading)
/// then 46 s (33 s loading), peak RSS 7.5 GB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Each model loads when first needed and stays loaded: later generations load nothing.
    /// Peak memory: the models used so far (2.2 text-to-image in f32: the prior with its text
    /// encoder, 6.9 GB, and the UNet with the MoVQ, 5.3 GB; the image encoder, 7.4 GB, loads
    /// alone once for the zero-image embedding, and stays only for image inputs).
    #[default]
    Resident,
    /// Each stage loads its models for its turn and drops them after: peak memory about the
    /// largest model group (7.4 GB for 2.2 in f32), at the price of loading every time; the
    /// choice of a program that generates once (the `kandinsky` command).
    Sequential,
}

/// What one run takes from its [`Hooks`], with the request's seeded generator standing in for
/// the noise source.
pub(crate) struct Run<'n, 'a> {
    pub noise: &'n mut dyn NoiseSource,
    pub events: Events<'a>,
    pub prior_latents: Option<Tensor<2>>,
    pub latents: Option<Tensor<4>>,
    pub image_embeds: Option<(Tensor<2>, Tensor<2>)>,
    pub prior_scheduler: Option<&'a mut dyn Scheduler>,
    pub scheduler: Option<&'a mut dyn Scheduler>,
}

impl<'n, 'a: 'n> Run<'n, 'a> {
    pub fn new(hooks: Hooks<'a>, rng: &'n mut Rng) -> Self {
        let noise: &'n mut dyn NoiseSource = match hooks.noise {
            Some(noise) => noise,
            None => rng,
        };
        Self {
            noise,
            events: Events(hooks.callback),
            prior_latents: hooks.prior_latents,
            latents: hooks.latents,
            image_embeds: hooks.image_embeds,
            prior_scheduler: hooks.prior_scheduler,
            scheduler: hooks.scheduler,
        }
    }
}

/// Checks `request`, then runs `f` with what `hooks` inject (the request's seeded generator
/// standing in for the noise source).
pub(crate) fn with_run<T>(
    request: &Request,
    hooks: Hooks<'_>,
    f: impl FnOnce(&mut Run<'_, '_>) -> Result<T, PipelineError>,
) -> Result<T, PipelineError> {
    request.validate()?;
    let _flush = crate::denormals::FlushDenormals::enter();
    let mut rng = Rng::new(request.seed);
    f(&mut Run::new(hooks, &mut rng))
}

/// Kandinsky 2.1 or 2.2 over a prior and a decoder repository: construct once, generate many
/// times. The version and the decoder's kind (plain, inpainting, ControlNet-depth) are read from
/// the decoder folder; a prior and a decoder that do not fit together are refused here, before
/// any weight is loaded.
///
/// ```no_run
/// use burn::tensor::Device;
/// use kandinsky_pipeline::{Kandinsky, Request};
///
/// let device = Device::flex(); // or Device::cuda(0), Device::vulkan(..) with those features
/// let mut pipeline = Kandinsky::from_folders(
///     "kandinsky-2-2-prior".as_ref(),
///     "kandinsky-2-2-decoder".as_ref(),
///     &device,
/// )?;
/// let request = Request::text_to_image("a red cat sitting on a windowsill").with_seed(42);
/// let images = pipeline.generate(&request)?.images()?;
/// images[0].save_png("cat.png".as_ref())?;
/// // The models stay loaded: the next request loads nothing.
/// let again = pipeline.generate(&request.with_seed(43))?;
/// # Ok::<(), kandinsky_pipeline::PipelineError>(())
/// ```
#[derive(Debug)]
pub struct Kandinsky {
    prior: Option<PriorStage>,
    decoder: Option<DecoderStage>,
}

impl Kandinsky {
    /// A pipeline of a prior stage and a decoder stage (either may be left out: a prior-only
    /// pipeline makes embeddings, a decoder-only one decodes given embeddings). Refuses a
    /// prior whose embeddings the decoder does not take.
    pub fn new(
        prior: Option<PriorStage>,
        decoder: Option<DecoderStage>,
    ) -> Result<Self, PipelineError> {
        if let (Some(p), Some(d)) = (&prior, &decoder)
            && p.embedding_width() != d.embedding_width()
        {
            return Err(PipelineError::EmbeddingWidth {
                prior_width: p.embedding_width(),
                decoder_width: d.embedding_width(),
                prior: p.source(),
                decoder: d.source(),
            });
        }
        Ok(Self { prior, decoder })
    }

    /// Checks that `decoder` takes the embeddings this pipeline's prior makes (what
    /// [`replace_decoder`](Self::replace_decoder) checks), without giving it up.
    pub fn accepts(&self, decoder: &DecoderStage) -> Result<(), PipelineError> {
        match &self.prior {
            Some(p) if p.embedding_width() != decoder.embedding_width() => {
                Err(PipelineError::EmbeddingWidth {
                    prior_width: p.embedding_width(),
                    decoder_width: decoder.embedding_width(),
                    prior: p.source(),
                    decoder: decoder.source(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Puts `decoder` in place of the pipeline's decoder and returns the one it replaces (e.g. a
    /// server switching to the inpainting decoder for an inpainting request). Refuses a decoder
    /// whose embeddings the prior does not make (see [`accepts`](Self::accepts)), leaving the
    /// pipeline as it was.
    pub fn replace_decoder(
        &mut self,
        decoder: DecoderStage,
    ) -> Result<Option<DecoderStage>, PipelineError> {
        self.accepts(&decoder)?;
        Ok(self.decoder.replace(decoder))
    }

    /// A pipeline over a prior folder and a decoder folder in diffusers layout; nothing is
    /// loaded until needed (see [`preload`](Self::preload)).
    pub fn from_folders(
        prior: &Path,
        decoder: &Path,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        Self::new(
            Some(PriorStage::open(prior, device)?),
            Some(DecoderStage::open(decoder, device)?),
        )
    }

    /// A pipeline over a prior and a decoder given as Hub repository ids (`org/name`, fetched
    /// into the Hugging Face cache) or local folders (an existing path is a folder). Only the
    /// components needed are fetched: the prior, its text encoder, tokenizer and scheduler; the
    /// decoder's components for its version; the image encoder and processor when
    /// `options.image_encoder` asks for them now (else when a request first needs them).
    #[cfg(feature = "hub")]
    pub fn from_pretrained(
        prior: &str,
        decoder: &str,
        device: &Device,
        options: &crate::hub::HubOptions,
        progress: &mut dyn crate::hub::DownloadProgress,
    ) -> Result<Self, PipelineError> {
        use crate::layout::{PRIOR_CORE, PRIOR_IMAGES};
        let mut prior_components = PRIOR_CORE.to_vec();
        if options.image_encoder {
            prior_components.extend_from_slice(PRIOR_IMAGES);
        }
        let prior = Repository::open(prior, &prior_components, options, progress)?;
        Self::new(
            Some(PriorStage::from_repository(prior, device)?),
            Some(DecoderStage::from_pretrained(
                decoder, device, options, progress,
            )?),
        )
    }

    /// Sets the residency of both stages.
    pub fn with_residency(mut self, residency: Residency) -> Self {
        if let Some(p) = &mut self.prior {
            p.set_residency(residency);
        }
        if let Some(d) = &mut self.decoder {
            d.set_residency(residency);
        }
        self
    }

    /// 2.1 or 2.2 (the decoder's; `None` for a prior-only pipeline).
    pub fn version(&self) -> Option<Version> {
        self.decoder.as_ref().map(|d| d.layout().version)
    }

    /// The prior stage.
    pub fn prior(&self) -> Option<&PriorStage> {
        self.prior.as_ref()
    }

    /// The prior stage, to run on its own or to supply its zero-image embedding.
    pub fn prior_mut(&mut self) -> Option<&mut PriorStage> {
        self.prior.as_mut()
    }

    /// The decoder stage.
    pub fn decoder(&self) -> Option<&DecoderStage> {
        self.decoder.as_ref()
    }

    /// The decoder stage, to run on its own.
    pub fn decoder_mut(&mut self) -> Option<&mut DecoderStage> {
        self.decoder.as_mut()
    }

    /// Loads every model now (the prior's image encoder excepted: it loads when an image input
    /// first needs it), so that the first generation is not slower than the next.
    pub fn preload(&mut self) -> Result<(), PipelineError> {
        if let Some(p) = &mut self.prior {
            p.preload()?;
        }
        if let Some(d) = &mut self.decoder {
            d.preload()?;
        }
        Ok(())
    }

    /// Drops every loaded model (they load again when needed).
    pub fn release(&mut self) {
        if let Some(p) = &mut self.prior {
            p.release();
        }
        if let Some(d) = &mut self.decoder {
            d.release();
        }
    }

    /// Checks that this pipeline can run `request`: its options, and the stages and decoder kind
    /// it needs. [`generate`](Self::generate) does this first too.
    pub fn check(&self, request: &Request) -> Result<(), PipelineError> {
        self.check_stages(request, false)
    }

    /// [`check`](Self::check), the prior not needed when the embeddings are given.
    fn check_stages(&self, request: &Request, embeddings_given: bool) -> Result<(), PipelineError> {
        request.validate()?;
        let decoder = self
            .decoder
            .as_ref()
            .ok_or(PipelineError::MissingStage(Stage::Decoder))?;
        decoder.check(request)?;
        if !embeddings_given && self.prior.is_none() {
            return Err(PipelineError::MissingStage(Stage::Prior));
        }
        Ok(())
    }

    /// Runs `request` with nothing injected.
    pub fn generate(&mut self, request: &Request) -> Result<Output, PipelineError> {
        self.generate_with(request, Hooks::default())
    }

    /// Runs `request` with `hooks`: a noise source, starting latents, given embeddings,
    /// schedulers of the caller's choice, a step callback.
    pub fn generate_with(
        &mut self,
        request: &Request,
        hooks: Hooks<'_>,
    ) -> Result<Output, PipelineError> {
        self.check_stages(request, hooks.image_embeds.is_some())?;
        with_run(request, hooks, |run| {
            // 1. The image embeddings: given, or from the prior.
            let (image_embeds, negative) = match run.image_embeds.take() {
                Some(given) => given,
                None => {
                    let prior = self.prior.as_mut().expect("checked above");
                    prior.run(request, run)?
                }
            };
            // 2. Denoise and decode them.
            let decoder = self.decoder.as_mut().expect("checked above");
            decoder.run(request, image_embeds, negative, run)
        })
    }
}
