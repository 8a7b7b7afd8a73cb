//! Opening the pipeline the options name (Hub repositories or folders, on the chosen device),
//! with the zero-image embedding from its disk cache: shared by the generation subcommands
//! and `serve`.

use anyhow::anyhow;
use burn::tensor::Device;
use kandinsky_pipeline::embed_cache::ZeroEmbedCache;
use kandinsky_pipeline::hub::HubOptions;
use kandinsky_pipeline::{DecoderKind, Kandinsky, Residency, Version, layout};

use crate::args::{Dtype, Model, Models};
use crate::progress::Reporter;
use crate::run::{Failure, failed, usage};

/// An opened pipeline and what it was opened from.
pub struct Opened {
    /// The pipeline.
    pub pipeline: Kandinsky,
    /// The prior as given (a Hub id or a folder).
    pub prior: String,
    /// The decoder as given.
    pub decoder: String,
    /// `f32`, `f16` or `bf16`.
    pub dtype: String,
    /// The device it runs on.
    pub device: Device,
    /// How it was fetched (for decoders opened later).
    pub options: HubOptions,
    zero_cache: Option<ZeroEmbedCache>,
    zero_from_cache: bool,
}

impl Models {
    /// The version asked for.
    pub fn version(&self) -> Version {
        match self.model {
            Model::V21 => Version::V21,
            Model::V22 => Version::V22,
        }
    }

    /// Opens the prior and the decoder of `kind` (the defaults of the version unless given),
    /// fetching only what is needed: the image encoder now when `image_encoder`; when
    /// `zero_embedding`, the zero-image embedding from the disk cache, else the image encoder
    /// to compute it (kept on disk by [`Opened::keep_zero_embedding`]).
    pub fn open(
        &self,
        kind: DecoderKind,
        image_encoder: bool,
        zero_embedding: bool,
        residency: Residency,
        reporter: &mut Reporter,
    ) -> Result<Opened, Failure> {
        let device = kandinsky_pipeline::device::device(self.backend.into(), self.dtype.into())
            .map_err(usage)?;
        let version = self.version();
        let (prior_default, decoder_default) = layout::default_repos(version, kind)
            .ok_or_else(|| usage(anyhow!("Kandinsky {version} has no such decoder")))?;
        let prior = self.prior.as_deref().unwrap_or(prior_default).to_string();
        let decoder = self
            .decoder
            .as_deref()
            .unwrap_or(decoder_default)
            .to_string();
        let options = HubOptions {
            offline: self.offline || kandinsky_pipeline::hub::offline_from_env(),
            prefer_fp16: self.dtype != Dtype::F32,
            image_encoder,
        };
        let mut pipeline =
            Kandinsky::from_pretrained(&prior, &decoder, &device, &options, reporter)
                .map_err(failed)?
                .with_residency(residency);
        let dtype = format!("{:?}", self.dtype).to_lowercase();
        let stage = pipeline.prior_mut().expect("built with a prior");
        let zero_cache = zero_embedding
            .then(|| ZeroEmbedCache::new(&stage.cache_key(), &dtype))
            .flatten();
        let width = stage.embedding_width();
        let cached = zero_cache.as_ref().and_then(|cache| {
            cache.load(width, &device).unwrap_or_else(|e| {
                reporter.line(&format!("warning: {e}; computing the embedding again"));
                None
            })
        });
        let zero_from_cache = cached.is_some();
        match cached {
            Some(zero) => stage.set_zero_image_embeds(zero).map_err(failed)?,
            // Fetched now, with progress, rather than silently when first needed.
            None if zero_cache.is_some() => stage.fetch_images(reporter).map_err(failed)?,
            None => {}
        }
        Ok(Opened {
            pipeline,
            prior,
            decoder,
            dtype,
            device,
            options,
            zero_cache,
            zero_from_cache,
        })
    }
}

impl Opened {
    /// The cache entry to fill with the zero-image embedding once computed: `None` when it
    /// was read from the cache or is not wanted.
    pub fn zero_cache_to_fill(&self) -> Option<ZeroEmbedCache> {
        self.zero_cache.clone().filter(|_| !self.zero_from_cache)
    }

    /// Keeps a zero-image embedding the pipeline computed in the disk cache (a warning when
    /// it cannot).
    pub fn keep_zero_embedding(&self, reporter: &mut Reporter) {
        let prior = self.pipeline.prior().expect("built with a prior");
        if let (Some(cache), false, Some(zero)) = (
            &self.zero_cache,
            self.zero_from_cache,
            prior.zero_image_embeds(),
        ) && let Err(e) = cache.save(zero)
        {
            reporter.line(&format!(
                "warning: cannot cache the zero-image embedding in {}: {e}",
                cache.path().display()
            ));
        }
    }
}
