//! Shared pieces of the Kandinsky crates.
//!
//! Every component crate (`kandinsky-movq`, `-unet`, `-prior`, `-clip`) loads the
//! published diffusers checkpoints the same way, so the mechanics live here once:
//!
//! - [`config`]: reading a component's `config.json` into a serde struct, with errors that name
//!   the file and the offending field;
//! - [`weights`]: strict loading of a `*.safetensors` file into a burn module (every key present,
//!   no extra key, every shape and dtype checked before anything is copied), fp32, fp16 or bf16
//!   files onto a device of any float dtype;
//! - [`embeddings`]: the timestep embedding the UNet and the prior share;
//! - [`manifest`]: the names and shapes a module expects, in the checkpoint's own (PyTorch)
//!   naming, computed without allocating the weights, and compared with a text manifest.
//!
//! ```
//! use burn::nn::{LinearConfig, Linear};
//! use burn::module::Module;
//! use burn::tensor::Device;
//! use kandinsky_common::manifest::expected_tensors;
//!
//! #[derive(Module, Debug)]
//! struct Head {
//!     proj: Linear,
//! }
//!
//! let device = Device::flex();
//! let head = Head { proj: LinearConfig::new(3, 5).init(&device) };
//! // PyTorch layout: Linear weights are [out, in].
//! let names: Vec<String> = expected_tensors(&head).iter().map(|t| t.to_string()).collect();
//! assert_eq!(names, ["proj.weight 5,3", "proj.bias 5"]);
//! ```

pub mod activation;
pub mod attention;
pub mod config;
pub mod conv;
pub mod embeddings;
pub mod files;
mod host;
pub mod linear;
pub mod manifest;
pub(crate) mod matmul;
pub mod norm;
pub mod tensors;
pub mod trace;
pub mod weights;

pub use config::ConfigError;
pub use manifest::{ExpectedTensor, expected_tensors};
pub use weights::{
    LinearLayout, WeightProblem, WeightsError, load_safetensors, load_safetensors_with,
    with_linear_layout,
};
