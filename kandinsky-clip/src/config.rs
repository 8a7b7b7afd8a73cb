//! The encoders' configurations, as written in a transformers `config.json`
//! (`CLIPTextConfig`, `CLIPVisionConfig`, and the `MCLIPConfig` of the 2.1 `text_encoder/`).
//! Unknown fields are ignored.

use std::path::Path;

use kandinsky_common::ConfigError;
use kandinsky_common::config::{check_sizes, limits, read_json};
use serde::Deserialize;

/// The activation of the encoder MLPs (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x · sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// The exact (erf) GELU (OpenCLIP bigG, XLM-R).
    Gelu,
}

fn quick_gelu() -> HiddenAct {
    HiddenAct::QuickGelu
}
fn gelu() -> HiddenAct {
    HiddenAct::Gelu
}
fn eps_1e5() -> f64 {
    1e-5
}
fn eos() -> usize {
    2
}
fn three() -> usize {
    3
}
fn absolute() -> String {
    "absolute".into()
}

/// `CLIPTextConfig`: the text tower of CLIP with its projection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    /// Token vocabulary (49408).
    pub vocab_size: usize,
    /// Width (768 for ViT-L/14, 1280 for ViT-bigG/14).
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Width of `text_embeds`.
    pub projection_dim: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Context length (77).
    pub max_position_embeddings: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon.
    #[serde(default = "eps_1e5")]
    pub layer_norm_eps: f64,
    /// The end-of-text id as the config states it. The published configs say 2, which
    /// transformers treats as "pool at the largest token id" (the real end-of-text token, 49407,
    /// is the largest); any other value pools at its first occurrence.
    #[serde(default = "eos")]
    pub eos_token_id: usize,
}

/// `CLIPVisionConfig`: the image tower of CLIP with its projection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    /// Width (1024 for ViT-L/14, 1664 for ViT-bigG/14).
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Width of `image_embeds`.
    pub projection_dim: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Image channels (3).
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Input size (224).
    pub image_size: usize,
    /// Patch size (14).
    pub patch_size: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon.
    #[serde(default = "eps_1e5")]
    pub layer_norm_eps: f64,
}

/// The `MCLIPConfig` of kandinsky-2-1's `text_encoder/`: an XLM-RoBERTa config plus the
/// projection's widths.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MClipConfig {
    /// Token vocabulary (250002).
    pub vocab_size: usize,
    /// Width (1024).
    pub hidden_size: usize,
    /// Encoder layers (24).
    pub num_hidden_layers: usize,
    /// Attention heads (16).
    pub num_attention_heads: usize,
    /// MLP width (4096).
    pub intermediate_size: usize,
    /// MLP activation.
    #[serde(default = "gelu")]
    pub hidden_act: HiddenAct,
    /// Position table size (514).
    pub max_position_embeddings: usize,
    /// Token types (1).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-5 in the published config).
    pub layer_norm_eps: f64,
    /// The padding id (1); padded positions get this position id too.
    pub pad_token_id: usize,
    /// Only `absolute` is supported.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
    /// Input width of the projection (1024).
    #[serde(rename = "transformerDimensions")]
    pub transformer_dimensions: usize,
    /// Output width of the projection (768, CLIP ViT-L/14's).
    #[serde(rename = "numDims")]
    pub num_dims: usize,
}

fn check_heads(path: &Path, hidden: usize, heads: usize) -> Result<(), ConfigError> {
    if !hidden.is_multiple_of(heads) {
        return Err(ConfigError::invalid(
            path,
            "num_attention_heads",
            format!("must divide hidden_size ({hidden}), found {heads}"),
        ));
    }
    Ok(())
}

impl ClipTextConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks every value the model relies on; `path` only names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        check_sizes(
            path,
            &[
                ("vocab_size", self.vocab_size, limits::VOCAB),
                ("hidden_size", self.hidden_size, limits::WIDTH),
                ("intermediate_size", self.intermediate_size, limits::WIDTH),
                ("projection_dim", self.projection_dim, limits::WIDTH),
                ("num_hidden_layers", self.num_hidden_layers, limits::LAYERS),
                (
                    "num_attention_heads",
                    self.num_attention_heads,
                    limits::WIDTH,
                ),
                (
                    "max_position_embeddings",
                    self.max_position_embeddings,
                    limits::TOKENS,
                ),
            ],
        )?;
        check_heads(path, self.hidden_size, self.num_attention_heads)
    }
}

impl ClipVisionConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Checks every value the model relies on; `path` only names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        check_sizes(
            path,
            &[
                ("hidden_size", self.hidden_size, limits::WIDTH),
                ("intermediate_size", self.intermediate_size, limits::WIDTH),
                ("projection_dim", self.projection_dim, limits::WIDTH),
                ("num_hidden_layers", self.num_hidden_layers, limits::LAYERS),
                (
                    "num_attention_heads",
                    self.num_attention_heads,
                    limits::WIDTH,
                ),
                ("num_channels", self.num_channels, limits::WIDTH),
                ("image_size", self.image_size, limits::IMAGE_SIDE),
                ("patch_size", self.patch_size, limits::IMAGE_SIDE),
            ],
        )?;
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(ConfigError::invalid(
                path,
                "patch_size",
                format!(
                    "must divide image_size ({}), found {}",
                    self.image_size, self.patch_size
                ),
            ));
        }
        check_heads(path, self.hidden_size, self.num_attention_heads)
    }
}

impl MClipConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks every value the model relies on; `path` only names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        check_sizes(
            path,
            &[
                ("vocab_size", self.vocab_size, limits::VOCAB),
                ("hidden_size", self.hidden_size, limits::WIDTH),
                ("num_hidden_layers", self.num_hidden_layers, limits::LAYERS),
                (
                    "num_attention_heads",
                    self.num_attention_heads,
                    limits::WIDTH,
                ),
                ("intermediate_size", self.intermediate_size, limits::WIDTH),
                (
                    "max_position_embeddings",
                    self.max_position_embeddings,
                    limits::TOKENS,
                ),
                ("type_vocab_size", self.type_vocab_size, limits::VOCAB),
                ("numDims", self.num_dims, limits::WIDTH),
            ],
        )?;
        if self.position_embedding_type != "absolute" {
            return Err(ConfigError::invalid(
                path,
                "position_embedding_type",
                format!(
                    "expected \"absolute\", found {:?}",
                    self.position_embedding_type
                ),
            ));
        }
        if self.transformer_dimensions != self.hidden_size {
            return Err(ConfigError::invalid(
                path,
                "transformerDimensions",
                format!(
                    "must equal hidden_size ({}), found {}",
                    self.hidden_size, self.transformer_dimensions
                ),
            ));
        }
        if self.pad_token_id + 1 >= self.max_position_embeddings {
            return Err(ConfigError::invalid(
                path,
                "max_position_embeddings",
                format!(
                    "leaves no position after the padding id {}",
                    self.pad_token_id
                ),
            ));
        }
        check_heads(path, self.hidden_size, self.num_attention_heads)
    }
}
