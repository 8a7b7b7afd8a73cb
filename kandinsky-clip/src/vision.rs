//! The CLIP image tower with its projection (transformers `CLIPVisionModelWithProjection`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::find_transformers_weights;
use kandinsky_common::{LinearLayout, load_safetensors_with};

use crate::config::ClipVisionConfig;
use crate::encoder::{ClipEncoder, EncoderSizes, layer_norm};
use crate::error::{ClipError, check_shape};

/// Patch, class and position embeddings (`vision_model.embeddings`).
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// The learned CLS token (dim).
    pub(crate) class_embedding: Param<Tensor<1>>,
    /// Patch projection: a conv with kernel and stride = patch size, no bias.
    pub(crate) patch_embedding: Conv2d,
    /// Position table (1 + patches, dim).
    pub(crate) position_embedding: Embedding,
}

/// `vision_model`: embeddings, pre-LayerNorm, encoder, post-LayerNorm.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Embeddings.
    pub(crate) embeddings: ClipVisionEmbeddings,
    /// LayerNorm before the encoder (transformers' spelling).
    pub(crate) pre_layrnorm: LayerNorm,
    /// The transformer.
    pub(crate) encoder: ClipEncoder,
    /// LayerNorm of the CLS output.
    pub(crate) post_layernorm: LayerNorm,
}

/// CLIP image encoder with projection: image variations, image fusion and the negative image
/// embedding.
#[derive(Module, Debug)]
pub struct ClipVisionModel {
    /// The transformer.
    pub(crate) vision_model: ClipVisionTransformer,
    /// Pooled CLS state → `image_embeds` (no bias).
    pub(crate) visual_projection: Linear,
    #[module(skip)]
    config: ClipVisionConfig,
}

/// What the image encoder returns.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput {
    /// The projected, post-LayerNormed CLS state (B, projection_dim); not normalized.
    pub image_embeds: Tensor<2>,
    /// The encoder's last hidden states (B, 1 + patches, hidden), before `post_layernorm`.
    pub last_hidden_state: Tensor<3>,
}

impl ClipVisionConfig {
    /// Builds the model; the CLS token (one vector) starts at zero, the rest is lazily
    /// initialised.
    pub fn init(&self, device: &Device) -> ClipVisionModel {
        let dim = self.hidden_size;
        let p = self.patch_size;
        let positions = self.grid() * self.grid() + 1;
        ClipVisionModel {
            vision_model: ClipVisionTransformer {
                embeddings: ClipVisionEmbeddings {
                    class_embedding: Param::from_tensor(Tensor::zeros([dim], device)),
                    patch_embedding: Conv2dConfig::new([self.num_channels, dim], [p, p])
                        .with_stride([p, p])
                        .with_bias(false)
                        .init(device),
                    position_embedding: EmbeddingConfig::new(positions, dim).init(device),
                },
                pre_layrnorm: layer_norm(dim, self.layer_norm_eps, device),
                encoder: ClipEncoder::new(
                    EncoderSizes {
                        dim,
                        intermediate: self.intermediate_size,
                        heads: self.num_attention_heads,
                        layers: self.num_hidden_layers,
                        act: self.hidden_act,
                        eps: self.layer_norm_eps,
                    },
                    device,
                ),
                post_layernorm: layer_norm(dim, self.layer_norm_eps, device),
            },
            visual_projection: LinearConfig::new(dim, self.projection_dim)
                .with_bias(false)
                .init(device),
            config: self.clone(),
        }
    }
}

fn no_trace(_: &str, _: Activation<'_>) {}

impl ClipVisionModel {
    /// Loads a transformers folder (`config.json` + `model.safetensors`, or the fp16 variant),
    /// e.g. the `image_encoder/` of a Kandinsky prior repo.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ClipError> {
        let weights = find_transformers_weights(dir)?;
        Self::load_files(&dir.join("config.json"), &weights, device)
    }

    /// Loads from an explicit config file and weights file.
    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, ClipError> {
        let config = ClipVisionConfig::from_file(config)?;
        // Linear weights stay as stored and mapped: loading the bigG tower (6.9 GB) then touches
        // no fresh memory, which is what dominated it; its one forward per generation (257
        // rows) runs at about the same rate either way. The text tower keeps the transposed
        // copy, its forward being the faster part there (`LinearLayout`).
        Ok(load_safetensors_with(
            config.init(device),
            weights,
            device,
            LinearLayout::StoredView,
        )?)
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// Encodes preprocessed images (B, 3, image_size, image_size).
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<ClipVisionOutput, ClipError> {
        self.forward_traced(pixel_values, &mut no_trace)
    }

    /// [`forward`](Self::forward), reporting `vision_model.embeddings`,
    /// `vision_model.pre_layrnorm`, `vision_model.encoder.layers.{i}` to `trace`.
    pub fn forward_traced(
        &self,
        pixel_values: Tensor<4>,
        trace: Trace<'_>,
    ) -> Result<ClipVisionOutput, ClipError> {
        let c = &self.config;
        let (ch, size) = (c.num_channels, c.image_size);
        check_shape(
            "pixel_values",
            &pixel_values.dims(),
            &[None, Some(ch), Some(size), Some(size)],
            || format!("(batch, {ch}, {size}, {size})"),
        )?;
        let vm = &self.vision_model;
        let emb = &vm.embeddings;
        let dtype = emb.position_embedding.weight.val().dtype();
        let b = pixel_values.dims()[0];
        let dim = c.hidden_size;
        let patches = emb.patch_embedding.forward(pixel_values.cast(dtype));
        let patches = patches.flatten::<3>(2, 3).swap_dims(1, 2); // (B, patches, dim)
        let cls = emb
            .class_embedding
            .val()
            .reshape([1, 1, dim])
            .expand([b, 1, dim]);
        let x = Tensor::cat(vec![cls, patches], 1)
            + emb.position_embedding.weight.val().unsqueeze_dim::<3>(0);
        trace("vision_model.embeddings", Activation::Sequence(&x));
        let x = vm.pre_layrnorm.forward(x);
        trace("vision_model.pre_layrnorm", Activation::Sequence(&x));
        let hidden = vm.encoder.forward(x, false, &mut |i, h| {
            trace(
                &format!("vision_model.encoder.layers.{i}"),
                Activation::Sequence(h),
            )
        });
        let cls = hidden.clone().slice([0..b, 0..1, 0..dim]).reshape([b, dim]);
        let image_embeds = self
            .visual_projection
            .forward(vm.post_layernorm.forward(cls));
        Ok(ClipVisionOutput {
            image_embeds,
            last_hidden_state: hidden,
        })
    }
}
