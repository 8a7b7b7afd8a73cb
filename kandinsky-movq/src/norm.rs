//! Normalisations: plain GroupNorm (encoder) and SpatialNorm (decoder).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::{Device, Tensor};
use kandinsky_common::norm::{After, group_norm_then};

use crate::config::SPATIAL_NORM_GROUPS;

/// Epsilon of every norm in the MoVQ (diffusers `resnet_eps` = 1e-6).
pub const EPS: f64 = 1e-6;

/// A GroupNorm with the MoVQ's epsilon.
pub fn group_norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(EPS)
        .init(device)
}

/// diffusers `SpatialNorm`: `GroupNorm(f) * conv_y(zq) + conv_b(zq)`, with `zq` (the quantized
/// latent) nearest-resized to `f`'s size and always 32 groups.
#[derive(Module, Debug)]
pub struct SpatialNorm {
    /// GroupNorm(32, f_channels, eps 1e-6).
    pub(crate) norm_layer: GroupNorm,
    /// 1×1 conv zq → scale.
    pub(crate) conv_y: Conv2d,
    /// 1×1 conv zq → shift.
    pub(crate) conv_b: Conv2d,
}

impl SpatialNorm {
    /// A SpatialNorm over `channels` features conditioned on `zq_channels` latent channels.
    pub fn new(channels: usize, zq_channels: usize, device: &Device) -> Self {
        Self {
            norm_layer: group_norm(SPATIAL_NORM_GROUPS, channels, device),
            conv_y: Conv2dConfig::new([zq_channels, channels], [1, 1]).init(device),
            conv_b: Conv2dConfig::new([zq_channels, channels], [1, 1]).init(device),
        }
    }

    /// Normalises `f` (B, C, H, W) conditioned on `zq` (B, zq_channels, h, w).
    pub fn forward(&self, f: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        self.forward_then(f, zq, false)
    }

    /// [`Self::forward`], then SiLU if `silu`. The 1×1 convolutions run on `zq` at its own
    /// resolution and their outputs are nearest-upsampled, where the reference upsamples `zq`
    /// first: a 1×1 convolution acts on each position alone and nearest upsampling copies
    /// positions, so the two commute exactly (the same dot products), at 1/64 of the work at
    /// 512×512.
    pub fn forward_then(&self, f: Tensor<4>, zq: &Tensor<4>, silu: bool) -> Tensor<4> {
        let scale = self.conv_y.forward(zq.clone());
        let shift = self.conv_b.forward(zq.clone());
        let after = After {
            modulation: Some((&scale, &shift)),
            silu,
        };
        group_norm_then(&self.norm_layer, f, after)
    }
}

/// The norm of a resnet: GroupNorm in the encoder, SpatialNorm in the decoder. Both sit under
/// the same checkpoint keys (`norm1`, `norm2`), so this enum adds nothing to the key path.
// A few hundred of these exist per model, built once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Norm {
    /// Plain GroupNorm.
    Group(GroupNorm),
    /// SpatialNorm conditioned on the latent.
    Spatial(SpatialNorm),
}

impl Norm {
    /// Applies the norm, then SiLU if `silu` (fused into the norm's pass on the CPU); `zq` is
    /// required by (and only used by) the spatial variant.
    ///
    /// # Panics
    /// If the norm is spatial and `zq` is `None` (the decoder always passes it).
    pub fn forward_then(&self, x: Tensor<4>, zq: Option<&Tensor<4>>, silu: bool) -> Tensor<4> {
        match (self, zq) {
            (Norm::Group(norm), _) => group_norm_then(
                norm,
                x,
                After {
                    modulation: None,
                    silu,
                },
            ),
            (Norm::Spatial(norm), Some(zq)) => norm.forward_then(x, zq, silu),
            (Norm::Spatial(_), None) => {
                unreachable!("the decoder always passes the latent to its spatial norms")
            }
        }
    }
}
