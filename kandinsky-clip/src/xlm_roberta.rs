//! The 2.1 text encoder: MultilingualCLIP (diffusers `pipelines/kandinsky/text_encoder.py`), an
//! XLM-RoBERTa-Large (transformers `XLMRobertaModel`, post-LN BERT layers) followed by a masked
//! mean over the tokens and a linear projection into CLIP ViT-L/14's text space.
//!
//! Field names are the checkpoint's, including its capitalised `LayerNorm` and
//! `LinearTransformation`; `self_` stands for the key segment `self` (a Rust keyword).

#![allow(non_snake_case)]

use kandinsky_common::linear::linear;
use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear, LinearConfig};
use burn::tensor::module::attention as sdpa;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};
use kandinsky_common::load_safetensors;
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::find_transformers_weights;

use crate::config::{HiddenAct, MClipConfig};
use crate::encoder::{activate, layer_norm};
use crate::error::{ClipError, check_shape, check_token_ids};

/// Word, position and token-type embeddings, then LayerNorm (`transformer.embeddings`).
#[derive(Module, Debug)]
pub struct XlmRobertaEmbeddings {
    /// Token table (vocab, dim).
    pub(crate) word_embeddings: Embedding,
    /// Position table (max positions, dim); ids start after the padding id.
    pub(crate) position_embeddings: Embedding,
    /// Token-type table (1, dim); every token has type 0.
    pub(crate) token_type_embeddings: Embedding,
    /// LayerNorm of the sum.
    pub(crate) LayerNorm: LayerNorm,
}

/// `attention.self`: the query/key/value projections.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub(crate) query: Linear,
    /// Key projection.
    pub(crate) key: Linear,
    /// Value projection.
    pub(crate) value: Linear,
}

/// A dense layer followed by a residual LayerNorm (`attention.output`, `output`).
#[derive(Module, Debug)]
pub struct DenseLayerNorm {
    /// The projection.
    pub(crate) dense: Linear,
    /// LayerNorm of (projection + residual).
    pub(crate) LayerNorm: LayerNorm,
}

/// `attention`: self-attention and its output block.
#[derive(Module, Debug)]
pub struct XlmAttention {
    /// Projections (`attention.self`).
    pub(crate) self_: SelfAttention,
    /// Output projection and LayerNorm.
    pub(crate) output: DenseLayerNorm,
}

/// `intermediate`: the MLP's first projection.
#[derive(Module, Debug)]
pub struct Intermediate {
    /// dim → intermediate.
    pub(crate) dense: Linear,
}

/// One post-LN layer: `h = LN(x + attn(x))`, `out = LN(h + W₂ act(W₁ h))`.
#[derive(Module, Debug)]
pub struct XlmLayer {
    /// Self-attention with its output LayerNorm.
    pub(crate) attention: XlmAttention,
    /// The MLP's first projection.
    pub(crate) intermediate: Intermediate,
    /// The MLP's second projection with its LayerNorm.
    pub(crate) output: DenseLayerNorm,
}

/// `transformer.encoder`.
#[derive(Module, Debug)]
pub struct XlmEncoder {
    /// The layers.
    pub(crate) layer: Vec<XlmLayer>,
}

/// `transformer.pooler` (in the checkpoint; unused by MultilingualCLIP, which mean-pools).
#[derive(Module, Debug)]
pub struct Pooler {
    /// dim → dim.
    pub(crate) dense: Linear,
}

/// `transformer`: the XLM-RoBERTa model.
#[derive(Module, Debug)]
pub struct XlmRobertaModel {
    /// Embeddings.
    pub(crate) embeddings: XlmRobertaEmbeddings,
    /// Encoder layers.
    pub(crate) encoder: XlmEncoder,
    /// Unused pooler.
    pub(crate) pooler: Pooler,
}

/// The Kandinsky 2.1 text encoder.
#[derive(Module, Debug)]
pub struct MultilingualClip {
    /// XLM-RoBERTa.
    pub(crate) transformer: XlmRobertaModel,
    /// Masked-mean hidden state → CLIP text space.
    pub(crate) LinearTransformation: Linear,
    #[module(skip)]
    config: MClipConfig,
}

/// What MultilingualCLIP returns.
#[derive(Debug, Clone)]
pub struct MClipOutput {
    /// The projected masked mean, (B, numDims): the UNet's `text_embeds`.
    pub pooled: Tensor<2>,
    /// The last hidden states, (B, L, hidden): the UNet's `encoder_hidden_states` (unmasked).
    pub hidden_states: Tensor<3>,
}

