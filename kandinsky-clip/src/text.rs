//! The CLIP text tower with its projection (transformers `CLIPTextModelWithProjection`), as the
//! Kandinsky priors use it: causal attention, no padding mask.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};
use kandinsky_common::load_safetensors;
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::find_transformers_weights;

use crate::config::ClipTextConfig;
use crate::encoder::{ClipEncoder, EncoderSizes, layer_norm};
use crate::error::{ClipError, check_token_ids};

/// Token and position embeddings (`text_model.embeddings`).
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// Token table (vocab, dim).
    pub(crate) token_embedding: Embedding,
    /// Position table (context, dim).
    pub(crate) position_embedding: Embedding,
}

/// `text_model`: embeddings, encoder, final LayerNorm.
#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    /// Embeddings.
    pub(crate) embeddings: ClipTextEmbeddings,
    /// The transformer.
    pub(crate) encoder: ClipEncoder,
    /// LayerNorm after the last layer.
    pub(crate) final_layer_norm: LayerNorm,
}

/// CLIP text encoder with projection: the prior's text conditioning.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    /// The transformer.
    pub(crate) text_model: ClipTextTransformer,
    /// Pooled hidden state → `text_embeds` (no bias).
    pub(crate) text_projection: Linear,
    #[module(skip)]
    config: ClipTextConfig,
}

/// What the text encoder returns.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// The projected end-of-text hidden state, (B, projection_dim).
    pub text_embeds: Tensor<2>,
    /// The final-LayerNorm hidden states, (B, L, hidden).
    pub last_hidden_state: Tensor<3>,
}

impl ClipTextConfig {
    /// Builds the model with lazily initialised parameters.
    pub fn init(&self, device: &Device) -> ClipTextModel {
        let dim = self.hidden_size;
        ClipTextModel {
            text_model: ClipTextTransformer {
                embeddings: ClipTextEmbeddings {
                    token_embedding: EmbeddingConfig::new(self.vocab_size, dim).init(device),
                    position_embedding: EmbeddingConfig::new(self.max_position_embeddings, dim)
                        .init(device),
                },
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
                final_layer_norm: layer_norm(dim, self.layer_norm_eps, device),
            },
            text_projection: LinearConfig::new(dim, self.projection_dim)
                .with_bias(false)
                .init(device),
            config: self.clone(),
        }
    }
}

fn no_trace(_: &str, _: Activation<'_>) {}

impl ClipTextModel {
    /// Loads a transformers folder (`config.json` + `model.safetensors`, or the fp16 variant),
    /// e.g. the `text_encoder/` of a Kandinsky prior repo.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ClipError> {
        let weights = find_transformers_weights(dir)?;
        Self::load_files(&dir.join("config.json"), &weights, device)
    }

    /// Loads from an explicit config file and weights file.
    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, ClipError> {
        let config = ClipTextConfig::from_file(config)?;
        Ok(load_safetensors(config.init(device), weights, device)?)
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Encodes token ids (B, L), L ≤ the context length, each row `[SOT, …, EOT, padding…]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Result<ClipTextOutput, ClipError> {
        self.forward_traced(input_ids, &mut no_trace)
    }

    /// [`forward`](Self::forward), reporting `text_model.embeddings`,
    /// `text_model.encoder.layers.{i}` and `last_hidden_state` to `trace`.
    pub fn forward_traced(
        &self,
        input_ids: Tensor<2, Int>,
        trace: Trace<'_>,
    ) -> Result<ClipTextOutput, ClipError> {
        let ctx = self.config.max_position_embeddings;
        let [b, l] = input_ids.dims();
        if b == 0 || l == 0 || l > ctx {
            return Err(ClipError::InvalidInput {
                input: "input_ids",
                expected: format!("(batch ≥ 1, 1 to {ctx} tokens)"),
                found: vec![b, l],
            });
        }
        check_token_ids(&input_ids, self.config.vocab_size)?;
        let device = input_ids.device();
        let tm = &self.text_model;
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device).unsqueeze_dim::<2>(0);
        let x = tm.embeddings.token_embedding.forward(input_ids.clone())
            + tm.embeddings.position_embedding.forward(positions);
        trace("text_model.embeddings", Activation::Sequence(&x));
        let x = tm.encoder.forward(x, true, &mut |i, h| {
            trace(
                &format!("text_model.encoder.layers.{i}"),
                Activation::Sequence(h),
            )
        });
        let hidden = tm.final_layer_norm.forward(x);
        trace("last_hidden_state", Activation::Sequence(&hidden));

        // The end-of-text position as transformers finds it: with the published configs'
        // eos_token_id 2, the first position of the largest id; otherwise the first position of
        // eos_token_id.
        let eot = match self.config.eos_token_id {
            2 => input_ids.argmax(1),
            eos => input_ids.equal_elem(eos as i64).int().argmax(1),
        };
        let dim = self.config.hidden_size;
        let pooled = hidden
            .clone()
            .gather(1, eot.reshape([b, 1, 1]).expand([b, 1, dim]))
            .reshape([b, dim]);
        let text_embeds = self.text_projection.forward(pooled);
        Ok(ClipTextOutput {
            text_embeds,
            last_hidden_state: hidden,
        })
    }
}
