//! The text and image encoders of Kandinsky 2.1 and 2.2 on burn, loading transformers folders
//! (`config.json` + `model[.fp16].safetensors`) as they are on disk:
//!
//! - [`ClipTextModel`]: CLIP text tower with projection (`text_encoder/` of the prior
//!   repos: ViT-L/14 for 2.1, ViT-bigG/14 for 2.2), returning `text_embeds` and
//!   `last_hidden_state`;
//! - [`ClipVisionModel`]: CLIP image tower with projection (`image_encoder/`),
//!   returning `image_embeds`;
//! - [`MultilingualClip`]: the 2.1 decoder's text encoder (XLM-RoBERTa-Large +
//!   projection, `kandinsky-2-1/text_encoder/`), returning the pooled projection and the hidden
//!   states;
//! - [`TextTokenizer`]: the CLIP and XLM-R tokenizers, padded and truncated as the
//!   pipelines do;
//! - [`ClipImageProcessor`]: CLIP image preprocessing (Pillow's bicubic resize, byte for byte,
//!   center crop, normalization), over [`resample`]: Pillow's resize and reduce on the host.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use kandinsky_clip::config::{ClipTextConfig, HiddenAct};
//!
//! // A tiny CLIP text encoder with random weights (a real one: `ClipTextModel::load(dir, &device)`).
//! let config = ClipTextConfig {
//!     vocab_size: 100,
//!     hidden_size: 32,
//!     intermediate_size: 64,
//!     projection_dim: 16,
//!     num_hidden_layers: 2,
//!     num_attention_heads: 4,
//!     max_position_embeddings: 8,
//!     hidden_act: HiddenAct::Gelu,
//!     layer_norm_eps: 1e-5,
//!     eos_token_id: 2,
//! };
//! let device = Device::flex();
//! let encoder = config.init(&device);
//! // SOT, two tokens, EOT (the largest id), padding.
//! let ids = Tensor::<2, Int>::from_ints([[98, 5, 7, 99, 0, 0, 0, 0]], &device);
//! let out = encoder.forward(ids).unwrap();
//! assert_eq!(out.text_embeds.dims(), [1, 16]);
//! assert_eq!(out.last_hidden_state.dims(), [1, 8, 32]);
//! ```

pub mod config;
mod encoder;
pub mod error;
pub mod image;
pub mod resample;
mod text;
pub mod tokenizer;
mod vision;
mod xlm_roberta;

pub use error::ClipError;
pub use image::{ClipImageProcessor, Resample, RgbImage, resize};
pub use kandinsky_common::trace::{Activation, Trace};
/// The weight file names of a transformers model folder.
pub use kandinsky_common::weights::{
    TRANSFORMERS_FP16 as WEIGHTS_FP16, TRANSFORMERS_FP32 as WEIGHTS_FP32,
};
pub use text::{ClipTextModel, ClipTextOutput};
pub use tokenizer::{TextTokenizer, TokenizerError, TokenizerFiles, Tokens};
pub use vision::{ClipVisionModel, ClipVisionOutput};
pub use xlm_roberta::{MClipOutput, MultilingualClip};
