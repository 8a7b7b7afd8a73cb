//! The UNet configuration, as written in a diffusers `unet/config.json`
//! (`UNet2DConditionModel`).
//!
//! Only the fields that shape the Kandinsky UNets are typed. Options that the published
//! checkpoints leave at their defaults but that would change the network (class embeddings,
//! time-embedding activations, cross-attention-only blocks, ...) are checked: a config that
//! sets one of them is rejected with an error naming the field, rather than silently run as
//! something else. Unknown fields are ignored.

use std::collections::BTreeMap;
use std::path::Path;

use kandinsky_common::ConfigError;
use kandinsky_common::config::{check_sizes, limits, read_json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A down block type of `down_block_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DownBlockType {
    /// Resnets, then a downsampling resnet.
    ResnetDownsampleBlock2D,
    /// Each resnet followed by an added-KV cross-attention, then a downsampling resnet.
    SimpleCrossAttnDownBlock2D,
}

/// An up block type of `up_block_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum UpBlockType {
    /// Resnets over (hidden ‖ skip), then an upsampling resnet.
    ResnetUpsampleBlock2D,
    /// Each resnet followed by an added-KV cross-attention, then an upsampling resnet.
    SimpleCrossAttnUpBlock2D,
}

/// The mid block type (`mid_block_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MidBlockType {
    /// resnet → added-KV cross-attention → resnet.
    UNetMidBlock2DSimpleCrossAttn,
}

/// How the cross-attention context is built (`encoder_hid_dim_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderHidDimType {
    /// Kandinsky 2.1: 10 tokens from the image embedding, then the projected text hidden states.
    TextImageProj,
    /// Kandinsky 2.2: 32 LayerNormed tokens from the image embedding.
    ImageProj,
}

/// What is added to the time embedding (`addition_embed_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdditionEmbedType {
    /// Kandinsky 2.1: LayerNorm(text projection) + image projection.
    TextImage,
    /// Kandinsky 2.2: LayerNorm(image projection).
    Image,
    /// Kandinsky 2.2 ControlNet: as `image`, plus a conv encoder of the hint image whose output is
    /// concatenated to the latent before `conv_in`.
    ImageHint,
}

fn default_act() -> String {
    "silu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_groups() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_positional() -> String {
    "positional".into()
}
fn default_scale_shift() -> String {
    "default".into()
}
fn default_mid() -> MidBlockType {
    MidBlockType::UNetMidBlock2DSimpleCrossAttn
}

/// The fields of diffusers' `UNet2DConditionModel` config that shape the Kandinsky UNets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UNetConfig {
    /// Channels into `conv_in`: 4 (text-to-image), 9 (inpainting: latent, masked-image latent,
    /// mask) or 8 (ControlNet: latent and the 4-channel encoded hint).
    pub in_channels: usize,
    /// Channels out: 8 (4 of noise prediction, 4 of learned variance).
    pub out_channels: usize,
    /// Down block types, one per level.
    pub down_block_types: Vec<DownBlockType>,
    /// Up block types, one per level (deepest first).
    pub up_block_types: Vec<UpBlockType>,
    /// The mid block type.
    #[serde(default = "default_mid")]
    pub mid_block_type: MidBlockType,
    /// Channel width of each level ([384, 768, 1152, 1536]).
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// The attention **head size** of the added-KV blocks (64): heads = channels / this. (The
    /// name is diffusers' historical one.)
    pub attention_head_dim: usize,
    /// Width of the cross-attention context tokens (768).
    pub cross_attention_dim: usize,
    /// Input width of the context projection: the XLM-R hidden size for 2.1 (1024), the CLIP
    /// image embedding for 2.2 (1280).
    pub encoder_hid_dim: usize,
    /// How the context is built.
    pub encoder_hid_dim_type: EncoderHidDimType,
    /// What is added to the time embedding.
    pub addition_embed_type: AdditionEmbedType,
    /// Resnet time conditioning; only `scale_shift` is supported.
    #[serde(default = "default_scale_shift")]
    pub resnet_time_scale_shift: String,
    /// Activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub act_fn: String,
    /// GroupNorm groups of the resnets, attentions and output norm.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Epsilon of the resnet and output GroupNorms.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Whether the sinusoidal timestep embedding puts cosines first.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding.
    #[serde(default)]
    pub freq_shift: f64,
    /// Only `positional` is supported.
    #[serde(default = "default_positional")]
    pub time_embedding_type: String,
    /// Width of the time embedding; 4 × `block_out_channels[0]` when absent.
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// Every other field, checked by [`UNetConfig::validate`] against [`FIXED_FIELDS`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Fields that must keep the value the Kandinsky checkpoints use (or be absent), because any
/// other value would change the network in ways this crate does not implement.
pub const FIXED_FIELDS: &[(&str, &str)] = &[
    ("num_attention_heads", "null"),
    ("class_embed_type", "null"),
    ("num_class_embeds", "null"),
    ("class_embeddings_concat", "false"),
    ("projection_class_embeddings_input_dim", "null"),
    ("time_embedding_act_fn", "null"),
    ("timestep_post_act", "null"),
    ("time_cond_proj_dim", "null"),
    ("center_input_sample", "false"),
    ("only_cross_attention", "false"),
    ("mid_block_only_cross_attention", "null"),
    ("dual_cross_attention", "false"),
    ("cross_attention_norm", "null"),
    ("resnet_skip_time_act", "false"),
    ("resnet_out_scale_factor", "1.0"),
    ("mid_block_scale_factor", "1"),
    ("conv_in_kernel", "3"),
    ("conv_out_kernel", "3"),
    ("addition_time_embed_dim", "null"),
];

