//! The prior (diffusers `PriorTransformer`), its loading from a diffusers `prior/` folder and
//! its forward pass.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::tensor::{Bool, DType, Device, Int, Tensor};
use kandinsky_common::embeddings::{TimestepEmbedding, timestep_features};
use kandinsky_common::load_safetensors;
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::find_diffusers_weights;

use crate::block::{BasicTransformerBlock, layer_norm};
use crate::config::PriorConfig;
use crate::error::PriorError;

/// The diffusion image prior of Kandinsky 2.1 and 2.2: predicts the (standardized) CLIP image
/// embedding x₀ from a noisy one x_t, the timestep, and the prompt's CLIP text embedding and
/// hidden states.
///
/// The transformer runs over `num_embeddings + 4` tokens: the projected text hidden states, the
/// projected text embedding, the time embedding, the projected x_t and the learned `prd` token,
/// plus a learned positional embedding; each token sees itself, the tokens before it, and
/// none of the prompt's padding. The output is the `prd` token after `norm_out`, projected to the
/// CLIP width.
#[derive(Module, Debug)]
pub struct PriorTransformer {
    /// Timestep features → inner width.
    pub(crate) time_embedding: TimestepEmbedding,
    /// Noisy image embedding → inner width.
    pub(crate) proj_in: Linear,
    /// Text embedding → inner width.
    pub(crate) embedding_proj: Linear,
    /// Text hidden states → inner width.
    pub(crate) encoder_hidden_states_proj: Linear,
    /// (1, tokens, inner), added to the sequence.
    pub(crate) positional_embedding: Param<Tensor<3>>,
    /// The learned output token, (1, 1, inner).
    pub(crate) prd_embedding: Param<Tensor<3>>,
    /// The transformer.
    pub(crate) transformer_blocks: Vec<BasicTransformerBlock>,
    /// Final LayerNorm.
    pub(crate) norm_out: LayerNorm,
    /// Inner width → CLIP width.
    pub(crate) proj_to_clip_embeddings: Linear,
    /// Mean of the CLIP image embeddings, (1, CLIP width).
    pub(crate) clip_mean: Param<Tensor<2>>,
    /// Standard deviation of the CLIP image embeddings, (1, CLIP width).
    pub(crate) clip_std: Param<Tensor<2>>,
    #[module(skip)]
    config: PriorConfig,
}

impl PriorConfig {
    /// Builds the model. Linear and norm weights are lazily initialised (allocated only when
    /// loaded); the few bare parameters (positional and prd embeddings, CLIP statistics, under
    /// 1 MB at the real size) start as zeros.
    ///
    /// The config should have passed [`PriorConfig::validate`] (as [`PriorTransformer::load`]
    /// ensures).
    pub fn init(&self, device: &Device) -> PriorTransformer {
        let inner = self.inner_dim();
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let zeros3 = |shape: [usize; 3]| Param::from_tensor(Tensor::zeros(shape, device));
        let clip = self.clip_embed_dim();
        PriorTransformer {
            time_embedding: TimestepEmbedding::new(inner, self.time_embed_dim(), inner, device),
            proj_in: linear(self.embedding_dim, inner),
            embedding_proj: linear(self.embedding_proj_dim(), inner),
            encoder_hidden_states_proj: linear(self.embedding_dim, inner),
            positional_embedding: zeros3([1, self.sequence_len(), inner]),
            prd_embedding: zeros3([1, 1, inner]),
            transformer_blocks: (0..self.num_layers)
                .map(|_| {
                    let (heads, head_dim) = (self.num_attention_heads, self.attention_head_dim);
                    BasicTransformerBlock::new(inner, heads, head_dim, device)
                })
                .collect(),
            norm_out: layer_norm(inner, device),
            proj_to_clip_embeddings: linear(inner, clip),
            clip_mean: Param::from_tensor(Tensor::zeros([1, clip], device)),
            clip_std: Param::from_tensor(Tensor::zeros([1, clip], device)),
            config: self.clone(),
        }
    }
}

