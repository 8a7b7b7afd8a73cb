//! The latent-diffusion decoder UNet of Kandinsky 2.1 and 2.2 on burn: text-to-image,
//! inpainting (9 input channels) and ControlNet-depth, loaded from the published diffusers
//! `unet/` folders (`config.json` + `diffusion_pytorch_model[.fp16].safetensors`) as they are.
//!
//! The module tree mirrors diffusers' `UNet2DConditionModel`, so every weight key maps to a
//! field: `down_blocks.1.attentions.0.add_k_proj.weight` is
//! `unet.down_blocks[1].attentions[0].add_k_proj.weight`.
//!
//! - [`config`]: the checkpoint's `config.json`, validated;
//! - `embeddings`: the context builders
//!   (`encoder_hid_proj`) and the conditioning embeddings (`add_embedding`, with the ControlNet
//!   hint encoder);
//! - the resnets' 3×3 convolution is `kandinsky_common::conv` (shared with the MoVQ: a
//!   matrix-product path for small maps, Winograd F(2×2, 3×3) on the CPU);
//! - `resnet`: the scale-shift resnet with resnet-based down/up sampling;
//! - `attention`: added-KV cross-attention through burn's fused attention op;
//! - `blocks`: down, mid and up blocks;
//! - `unet`: the model, loading and the forward pass.
//!
//! The public surface is [`UNet`], its [`UNetConfig`] and [`Conditioning`]; the blocks stay
//! private (the `blocks` feature makes them public for profiling, not as a stable API).
//!
//! The crate enables no burn backend: the caller picks one by creating the
//! [`Device`](burn::tensor::Device).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use kandinsky_unet::{Conditioning, UNetConfig};
//!
//! // A tiny 2.2-style UNet with random weights (a real one comes from `UNet::load(dir, &device)`).
//! let mut config = UNetConfig::kandinsky_2_2(4);
//! config.block_out_channels = vec![32, 64];
//! config.down_block_types.truncate(2);
//! config.up_block_types.drain(..2);
//! config.layers_per_block = 1;
//! config.attention_head_dim = 16;
//! config.cross_attention_dim = 32;
//! config.encoder_hid_dim = 24;
//! config.norm_num_groups = 8;
//! config.validate("example".as_ref()).unwrap();
//!
//! let device = Device::flex();
//! let unet = config.init(&device);
//! let latent = Tensor::random([2, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let image_embeds = Tensor::random([2, 24], Distribution::Normal(0.0, 1.0), &device);
//! let timestep = Tensor::from_floats([999.0], &device);
//! let out = unet.forward(latent, timestep, Conditioning::Image { image_embeds }).unwrap();
//! assert_eq!(out.dims(), [2, 8, 8, 8]); // noise (4) and variance (4)
//! ```

#[cfg(feature = "blocks")]
pub mod attention;
#[cfg(not(feature = "blocks"))]
mod attention;
#[cfg(feature = "blocks")]
pub mod blocks;
#[cfg(not(feature = "blocks"))]
mod blocks;
pub mod config;
#[cfg(feature = "blocks")]
pub mod embeddings;
#[cfg(not(feature = "blocks"))]
mod embeddings;
pub mod error;
#[cfg(feature = "blocks")]
pub mod resnet;
#[cfg(not(feature = "blocks"))]
mod resnet;
mod unet;

pub use config::UNetConfig;
pub use error::UNetError;
pub use kandinsky_common::trace::{Activation, Trace};
/// The weight file names of a diffusers model folder.
pub use kandinsky_common::weights::{
    DIFFUSERS_FP16 as WEIGHTS_FP16, DIFFUSERS_FP32 as WEIGHTS_FP32,
};
pub use unet::{Conditioning, UNet};