fn same_value(found: &Value, expected: &Value) -> bool {
    match (found.as_f64(), expected.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => found == expected,
    }
}

impl UNetConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    fn base(in_channels: usize, hid: (usize, EncoderHidDimType), add: AdditionEmbedType) -> Self {
        use DownBlockType::*;
        use UpBlockType::*;
        Self {
            in_channels,
            out_channels: 8,
            down_block_types: vec![
                ResnetDownsampleBlock2D,
                SimpleCrossAttnDownBlock2D,
                SimpleCrossAttnDownBlock2D,
                SimpleCrossAttnDownBlock2D,
            ],
            up_block_types: vec![
                SimpleCrossAttnUpBlock2D,
                SimpleCrossAttnUpBlock2D,
                SimpleCrossAttnUpBlock2D,
                ResnetUpsampleBlock2D,
            ],
            mid_block_type: MidBlockType::UNetMidBlock2DSimpleCrossAttn,
            block_out_channels: vec![384, 768, 1152, 1536],
            layers_per_block: 3,
            attention_head_dim: 64,
            cross_attention_dim: 768,
            encoder_hid_dim: hid.0,
            encoder_hid_dim_type: hid.1,
            addition_embed_type: add,
            resnet_time_scale_shift: "scale_shift".into(),
            act_fn: "silu".into(),
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            other: BTreeMap::new(),
        }
    }

    /// The published Kandinsky 2.1 decoder UNet (`in_channels` 4, or 9 for the inpainting
    /// checkpoint).
    pub fn kandinsky_2_1(in_channels: usize) -> Self {
        let hid = (1024, EncoderHidDimType::TextImageProj);
        Self::base(in_channels, hid, AdditionEmbedType::TextImage)
    }

    /// The published Kandinsky 2.2 decoder UNet (`in_channels` 4, or 9 for the inpainting
    /// checkpoint).
    pub fn kandinsky_2_2(in_channels: usize) -> Self {
        let hid = (1280, EncoderHidDimType::ImageProj);
        Self::base(in_channels, hid, AdditionEmbedType::Image)
    }

    /// The published Kandinsky 2.2 ControlNet-depth UNet.
    pub fn kandinsky_2_2_controlnet() -> Self {
        let hid = (1280, EncoderHidDimType::ImageProj);
        Self::base(8, hid, AdditionEmbedType::ImageHint)
    }

    /// Width of the time embedding (1536).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4 * self.block_out_channels[0])
    }

    /// Width of the sinusoidal timestep features (`block_out_channels[0]`).
    pub fn timestep_dim(&self) -> usize {
        self.block_out_channels[0]
    }

    /// Channels of the latent passed to the UNet: `in_channels`, less the 4 channels of the
    /// encoded hint for the ControlNet.
    pub fn sample_channels(&self) -> usize {
        match self.addition_embed_type {
            AdditionEmbedType::ImageHint => self.in_channels - HINT_CHANNELS,
            _ => self.in_channels,
        }
    }

    /// How much the latent shrinks at the bottom of the UNet: 2^(levels − 1). Latent heights
    /// and widths must be multiples of it.
    pub fn size_multiple(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Whether level `i` of the down path has attentions.
    pub fn down_has_attention(&self, level: usize) -> bool {
        self.down_block_types[level] == DownBlockType::SimpleCrossAttnDownBlock2D
    }

    /// Whether up block `i` (deepest first) has attentions.
    pub fn up_has_attention(&self, block: usize) -> bool {
        self.up_block_types[block] == UpBlockType::SimpleCrossAttnUpBlock2D
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
        for (field, n) in [
            ("down_block_types", self.down_block_types.len()),
            ("up_block_types", self.up_block_types.len()),
        ] {
            if n != levels {
                return bad(
                    field,
                    format!("expected {levels} entries (one per block_out_channels), found {n}"),
                );
            }
        }
        for (field, value, expected) in [
            (
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                "scale_shift",
            ),
            ("act_fn", &self.act_fn, "silu"),
            (
                "time_embedding_type",
                &self.time_embedding_type,
                "positional",
            ),
        ] {
            if value != expected {
                return bad(field, format!("expected {expected:?}, found {value:?}"));
            }
        }
        for (field, expected) in FIXED_FIELDS {
            let expected: Value = serde_json::from_str(expected).expect("valid literal");
            if let Some(found) = self.other.get(*field)
                && !same_value(found, &expected)
            {
                return bad(
                    field,
                    format!("expected {expected} (the only value supported), found {found}"),
                );
            }
        }
        check_sizes(
            path,
            &[
                ("block_out_channels", levels, limits::LEVELS),
                ("in_channels", self.in_channels, limits::WIDTH),
                ("out_channels", self.out_channels, limits::WIDTH),
                ("layers_per_block", self.layers_per_block, limits::LAYERS),
                ("attention_head_dim", self.attention_head_dim, limits::WIDTH),
                (
                    "cross_attention_dim",
                    self.cross_attention_dim,
                    limits::WIDTH,
                ),
                ("encoder_hid_dim", self.encoder_hid_dim, limits::WIDTH),
                ("norm_num_groups", self.norm_num_groups, limits::WIDTH),
            ],
        )?;
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(
                "norm_eps",
                format!("expected a positive number, found {}", self.norm_eps),
            );
        }
        if !self.freq_shift.is_finite() || self.freq_shift >= (self.timestep_dim() / 2) as f64 {
            return bad(
                "freq_shift",
                format!(
                    "expected a number below {}, found {}",
                    self.timestep_dim() / 2,
                    self.freq_shift
                ),
            );
        }
        if !self.timestep_dim().is_multiple_of(2) {
            return bad(
                "block_out_channels[0]",
                format!(
                    "the timestep features need an even width, found {}",
                    self.timestep_dim()
                ),
            );
        }
        check_sizes(
            path,
            &[("time_embedding_dim", self.time_embed_dim(), limits::WIDTH)],
        )?;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c == 0 || c > limits::WIDTH || c % self.norm_num_groups != 0 {
                return bad(
                    &format!("block_out_channels[{i}]"),
                    format!(
                        "expected a positive multiple of norm_num_groups ({}), found {c}",
                        self.norm_num_groups
                    ),
                );
            }
            let attends = self.down_has_attention(i)
                || self.up_has_attention(levels - 1 - i)
                || i == levels - 1;
            if attends && c % self.attention_head_dim != 0 {
                return bad(
                    &format!("block_out_channels[{i}]"),
                    format!(
                        "an attention level's width must be a multiple of attention_head_dim ({}), found {c}",
                        self.attention_head_dim
                    ),
                );
            }
        }
        if self.addition_embed_type == AdditionEmbedType::ImageHint
            && self.in_channels <= HINT_CHANNELS
        {
            return bad(
                "in_channels",
                format!(
                    "with addition_embed_type \"image_hint\" it counts the {HINT_CHANNELS} hint channels and must exceed them, found {}",
                    self.in_channels
                ),
            );
        }
        let pair = (self.encoder_hid_dim_type, self.addition_embed_type);
        let consistent = matches!(
            pair,
            (
                EncoderHidDimType::TextImageProj,
                AdditionEmbedType::TextImage
            ) | (
                EncoderHidDimType::ImageProj,
                AdditionEmbedType::Image | AdditionEmbedType::ImageHint
            )
        );
        if !consistent {
            return bad(
                "addition_embed_type",
                format!(
                    "{} does not go with encoder_hid_dim_type {}: Kandinsky 2.1 pairs text_image_proj with text_image, 2.2 pairs image_proj with image or image_hint",
                    json!(pair.1),
                    json!(pair.0)
                ),
            );
        }
        Ok(())
    }
}

/// Channels of the encoded ControlNet hint.
pub const HINT_CHANNELS: usize = 4;
