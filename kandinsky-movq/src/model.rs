//! The MoVQ autoencoder and its loading from a diffusers `movq/` folder.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Int, Tensor};
use kandinsky_common::load_safetensors;
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::{DIFFUSERS_FP16, DIFFUSERS_FP32, find_diffusers_weights};

use crate::config::MoVQConfig;
use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::error::MoVQError;
use crate::quantizer::VectorQuantizer;

/// The weight file names of a diffusers model folder, by variant.
pub const WEIGHTS_FP32: &str = DIFFUSERS_FP32;
/// The fp16 variant's file name.
pub const WEIGHTS_FP16: &str = DIFFUSERS_FP16;

/// The MoVQ autoencoder of Kandinsky 2.1 and 2.2 (diffusers `VQModel` with spatial norm).
#[derive(Module, Debug)]
pub struct MoVQ {
    /// Image → latent.
    pub(crate) encoder: Encoder,
    /// 1×1 conv after the encoder.
    pub(crate) quant_conv: Conv2d,
    /// The codebook (unused by the Kandinsky pipelines).
    pub(crate) quantize: VectorQuantizer,
    /// 1×1 conv before the decoder.
    pub(crate) post_quant_conv: Conv2d,
    /// Latent → image.
    pub(crate) decoder: Decoder,
    #[module(skip)]
    config: MoVQConfig,
}

impl MoVQConfig {
    /// Builds the model with lazily initialised parameters: nothing is allocated until the
    /// weights are loaded (or, without loading, until first use, with random values).
    pub fn init(&self, device: &Device) -> MoVQ {
        let dim = self.embed_dim();
        let conv1x1 = |i, o| Conv2dConfig::new([i, o], [1, 1]).init(device);
        MoVQ {
            encoder: Encoder::new(self, device),
            quant_conv: conv1x1(self.latent_channels, dim),
            quantize: VectorQuantizer::new(self.num_vq_embeddings, dim, device),
            post_quant_conv: conv1x1(dim, self.latent_channels),
            decoder: Decoder::new(self, device),
            config: self.clone(),
        }
    }
}

fn no_trace(_: &str, _: Activation<'_>) {}

impl MoVQ {
    /// Loads a diffusers `movq/` folder: `config.json` and
    /// `diffusion_pytorch_model.safetensors`, or the `.fp16.safetensors` variant when it is the
    /// only one. Weights are cast to `device`'s float dtype.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, MoVQError> {
        let weights = find_diffusers_weights(dir)?;
        Self::load_files(&dir.join("config.json"), &weights, device)
    }

    /// Loads from an explicit config file and weights file (e.g. a chosen variant).
    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, MoVQError> {
        let config = MoVQConfig::from_file(config)?;
        Ok(load_safetensors(config.init(device), weights, device)?)
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &MoVQConfig {
        &self.config
    }

    fn dtype(&self) -> burn::tensor::DType {
        self.quant_conv.weight.val().dtype()
    }

    fn check(&self, op: &'static str, x: &Tensor<4>, channels: usize) -> Result<(), MoVQError> {
        let dims = x.dims();
        if dims[1] != channels || dims[0] == 0 || dims[2] == 0 || dims[3] == 0 {
            return Err(MoVQError::InvalidInput {
                op,
                expected: format!("(batch ≥ 1, {channels}, height ≥ 1, width ≥ 1)"),
                found: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// Encodes images (B, 3, H, W) in [-1, 1] to latents (B, 4, ⌈H/8⌉, ⌈W/8⌉).
    /// There is no quantization on encode, as in the reference.
    pub fn encode(&self, image: Tensor<4>) -> Result<Tensor<4>, MoVQError> {
        self.encode_traced(image, &mut no_trace)
    }

    /// [`encode`](Self::encode), reporting each block's output to `trace`.
    pub fn encode_traced(
        &self,
        image: Tensor<4>,
        trace: Trace<'_>,
    ) -> Result<Tensor<4>, MoVQError> {
        self.check("encode", &image, self.config.in_channels)?;
        let h = self.encoder.forward(image.cast(self.dtype()), trace);
        let latents = self.quant_conv.forward(h);
        trace("quant_conv", Activation::Map(&latents));
        Ok(latents)
    }

    /// Decodes latents (B, 4, h, w) to images (B, 3, 8h, 8w), roughly in [-1, 1] (no clamp).
    ///
    /// The Kandinsky pipelines pass `force_not_quantize = true`; `false` first replaces each
    /// latent vector by its nearest codebook entry.
    pub fn decode(
        &self,
        latents: Tensor<4>,
        force_not_quantize: bool,
    ) -> Result<Tensor<4>, MoVQError> {
        self.decode_traced(latents, force_not_quantize, &mut no_trace)
    }

    /// [`decode`](Self::decode), reporting each block's output to `trace`.
    pub fn decode_traced(
        &self,
        latents: Tensor<4>,
        force_not_quantize: bool,
        trace: Trace<'_>,
    ) -> Result<Tensor<4>, MoVQError> {
        self.check("decode", &latents, self.config.latent_channels)?;
        let latents = latents.cast(self.dtype());
        let quant = if force_not_quantize {
            latents
        } else {
            self.quantize.forward(latents).0
        };
        let z = self.post_quant_conv.forward(quant.clone());
        trace("post_quant_conv", Activation::Map(&z));
        Ok(self.decoder.forward(z, &quant, trace))
    }

    /// Nearest codebook entries of latents (B, 4, h, w): the quantized latents and the indices
    /// (B, h, w).
    pub fn quantize(&self, latents: Tensor<4>) -> Result<(Tensor<4>, Tensor<3, Int>), MoVQError> {
        self.check("quantize", &latents, self.config.embed_dim())?;
        Ok(self.quantize.forward(latents.cast(self.dtype())))
    }
}