fn no_trace(_: &str, _: Activation<'_>) {}

impl PriorTransformer {
    /// Loads a diffusers `prior/` folder: `config.json` and
    /// `diffusion_pytorch_model.safetensors`, or the `.fp16.safetensors` variant when it is the
    /// only one. Weights are cast to `device`'s float dtype.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, PriorError> {
        let weights = find_diffusers_weights(dir)?;
        Self::load_files(&dir.join("config.json"), &weights, device)
    }

    /// Loads from an explicit config file and weights file (e.g. a chosen variant).
    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, PriorError> {
        let config = PriorConfig::from_file(config)?;
        Ok(load_safetensors(config.init(device), weights, device)?)
    }

    /// The configuration the model was built from.
    /// The device the weights are on.
    pub fn device(&self) -> burn::tensor::Device {
        self.proj_in.weight.val().device()
    }

    pub fn config(&self) -> &PriorConfig {
        &self.config
    }

    /// The float dtype of the weights (and of the computation).
    pub fn dtype(&self) -> DType {
        self.proj_in.weight.val().dtype()
    }

    /// De-standardizes sampled embeddings (B, CLIP width): `latents · clip_std + clip_mean`
    /// (diffusers `post_process_latents`).
    pub fn post_process_latents(&self, latents: Tensor<2>) -> Tensor<2> {
        latents.cast(self.dtype()) * self.clip_std.val() + self.clip_mean.val()
    }

    /// Predicts the standardized image embedding x₀ (B, CLIP width).
    ///
    /// - `hidden_states`: the noisy standardized image embedding x_t, (B, `embedding_dim`);
    /// - `timesteps`: B values, or one for the whole batch (0–999); best created as f32 on f16
    ///   and bf16 devices (`kandinsky_common::tensors::f32_tensor`): bf16 rounds 999 to 1000;
    /// - `proj_embedding`: the CLIP text embedding, (B, `embedding_proj_dim`);
    /// - `encoder_hidden_states`: the CLIP text hidden states, (B, `num_embeddings`,
    ///   `embedding_dim`);
    /// - `attention_mask`: the tokenizer's mask, (B, `num_embeddings`), true for real tokens.
    pub fn forward(
        &self,
        hidden_states: Tensor<2>,
        timesteps: Tensor<1>,
        proj_embedding: Tensor<2>,
        encoder_hidden_states: Tensor<3>,
        attention_mask: Tensor<2, Bool>,
    ) -> Result<Tensor<2>, PriorError> {
        self.forward_traced(
            hidden_states,
            timesteps,
            proj_embedding,
            encoder_hidden_states,
            attention_mask,
            &mut no_trace,
        )
    }

    fn check_inputs(
        &self,
        hidden_states: &Tensor<2>,
        timesteps: &Tensor<1>,
        proj_embedding: &Tensor<2>,
        encoder_hidden_states: &Tensor<3>,
        attention_mask: &Tensor<2, Bool>,
    ) -> Result<(), PriorError> {
        let c = &self.config;
        let [b, _] = hidden_states.dims();
        let (e, t) = (c.embedding_dim, c.num_embeddings);
        let check = |input, found: Vec<usize>, expected: Vec<usize>| {
            if found == expected && b > 0 {
                Ok(())
            } else {
                let shape: Vec<String> = expected.iter().map(|d| d.to_string()).collect();
                Err(PriorError::InvalidInput {
                    input,
                    expected: format!("({}), batch ≥ 1", shape.join(", ")),
                    found,
                })
            }
        };
        check("hidden_states", hidden_states.dims().to_vec(), vec![b, e])?;
        let p = c.embedding_proj_dim();
        check("proj_embedding", proj_embedding.dims().to_vec(), vec![b, p])?;
        let ehs = encoder_hidden_states.dims().to_vec();
        check("encoder_hidden_states", ehs, vec![b, t, e])?;
        check("attention_mask", attention_mask.dims().to_vec(), vec![b, t])?;
        let n = timesteps.dims()[0];
        if n != 1 && n != b {
            return Err(PriorError::InvalidInput {
                input: "timesteps",
                expected: format!("1 or {b} (the batch size) values"),
                found: vec![n],
            });
        }
        Ok(())
    }

    /// [`forward`](Self::forward), reporting each step's output to `trace`: `time_embedding`,
    /// `embedding_proj`, `encoder_hidden_states_proj`, `proj_in`, `transformer_blocks.{i}`,
    /// `norm_out`, `proj_to_clip_embeddings`.
    pub fn forward_traced(
        &self,
        hidden_states: Tensor<2>,
        timesteps: Tensor<1>,
        proj_embedding: Tensor<2>,
        encoder_hidden_states: Tensor<3>,
        attention_mask: Tensor<2, Bool>,
        trace: Trace<'_>,
    ) -> Result<Tensor<2>, PriorError> {
        self.check_inputs(
            &hidden_states,
            &timesteps,
            &proj_embedding,
            &encoder_hidden_states,
            &attention_mask,
        )?;
        let dtype = self.dtype();
        let device = hidden_states.device();
        let [b, _] = hidden_states.dims();
        let inner = self.config.inner_dim();
        let len = self.config.sequence_len();

        let timesteps = match timesteps.dims()[0] {
            1 if b > 1 => timesteps.expand([b]),
            _ => timesteps,
        };
        let features = timestep_features(timesteps, inner, true, 0.0, dtype);
        let time = self.time_embedding.forward(features);
        trace("time_embedding", Activation::Vector(&time));
        let text_embedding = self.embedding_proj.forward(proj_embedding.cast(dtype));
        trace("embedding_proj", Activation::Vector(&text_embedding));
        let text = self
            .encoder_hidden_states_proj
            .forward(encoder_hidden_states.cast(dtype));
        trace("encoder_hidden_states_proj", Activation::Sequence(&text));
        let image = self.proj_in.forward(hidden_states.cast(dtype));
        trace("proj_in", Activation::Vector(&image));

        let token = |t: Tensor<2>| t.unsqueeze_dim::<3>(1);
        let prd = self.prd_embedding.val().expand([b, 1, inner]);
        let mut x = Tensor::cat(
            vec![text, token(text_embedding), token(time), token(image), prd],
            1,
        ) + self.positional_embedding.val();

        // Keys a query must not see: the prompt's padding (the 4 extra tokens are always
        // visible); later tokens are hidden by the causal flag.
        let keep = Tensor::cat(
            vec![
                attention_mask.int(),
                Tensor::<2, Int>::ones([b, 4], &device),
            ],
            1,
        );
        let heads = self.config.num_attention_heads;
        let masked = keep
            .equal_elem(0)
            .reshape([b, 1, 1, len])
            .expand([b, heads, len, len]);
        for (i, block) in self.transformer_blocks.iter().enumerate() {
            x = block.forward(x, Some(masked.clone()), true);
            trace(&format!("transformer_blocks.{i}"), Activation::Sequence(&x));
        }
        let x = self.norm_out.forward(x);
        trace("norm_out", Activation::Sequence(&x));
        let prd = x.slice([0..b, len - 1..len, 0..inner]).reshape([b, inner]);
        let out = self.proj_to_clip_embeddings.forward(prd);
        trace("proj_to_clip_embeddings", Activation::Vector(&out));
        Ok(out)
    }
}