impl MClipConfig {
    /// Builds the model with lazily initialised parameters.
    pub fn init(&self, device: &Device) -> MultilingualClip {
        let dim = self.hidden_size;
        let eps = self.layer_norm_eps;
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let dense_ln = |i| DenseLayerNorm {
            dense: linear(i, dim),
            LayerNorm: layer_norm(dim, eps, device),
        };
        let layer = || XlmLayer {
            attention: XlmAttention {
                self_: SelfAttention {
                    query: linear(dim, dim),
                    key: linear(dim, dim),
                    value: linear(dim, dim),
                },
                output: dense_ln(dim),
            },
            intermediate: Intermediate {
                dense: linear(dim, self.intermediate_size),
            },
            output: dense_ln(self.intermediate_size),
        };
        let table = |n| EmbeddingConfig::new(n, dim).init(device);
        MultilingualClip {
            transformer: XlmRobertaModel {
                embeddings: XlmRobertaEmbeddings {
                    word_embeddings: table(self.vocab_size),
                    position_embeddings: table(self.max_position_embeddings),
                    token_type_embeddings: table(self.type_vocab_size),
                    LayerNorm: layer_norm(dim, eps, device),
                },
                encoder: XlmEncoder {
                    layer: (0..self.num_hidden_layers).map(|_| layer()).collect(),
                },
                pooler: Pooler {
                    dense: linear(dim, dim),
                },
            },
            LinearTransformation: linear(self.transformer_dimensions, self.num_dims),
            config: self.clone(),
        }
    }
}

fn no_trace(_: &str, _: Activation<'_>) {}

impl XlmLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        masked: &Tensor<4, Bool>,
        heads: usize,
        act: HiddenAct,
    ) -> Tensor<3> {
        let [b, l, c] = x.dims();
        let split = |t: Tensor<3>| t.reshape([b, l, heads, c / heads]).swap_dims(1, 2);
        let s = &self.attention.self_;
        let q = split(linear(&s.query, x.clone()));
        let k = split(linear(&s.key, x.clone()));
        let v = split(linear(&s.value, x.clone()));
        let a = sdpa(
            q,
            k,
            v,
            Some(masked.clone()),
            None,
            AttentionModuleOptions::default(),
        );
        let a = linear(
            &self.attention.output.dense,
            a.swap_dims(1, 2).reshape([b, l, c]),
        );
        let h = self.attention.output.LayerNorm.forward(a + x);
        let m = activate(linear(&self.intermediate.dense, h.clone()), act);
        self.output
            .LayerNorm
            .forward(linear(&self.output.dense, m) + h)
    }
}

impl MultilingualClip {
    /// Loads kandinsky-2-1's `text_encoder/` folder (`config.json` + `model.safetensors`, or
    /// the fp16 variant).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ClipError> {
        let weights = find_transformers_weights(dir)?;
        Self::load_files(&dir.join("config.json"), &weights, device)
    }

    /// Loads from an explicit config file and weights file.
    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, ClipError> {
        let config = MClipConfig::from_file(config)?;
        Ok(load_safetensors(config.init(device), weights, device)?)
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &MClipConfig {
        &self.config
    }

    /// Encodes token ids (B, L) with their attention mask (B, L), true for real tokens and
    /// false for padding (the tokenizer's outputs: [`Tokens`](crate::Tokens)).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Bool>,
    ) -> Result<MClipOutput, ClipError> {
        self.forward_traced(input_ids, attention_mask, &mut no_trace)
    }

    /// [`forward`](Self::forward), reporting `transformer.embeddings` and
    /// `transformer.encoder.layer.{i}` to `trace`.
    pub fn forward_traced(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Bool>,
        trace: Trace<'_>,
    ) -> Result<MClipOutput, ClipError> {
        let c = &self.config;
        let [b, l] = input_ids.dims();
        // Positions run from pad + 1, so a sequence can hold max_positions − pad − 1 tokens.
        let max_len = c.max_position_embeddings - c.pad_token_id - 1;
        if b == 0 || l == 0 || l > max_len {
            return Err(ClipError::InvalidInput {
                input: "input_ids",
                expected: format!("(batch ≥ 1, 1 to {max_len} tokens)"),
                found: vec![b, l],
            });
        }
        check_shape(
            "attention_mask",
            &attention_mask.dims(),
            &[Some(b), Some(l)],
            || format!("({b}, {l}), the shape of input_ids"),
        )?;
        check_token_ids(&input_ids, c.vocab_size)?;
        let e = &self.transformer.embeddings;
        // RoBERTa positions: real tokens count up from pad + 1, padding tokens get pad.
        let pad = c.pad_token_id as i64;
        let real = input_ids.clone().not_equal_elem(pad).int();
        let positions = real.clone().cumsum(1) * real + pad;
        let x = e.word_embeddings.forward(input_ids.clone())
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(input_ids.zeros_like());
        let mut x = e.LayerNorm.forward(x);
        trace("transformer.embeddings", Activation::Sequence(&x));

        let heads = c.num_attention_heads;
        let masked = attention_mask
            .clone()
            .bool_not()
            .reshape([b, 1, 1, l])
            .expand([b, heads, l, l]);
        for (i, layer) in self.transformer.encoder.layer.iter().enumerate() {
            x = layer.forward(x, &masked, heads, c.hidden_act);
            trace(
                &format!("transformer.encoder.layer.{i}"),
                Activation::Sequence(&x),
            );
        }
        let dtype = x.dtype();
        let mask = attention_mask.float().cast(dtype).unsqueeze_dim::<3>(2); // (B, L, 1)
        let summed = (x.clone() * mask.clone())
            .sum_dim(1)
            .reshape([b, c.hidden_size]);
        let count = mask.sum_dim(1).reshape([b, 1]);
        let pooled = self.LinearTransformation.forward(summed / count);
        Ok(MClipOutput {
            pooled,
            hidden_states: x,
        })
    }
}
