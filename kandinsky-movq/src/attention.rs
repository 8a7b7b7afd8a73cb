//! Single-head spatial self-attention (diffusers `Attention` with `AttnProcessor2_0`).

use burn::module::Module;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kandinsky_common::attention::attention;
use kandinsky_common::linear::linear;

use crate::norm::{SpatialNorm, group_norm};

/// Self-attention over the H·W positions with one head of the full channel width, a residual
/// connection and a pre-norm: GroupNorm in the encoder, SpatialNorm in the decoder.
#[derive(Module, Debug)]
pub struct Attention {
    /// Encoder pre-norm.
    pub(crate) group_norm: Option<GroupNorm>,
    /// Decoder pre-norm, conditioned on the latent.
    pub(crate) spatial_norm: Option<SpatialNorm>,
    /// Query projection.
    pub(crate) to_q: Linear,
    /// Key projection.
    pub(crate) to_k: Linear,
    /// Value projection.
    pub(crate) to_v: Linear,
    /// Output projection (`to_out.0`; index 1 is a dropout in diffusers).
    pub(crate) to_out: Vec<Linear>,
}

impl Attention {
    fn with_norms(
        channels: usize,
        group_norm: Option<GroupNorm>,
        spatial_norm: Option<SpatialNorm>,
        device: &Device,
    ) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm,
            spatial_norm,
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
        }
    }

    /// An encoder attention with GroupNorm(`groups`).
    pub fn group(channels: usize, groups: usize, device: &Device) -> Self {
        Self::with_norms(
            channels,
            Some(group_norm(groups, channels, device)),
            None,
            device,
        )
    }

    /// A decoder attention with SpatialNorm.
    pub fn spatial(channels: usize, zq_channels: usize, device: &Device) -> Self {
        let norm = SpatialNorm::new(channels, zq_channels, device);
        Self::with_norms(channels, None, Some(norm), device)
    }

    /// Applies the block to `x` (B, C, H, W).
    ///
    /// # Panics
    /// If the block has a spatial norm and `zq` is `None` (the decoder always passes it).
    pub fn forward(&self, x: Tensor<4>, zq: Option<&Tensor<4>>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let hidden = match (&self.spatial_norm, zq) {
            (Some(norm), Some(zq)) => norm.forward(x.clone(), zq),
            (Some(_), None) => {
                unreachable!("the decoder always passes the latent to its spatial norms")
            }
            (None, _) => x.clone(),
        };
        let mut hidden = hidden.reshape([b, c, h * w]);
        if let Some(norm) = &self.group_norm {
            hidden = norm.forward(hidden);
        }
        let hidden = hidden.swap_dims(1, 2); // (B, HW, C)
        let q = linear(&self.to_q, hidden.clone()).unsqueeze_dim::<4>(1);
        let k = linear(&self.to_k, hidden.clone()).unsqueeze_dim::<4>(1);
        let v = linear(&self.to_v, hidden).unsqueeze_dim::<4>(1);
        let out = attention(q, k, v);
        let out = linear(&self.to_out[0], out.squeeze_dim::<3>(1));
        out.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}
