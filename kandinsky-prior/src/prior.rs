//! The prior (diffusers `PriorTransformer`), its loading from a diffusers `prior/` folder and
//! its forward pass.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};
use kandinsky_common::embeddings::{TimestepEmbedding, timestep_features};
use kandinsky_common::linear::linear;
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::find_diffusers_weights;
use kandinsky_common::{LinearLayout, load_safetensors_with};

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

/// The tokens after the prompt's: time, x_t and `prd`.
const STEP_TOKENS: usize = 3;

/// An error unless `found == expected` and the batch (the first dimension) is at least 1.
fn check_shape(
    input: &'static str,
    found: Vec<usize>,
    expected: Vec<usize>,
) -> Result<(), PriorError> {
    if found == expected && expected.first().is_some_and(|&b| b > 0) {
        Ok(())
    } else {
        let shape: Vec<String> = expected.iter().map(|d| d.to_string()).collect();
        Err(PriorError::InvalidInput {
            input,
            expected: format!("({}), batch ≥ 1", shape.join(", ")),
            found,
        })
    }
}

/// The prompt's tokens run through the prior once ([`PriorTransformer::encode_prompt`]): in
/// every block, the keys and values of the projected text hidden states and text embedding.
///
/// Each token of the prior's sequence sees only itself and the tokens before it, and the
/// prompt's tokens come first, so their keys and values depend on neither the timestep nor the
/// noisy embedding: a denoising loop computes them once, and each step runs 3 of the
/// `num_embeddings + 4` tokens through the transformer
/// ([`PriorTransformer::forward_with_prompt`]). At the real size in f32, 1.3 MB per block and
/// prompt.
#[derive(Debug, Clone)]
pub struct PriorPrompt {
    /// Per block: the prompt's keys and values, each (B, heads, prompt tokens, head width).
    past: Vec<(Tensor<4>, Tensor<4>)>,
    /// (B, heads, 3, prompt tokens + 3): the keys each step token must not see.
    masked: Tensor<4, Bool>,
    /// B.
    batch: usize,
}

