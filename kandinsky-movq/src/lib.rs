//! The MoVQ autoencoder of Kandinsky 2.1 and 2.2 on [burn], loading the published diffusers
//! checkpoints (`movq/` folder: `config.json` + `diffusion_pytorch_model[.fp16].safetensors`)
//! as they are on disk.
//!
//! The decoder maps the 4-channel latents of the Kandinsky UNet to RGB images (factor 8); every
//! decoder norm is a SpatialNorm conditioned on the latent. The crate enables no burn backend:
//! the application picks one (`flex` on CPU, `cuda`, `wgpu`, ...) and passes its [`Device`].
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use kandinsky_movq::{MoVQ, MoVQConfig};
//!
//! # fn main() -> Result<(), kandinsky_movq::MoVQError> {
//! let device = Device::flex();
//! # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/movq/movq");
//! // `dir` is a diffusers `movq/` folder, e.g. kandinsky-2-2-decoder/movq.
//! let movq = MoVQ::load(&dir, &device)?;
//! let latents = Tensor::<4>::random([1, 4, 3, 5], Distribution::Normal(0.0, 1.0), &device);
//! let image = movq.decode(latents, true)?; // what the pipelines call
//! assert_eq!(image.dims(), [1, 3, 24, 40]);
//!
//! // A real-size model without weights (lazily initialised, e.g. for a dry run):
//! let _untrained = MoVQConfig::kandinsky().init(&device);
//! # Ok(())
//! # }
//! ```
//!
//! [burn]: https://burn.dev
//! [`Device`]: burn::tensor::Device

mod attention;
mod blocks;
pub mod config;
mod decoder;
mod encoder;
mod error;
mod model;
mod norm;
mod quantizer;
mod resnet;
mod sampling;

pub use config::MoVQConfig;
pub use error::MoVQError;
pub use kandinsky_common::trace::{Activation, Trace};
pub use model::{MoVQ, WEIGHTS_FP16, WEIGHTS_FP32};
