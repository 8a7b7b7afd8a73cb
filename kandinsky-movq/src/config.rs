//! The MoVQ configuration, as written in a diffusers `movq/config.json` (`VQModel`).

use std::path::Path;

use kandinsky_common::ConfigError;
use kandinsky_common::config::{check_sizes, limits, read_json};
use serde::Deserialize;

/// An encoder block type of `down_block_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DownBlockType {
    /// Resnets only.
    DownEncoderBlock2D,
    /// Each resnet followed by a self-attention.
    AttnDownEncoderBlock2D,
}

/// A decoder block type of `up_block_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum UpBlockType {
    /// Resnets only.
    UpDecoderBlock2D,
    /// Each resnet followed by a self-attention.
    AttnUpDecoderBlock2D,
}

/// The normalisation of the decoder. Kandinsky's MoVQ uses `spatial` (SpatialNorm conditioned
/// on the latent); `group` (a plain VQGAN decoder) is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormType {
    /// SpatialNorm conditioned on the quantized latent.
    Spatial,
    /// Plain GroupNorm (not a Kandinsky MoVQ; rejected by [`MoVQConfig::validate`]).
    Group,
}

fn default_true() -> bool {
    true
}

fn default_act() -> String {
    "silu".into()
}

/// The fields of diffusers' `VQModel` config that shape the model. Unknown fields
/// (`_class_name`, `scaling_factor`, `force_upcast`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MoVQConfig {
    /// Image channels in (3).
    pub in_channels: usize,
    /// Image channels out (3).
    pub out_channels: usize,
    /// Encoder block types, one per level.
    pub down_block_types: Vec<DownBlockType>,
    /// Decoder block types, one per level (deepest first).
    pub up_block_types: Vec<UpBlockType>,
    /// Channel width of each level ([128, 256, 256, 512]).
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (the decoder has one more).
    pub layers_per_block: usize,
    /// Activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub act_fn: String,
    /// Latent channels (4).
    pub latent_channels: usize,
    /// GroupNorm groups of the encoder (SpatialNorm always uses 32).
    pub norm_num_groups: usize,
    /// Codebook size (16384).
    pub num_vq_embeddings: usize,
    /// Codebook vector width; must equal `latent_channels` with spatial norm.
    pub vq_embed_dim: Option<usize>,
    /// Decoder normalisation.
    #[serde(default = "default_norm")]
    pub norm_type: NormType,
    /// Whether the mid blocks have an attention.
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    /// Whether `decode` treats its input as codebook indices; not supported.
    #[serde(default)]
    pub lookup_from_codebook: bool,
}

fn default_norm() -> NormType {
    NormType::Group
}

/// GroupNorm groups that diffusers' SpatialNorm hard-codes, whatever `norm_num_groups` says.
pub const SPATIAL_NORM_GROUPS: usize = 32;

impl MoVQConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// The configuration of the published Kandinsky 2.1 and 2.2 MoVQ.
    pub fn kandinsky() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec![
                DownBlockType::DownEncoderBlock2D,
                DownBlockType::DownEncoderBlock2D,
                DownBlockType::DownEncoderBlock2D,
                DownBlockType::AttnDownEncoderBlock2D,
            ],
            up_block_types: vec![
                UpBlockType::AttnUpDecoderBlock2D,
                UpBlockType::UpDecoderBlock2D,
                UpBlockType::UpDecoderBlock2D,
                UpBlockType::UpDecoderBlock2D,
            ],
            block_out_channels: vec![128, 256, 256, 512],
            layers_per_block: 2,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            num_vq_embeddings: 16384,
            vq_embed_dim: Some(4),
            norm_type: NormType::Spatial,
            mid_block_add_attention: true,
            lookup_from_codebook: false,
        }
    }

    /// Codebook vector width.
    pub fn embed_dim(&self) -> usize {
        self.vq_embed_dim.unwrap_or(self.latent_channels)
    }

    /// Spatial downsampling factor between image and latent: 2^(levels − 1).
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Checks every value the model relies on; `path` only names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| Err(ConfigError::invalid(path, field, message));
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return bad(
                "block_out_channels",
                "expected at least one level, found none".into(),
            );
        }
        if self.down_block_types.len() != levels {
            return bad(
                "down_block_types",
                format!(
                    "expected {levels} entries (one per block_out_channels), found {}",
                    self.down_block_types.len()
                ),
            );
        }
        if self.up_block_types.len() != levels {
            return bad(
                "up_block_types",
                format!(
                    "expected {levels} entries (one per block_out_channels), found {}",
                    self.up_block_types.len()
                ),
            );
        }
        if self.norm_type != NormType::Spatial {
            return bad(
                "norm_type",
                "expected \"spatial\" (Kandinsky's MoVQ), found \"group\"".into(),
            );
        }
        if self.act_fn != "silu" {
            return bad(
                "act_fn",
                format!("expected \"silu\", found {:?}", self.act_fn),
            );
        }
        if self.lookup_from_codebook {
            return bad("lookup_from_codebook", "expected false, found true".into());
        }
        check_sizes(
            path,
            &[
                ("block_out_channels", levels, limits::LEVELS),
                ("in_channels", self.in_channels, limits::WIDTH),
                ("out_channels", self.out_channels, limits::WIDTH),
                ("latent_channels", self.latent_channels, limits::WIDTH),
                ("layers_per_block", self.layers_per_block, limits::LAYERS),
                ("norm_num_groups", self.norm_num_groups, limits::WIDTH),
                ("num_vq_embeddings", self.num_vq_embeddings, limits::VOCAB),
                ("vq_embed_dim", self.embed_dim(), limits::WIDTH),
            ],
        )?;
        if self.embed_dim() != self.latent_channels {
            return bad(
                "vq_embed_dim",
                format!(
                    "with spatial norm it must equal latent_channels ({}), found {}",
                    self.latent_channels,
                    self.embed_dim()
                ),
            );
        }
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c == 0
                || c > limits::WIDTH
                || c % self.norm_num_groups != 0
                || c % SPATIAL_NORM_GROUPS != 0
            {
                return bad(
                    &format!("block_out_channels[{i}]"),
                    format!(
                        "expected a positive multiple of norm_num_groups ({}) and of SpatialNorm's {SPATIAL_NORM_GROUPS} groups, found {c}",
                        self.norm_num_groups
                    ),
                );
            }
        }
        Ok(())
    }
}