impl PriorPrompt {
    /// The batch size B of the prompts encoded.
    pub fn batch_size(&self) -> usize {
        self.batch
    }
}

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
        // The products have 32 rows at most (a forward) or 6 (a step): weights as stored and
        // mapped, multiplied in the orientation that packs them fastest (`LinearLayout`).
        Ok(load_safetensors_with(
            config.init(device),
            weights,
            device,
            LinearLayout::StoredView,
        )?)
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
        self.run(
            hidden_states,
            timesteps,
            proj_embedding,
            encoder_hidden_states,
            attention_mask,
            true,
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
        let [b, _] = hidden_states.dims();
        self.check_prompt(b, proj_embedding, encoder_hidden_states, attention_mask)?;
        self.check_step(b, hidden_states, timesteps)
    }

    /// Checks the prompt's inputs against the batch size `b`.
    fn check_prompt(
        &self,
        b: usize,
        proj_embedding: &Tensor<2>,
        encoder_hidden_states: &Tensor<3>,
        attention_mask: &Tensor<2, Bool>,
    ) -> Result<(), PriorError> {
        let c = &self.config;
        let (e, t, p) = (c.embedding_dim, c.num_embeddings, c.embedding_proj_dim());
        let pe = proj_embedding.dims().to_vec();
        check_shape("proj_embedding", pe, vec![b, p])?;
        let ehs = encoder_hidden_states.dims().to_vec();
        check_shape("encoder_hidden_states", ehs, vec![b, t, e])?;
        check_shape("attention_mask", attention_mask.dims().to_vec(), vec![b, t])
    }

    /// Checks a step's inputs against the batch size `b`.
    fn check_step(
        &self,
        b: usize,
        hidden_states: &Tensor<2>,
        timesteps: &Tensor<1>,
    ) -> Result<(), PriorError> {
        let e = self.config.embedding_dim;
        check_shape("hidden_states", hidden_states.dims().to_vec(), vec![b, e])?;
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

    /// The time embedding of `timesteps` (1 or B values) for a batch of `b`: (B, inner).
    fn time_embedding(&self, timesteps: Tensor<1>, b: usize) -> Tensor<2> {
        let timesteps = match timesteps.dims()[0] {
            1 if b > 1 => timesteps.expand([b]),
            _ => timesteps,
        };
        let features =
            timestep_features(timesteps, self.config.inner_dim(), true, 0.0, self.dtype());
        self.time_embedding.forward(features)
    }

    /// The positional embedding of tokens `range`: (1, range's length, inner).
    fn positions(&self, range: std::ops::Range<usize>) -> Tensor<3> {
        let inner = self.config.inner_dim();
        self.positional_embedding
            .val()
            .slice([0..1, range, 0..inner])
    }

    /// Runs the prompt's tokens — the projected text hidden states and the projected text
    /// embedding, the first `num_embeddings + 1` of the sequence — through the transformer once,
    /// keeping what the remaining tokens attend to in each block: for a denoising loop, which
    /// calls the prior with the same prompt at every step, then runs only the last three tokens
    /// through [`forward_with_prompt`](Self::forward_with_prompt).
    ///
    /// The inputs are [`forward`](Self::forward)'s prompt inputs, batch B ≥ 1.
    pub fn encode_prompt(
        &self,
        proj_embedding: Tensor<2>,
        encoder_hidden_states: Tensor<3>,
        attention_mask: Tensor<2, Bool>,
    ) -> Result<PriorPrompt, PriorError> {
        let b = proj_embedding.dims()[0];
        self.check_prompt(b, &proj_embedding, &encoder_hidden_states, &attention_mask)?;
        let dtype = self.dtype();
        let device = proj_embedding.device();
        let heads = self.config.num_attention_heads;

        let text_embedding = linear(&self.embedding_proj, proj_embedding.cast(dtype));
        let text = linear(
            &self.encoder_hidden_states_proj,
            encoder_hidden_states.cast(dtype),
        );
        let t = self.config.num_embeddings;
        let (text, keep) = self.prompt_tokens(text, attention_mask, true);
        let text_embedding = text_embedding.unsqueeze_dim::<3>(1) + self.positions(t..t + 1);
        let mut x = Tensor::cat(vec![text, text_embedding], 1);
        let p = x.dims()[1];

        // The prompt's padding, hidden from every query; the text embedding is always visible.
        let padding = Tensor::cat(vec![keep.int(), Tensor::<2, Int>::ones([b, 1], &device)], 1)
            .equal_elem(0)
            .reshape([b, 1, 1, p]);
        let masked = padding.clone().expand([b, heads, p, p]);
        let last = self.transformer_blocks.len().saturating_sub(1);
        let mut past = Vec::with_capacity(self.transformer_blocks.len());
        for (i, block) in self.transformer_blocks.iter().enumerate() {
            if i == last {
                // Only the step tokens read the last block's output.
                past.push(block.keys_values(x.clone()));
            } else {
                let (next, k, v) = block.forward_keeping(x.clone(), Some(masked.clone()), true);
                past.push((k, v));
                x = next;
            }
        }
        // The step tokens (time, x_t, prd) see the prompt but its padding, themselves and the
        // step tokens before them.
        let later = Tensor::<2, Bool>::from_data(
            TensorData::from([
                [false, true, true],
                [false, false, true],
                [false, false, false],
            ]),
            &device,
        )
        .reshape([1, 1, STEP_TOKENS, STEP_TOKENS]);
        let masked = Tensor::cat(
            vec![
                padding.expand([b, heads, STEP_TOKENS, p]),
                later.expand([b, heads, STEP_TOKENS, STEP_TOKENS]),
            ],
            3,
        );
        Ok(PriorPrompt {
            past,
            masked,
            batch: b,
        })
    }

    /// [`forward`](Self::forward) for a prompt [`encode_prompt`](Self::encode_prompt) has run:
    /// only the time, x_t and `prd` tokens go through the transformer, attending to the
    /// prompt's kept keys and values. Equal to `forward` with the same inputs up to float
    /// rounding; `hidden_states` and `timesteps` as there, with the prompt's batch size.
    pub fn forward_with_prompt(
        &self,
        prompt: &PriorPrompt,
        hidden_states: Tensor<2>,
        timesteps: Tensor<1>,
    ) -> Result<Tensor<2>, PriorError> {
        let b = prompt.batch;
        self.check_step(b, &hidden_states, &timesteps)?;
        // A prompt encoded by another prior: as many blocks, heads and head widths, or an error.
        let (blocks, heads) = (
            self.transformer_blocks.len(),
            self.config.num_attention_heads,
        );
        let head_dim = self.config.attention_head_dim;
        let found: Vec<usize> = match prompt.past.first() {
            Some((k, _)) => {
                let [_, h, _, d] = k.dims();
                vec![prompt.past.len(), h, d]
            }
            None => vec![0],
        };
        if found != [blocks, heads, head_dim] {
            return Err(PriorError::InvalidInput {
                input: "prompt",
                expected: format!(
                    "keys and values of {blocks} blocks, {heads} heads of {head_dim} \
                     (blocks, heads, head width)"
                ),
                found,
            });
        }
        let dtype = self.dtype();
        let inner = self.config.inner_dim();
        let p = self.config.num_embeddings + 1;
        let time = self.time_embedding(timesteps, b);
        let image = linear(&self.proj_in, hidden_states.cast(dtype));
        let prd = self.prd_embedding.val().expand([b, 1, inner]);
        let token = |t: Tensor<2>| t.unsqueeze_dim::<3>(1);
        let mut x = Tensor::cat(vec![token(time), token(image), prd], 1)
            + self.positions(p..p + STEP_TOKENS);
        for (block, (k, v)) in self.transformer_blocks.iter().zip(&prompt.past) {
            x = block.forward_after(x, (k, v), prompt.masked.clone());
        }
        let prd = x.slice([0..b, STEP_TOKENS - 1..STEP_TOKENS, 0..inner]);
        let prd = self.norm_out.forward(prd).reshape([b, inner]);
        Ok(linear(&self.proj_to_clip_embeddings, prd))
    }

    /// [`forward`](Self::forward), reporting each step's output to `trace`: `time_embedding`,
    /// `embedding_proj`, `encoder_hidden_states_proj`, `proj_in`, `transformer_blocks.{i}`,
    /// `norm_out`, `proj_to_clip_embeddings`. Unlike `forward`, it runs the prompt's padding
    /// tokens too, so that the traced sequences have the reference's shape.
    pub fn forward_traced(
        &self,
        hidden_states: Tensor<2>,
        timesteps: Tensor<1>,
        proj_embedding: Tensor<2>,
        encoder_hidden_states: Tensor<3>,
        attention_mask: Tensor<2, Bool>,
        trace: Trace<'_>,
    ) -> Result<Tensor<2>, PriorError> {
        self.run(
            hidden_states,
            timesteps,
            proj_embedding,
            encoder_hidden_states,
            attention_mask,
            false,
            trace,
        )
    }

    /// The prompt's tokens with their positional embeddings, and which are real, (B, n, inner)
    /// and (B, n). With `compact`, only the real ones (the mask's), in order, each prompt's
    /// filled up to the longest with masked rows: a padding token is a key no query may see
    /// and its own output is read by nothing, so leaving it out changes no result. Without,
    /// all `num_embeddings` of them.
    fn prompt_tokens(
        &self,
        text: Tensor<3>,
        attention_mask: Tensor<2, Bool>,
        compact: bool,
    ) -> (Tensor<3>, Tensor<2, Bool>) {
        let [b, t, inner] = text.dims();
        let positions = self.positions(0..t);
        if !compact {
            return (text + positions, attention_mask);
        }
        let flags: Vec<i64> = attention_mask
            .clone()
            .int()
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("i64 mask");
        let real: Vec<Vec<i64>> = flags
            .chunks(t)
            .map(|row| (0..t as i64).filter(|&i| row[i as usize] != 0).collect())
            .collect();
        // At least one row, so that every sequence has a prompt part (all masked if need be).
        let n = real.iter().map(Vec::len).max().unwrap_or(0).max(1);
        if n == t {
            return (text + positions, attention_mask);
        }
        let device = text.device();
        let mut texts = Vec::with_capacity(b);
        let mut places = Vec::with_capacity(b);
        let mut keep = Vec::with_capacity(b * n);
        for (i, rows) in real.iter().enumerate() {
            // Fillers repeat row 0; they are masked like padding.
            let mut index = rows.clone();
            index.resize(n, 0);
            keep.extend((0..n).map(|j| j < rows.len()));
            let index = Tensor::<1, Int>::from_data(TensorData::new(index, [n]), &device);
            texts.push(
                text.clone()
                    .slice([i..i + 1, 0..t, 0..inner])
                    .select(1, index.clone()),
            );
            places.push(positions.clone().select(1, index));
        }
        let keep = Tensor::<2, Bool>::from_data(TensorData::new(keep, [b, n]), &device);
        (Tensor::cat(texts, 0) + Tensor::cat(places, 0), keep)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        hidden_states: Tensor<2>,
        timesteps: Tensor<1>,
        proj_embedding: Tensor<2>,
        encoder_hidden_states: Tensor<3>,
        attention_mask: Tensor<2, Bool>,
        compact: bool,
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
        let t = self.config.num_embeddings;

        let time = self.time_embedding(timesteps, b);
        trace("time_embedding", Activation::Vector(&time));
        let text_embedding = linear(&self.embedding_proj, proj_embedding.cast(dtype));
        trace("embedding_proj", Activation::Vector(&text_embedding));
        let text = linear(
            &self.encoder_hidden_states_proj,
            encoder_hidden_states.cast(dtype),
        );
        trace("encoder_hidden_states_proj", Activation::Sequence(&text));
        let image = linear(&self.proj_in, hidden_states.cast(dtype));
        trace("proj_in", Activation::Vector(&image));

        let token = |t: Tensor<2>| t.unsqueeze_dim::<3>(1);
        let prd = self.prd_embedding.val().expand([b, 1, inner]);
        let extra = Tensor::cat(
            vec![token(text_embedding), token(time), token(image), prd],
            1,
        ) + self.positions(t..t + 4);
        let (text, keep) = self.prompt_tokens(text, attention_mask, compact);
        let mut x = Tensor::cat(vec![text, extra], 1);
        let len = x.dims()[1];

        // Keys a query must not see: the prompt's padding (the 4 extra tokens are always
        // visible); later tokens are hidden by the causal flag.
        let keep = Tensor::cat(vec![keep.int(), Tensor::<2, Int>::ones([b, 4], &device)], 1);
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
        let out = linear(&self.proj_to_clip_embeddings, prd);
        trace("proj_to_clip_embeddings", Activation::Vector(&out));
        Ok(out)
    }
}
