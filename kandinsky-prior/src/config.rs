//! The prior configuration, as written in a diffusers `prior/config.json` (`PriorTransformer`).

use std::path::Path;

use kandinsky_common::ConfigError;
use kandinsky_common::config::{check_sizes, limits, read_json};
use serde::Deserialize;

fn default_act() -> String {
    "silu".into()
}
fn default_linear() -> Option<String> {
    Some("linear".into())
}
fn default_prd() -> Option<String> {
    Some("prd".into())
}
fn default_heads() -> usize {
    32
}
fn default_head_dim() -> usize {
    64
}
fn default_layers() -> usize {
    20
}
fn default_embedding_dim() -> usize {
    768
}
fn default_tokens() -> usize {
    77
}
fn default_additional() -> usize {
    4
}

/// The fields of diffusers' `PriorTransformer` config. Missing fields take diffusers' defaults
/// (the 2.1 prior's config is empty: it uses all of them). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriorConfig {
    /// Attention heads (32).
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Width of each head (64); heads × this is the inner width (2048).
    #[serde(default = "default_head_dim")]
    pub attention_head_dim: usize,
    /// Transformer blocks (20).
    #[serde(default = "default_layers")]
    pub num_layers: usize,
    /// Width of the CLIP embeddings in and out: 768 (2.1, ViT-L/14) or 1280 (2.2, ViT-bigG/14).
    #[serde(default = "default_embedding_dim")]
    pub embedding_dim: usize,
    /// Text tokens (77).
    #[serde(default = "default_tokens")]
    pub num_embeddings: usize,
    /// Tokens after the text: the text embedding, the time, the noisy image embedding and the
    /// prd token (4).
    #[serde(default = "default_additional")]
    pub additional_embeddings: usize,
    /// Activation of the time MLP; only `silu` is supported.
    #[serde(default = "default_act")]
    pub time_embed_act_fn: String,
    /// Only `null` (no input LayerNorm) is supported.
    #[serde(default)]
    pub norm_in_type: Option<String>,
    /// Only `null` (no LayerNorm on the text embedding) is supported.
    #[serde(default)]
    pub embedding_proj_norm_type: Option<String>,
    /// Only `linear` is supported.
    #[serde(default = "default_linear")]
    pub encoder_hid_proj_type: Option<String>,
    /// Only `prd` (a learned output token) is supported.
    #[serde(default = "default_prd")]
    pub added_emb_type: Option<String>,
    /// Hidden width of the time MLP; the inner width when absent.
    #[serde(default)]
    pub time_embed_dim: Option<usize>,
    /// Width of the text embedding; `embedding_dim` when absent.
    #[serde(default)]
    pub embedding_proj_dim: Option<usize>,
    /// Width of the predicted image embedding; `embedding_dim` when absent.
    #[serde(default)]
    pub clip_embed_dim: Option<usize>,
}

impl PriorConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// The published prior of Kandinsky 2.1 (CLIP ViT-L/14 embeddings, width 768).
    pub fn kandinsky_2_1() -> Self {
        Self {
            num_attention_heads: 32,
            attention_head_dim: 64,
            num_layers: 20,
            embedding_dim: 768,
            num_embeddings: 77,
            additional_embeddings: 4,
            time_embed_act_fn: "silu".into(),
            norm_in_type: None,
            embedding_proj_norm_type: None,
            encoder_hid_proj_type: Some("linear".into()),
            added_emb_type: Some("prd".into()),
            time_embed_dim: None,
            embedding_proj_dim: None,
            clip_embed_dim: None,
        }
    }

    /// The published prior of Kandinsky 2.2 (CLIP ViT-bigG/14 embeddings, width 1280).
    pub fn kandinsky_2_2() -> Self {
        Self {
            embedding_dim: 1280,
            ..Self::kandinsky_2_1()
        }
    }

    /// Width of the transformer (heads × head width).
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Hidden width of the time MLP.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embed_dim.unwrap_or(self.inner_dim())
    }

    /// Width of the text embedding input.
    pub fn embedding_proj_dim(&self) -> usize {
        self.embedding_proj_dim.unwrap_or(self.embedding_dim)
    }

    /// Width of the predicted image embedding (and of `clip_mean`/`clip_std`).
    pub fn clip_embed_dim(&self) -> usize {
        self.clip_embed_dim.unwrap_or(self.embedding_dim)
    }

    /// Tokens in the transformer's sequence.
    pub fn sequence_len(&self) -> usize {
        self.num_embeddings + self.additional_embeddings
    }

    /// Checks every value the model relies on; `path` only names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| Err(ConfigError::invalid(path, field, message));
        for (field, value, expected) in [
            ("norm_in_type", &self.norm_in_type, None),
            (
                "embedding_proj_norm_type",
                &self.embedding_proj_norm_type,
                None,
            ),
            (
                "encoder_hid_proj_type",
                &self.encoder_hid_proj_type,
                Some("linear"),
            ),
            ("added_emb_type", &self.added_emb_type, Some("prd")),
        ] {
            if value.as_deref() != expected {
                return bad(
                    field,
                    format!("expected {expected:?} (the only value supported), found {value:?}"),
                );
            }
        }
        if self.time_embed_act_fn != "silu" {
            return bad(
                "time_embed_act_fn",
                format!("expected \"silu\", found {:?}", self.time_embed_act_fn),
            );
        }
        if self.additional_embeddings != 4 {
            return bad(
                "additional_embeddings",
                format!(
                    "expected 4 (text embedding, time, image embedding, prd token), found {}",
                    self.additional_embeddings
                ),
            );
        }
        check_sizes(
            path,
            &[
                (
                    "num_attention_heads",
                    self.num_attention_heads,
                    limits::WIDTH,
                ),
                ("attention_head_dim", self.attention_head_dim, limits::WIDTH),
                ("num_layers", self.num_layers, limits::LAYERS),
                ("embedding_dim", self.embedding_dim, limits::WIDTH),
                ("num_embeddings", self.num_embeddings, limits::TOKENS),
                ("time_embed_dim", self.time_embed_dim(), limits::WIDTH),
                (
                    "embedding_proj_dim",
                    self.embedding_proj_dim(),
                    limits::WIDTH,
                ),
                ("clip_embed_dim", self.clip_embed_dim(), limits::WIDTH),
                // Heads × head width, the transformer's width (checked on the product).
                (
                    "attention_head_dim",
                    self.num_attention_heads
                        .saturating_mul(self.attention_head_dim),
                    limits::WIDTH,
                ),
            ],
        )?;
        if !self.inner_dim().is_multiple_of(2) {
            return bad(
                "attention_head_dim",
                format!(
                    "the timestep features need an even inner width (heads × head width), found {}",
                    self.inner_dim()
                ),
            );
        }
        Ok(())
    }
}
