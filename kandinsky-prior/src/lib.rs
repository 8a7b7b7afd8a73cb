//! The diffusion image prior of Kandinsky 2.1 and 2.2 (diffusers `PriorTransformer`) on burn:
//! maps a prompt's CLIP text embedding and hidden states to a CLIP image embedding, loaded from
//! the `prior/` folder of `kandinsky-community/kandinsky-2-1-prior` or `-2-2-prior` as it is on
//! disk (`config.json` + `diffusion_pytorch_model[.fp16].safetensors`).
//!
//! - [`config`]: the checkpoint's `config.json`, validated;
//! - `attention`: masked self-attention through burn's fused attention op;
//! - `block`: the pre-LN transformer block and its GELU feed-forward;
//! - `prior`: the model, loading, the forward pass and `post_process_latents`, and the
//!   denoising loop's faster step: the prompt's tokens encoded once ([`PriorPrompt`]), each
//!   step then running only the last three tokens.
//!
//! The public surface is [`PriorTransformer`], its [`PriorConfig`] and [`PriorPrompt`]; the
//! blocks stay private.
//!
//! The crate enables no burn backend: the caller picks one by creating the
//! `burn::tensor::Device`.
//!
//! ```
//! use burn::tensor::{Bool, Device, Distribution, Tensor};
//! use kandinsky_prior::PriorConfig;
//!
//! // A tiny prior with random weights (a real one comes from `PriorTransformer::load`).
//! let config = PriorConfig {
//!     num_attention_heads: 2,
//!     attention_head_dim: 8,
//!     num_layers: 2,
//!     embedding_dim: 32,
//!     num_embeddings: 7,
//!     ..PriorConfig::kandinsky_2_2()
//! };
//! config.validate("example".as_ref()).unwrap();
//! let device = Device::flex();
//! let prior = config.init(&device);
//! let normal = Distribution::Normal(0.0, 1.0);
//! let x_t = Tensor::random([2, 32], normal, &device);
//! let text_embeds = Tensor::random([2, 32], normal, &device);
//! let text_hidden = Tensor::random([2, 7, 32], normal, &device);
//! // Prompts of 4 and 7 tokens.
//! let mask = Tensor::<2, Bool>::from_data([[true, true, true, true, false, false, false], [true; 7]], &device);
//! let timestep = Tensor::from_floats([999.0], &device);
//! let x0 = prior
//!     .forward(x_t.clone(), timestep.clone(), text_embeds.clone(), text_hidden.clone(), mask.clone())
//!     .unwrap();
//! assert_eq!(x0.dims(), [2, 32]);
//! // In a denoising loop: the prompt once, then each step (the same x0 up to rounding).
//! let prompt = prior.encode_prompt(text_embeds, text_hidden, mask).unwrap();
//! let step = prior.forward_with_prompt(&prompt, x_t, timestep).unwrap();
//! assert_eq!(step.dims(), [2, 32]);
//! let embedding = prior.post_process_latents(x0); // clip_std · x0 + clip_mean
//! # let _ = embedding;
//! ```

mod attention;
mod block;
pub mod config;
pub mod error;
mod prior;

pub use config::PriorConfig;
pub use error::PriorError;
pub use kandinsky_common::trace::{Activation, Trace};
/// The weight file names of a diffusers model folder.
pub use kandinsky_common::weights::{
    DIFFUSERS_FP16 as WEIGHTS_FP16, DIFFUSERS_FP32 as WEIGHTS_FP32,
};
pub use prior::{PriorPrompt, PriorTransformer};
