//! The resnet block: diffusers `ResnetBlock2D` (encoder) and `ResnetBlockCondNorm2D` with
//! spatial norm (decoder). No time embedding, output scale 1.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use kandinsky_common::conv::{conv3x3_direct, conv3x3_large_tiles, new_conv3x3};

use crate::norm::{Norm, SpatialNorm, group_norm};

/// norm1 → SiLU → conv1 → norm2 → SiLU → conv2, plus the (1×1-projected) input.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    /// First norm.
    pub(crate) norm1: Norm,
    /// First 3×3 conv, in → out.
    pub(crate) conv1: Conv2d,
    /// Second norm.
    pub(crate) norm2: Norm,
    /// Second 3×3 conv, out → out.
    pub(crate) conv2: Conv2d,
    /// 1×1 conv on the shortcut when the channel count changes.
    pub(crate) conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// An encoder resnet with GroupNorm(`groups`).
    pub fn group(inp: usize, out: usize, groups: usize, device: &Device) -> Self {
        Self::with_norms(
            Norm::Group(group_norm(groups, inp, device)),
            Norm::Group(group_norm(groups, out, device)),
            inp,
            out,
            device,
        )
    }

    /// A decoder resnet with SpatialNorm conditioned on `zq_channels` latent channels.
    pub fn spatial(inp: usize, out: usize, zq_channels: usize, device: &Device) -> Self {
        Self::with_norms(
            Norm::Spatial(SpatialNorm::new(inp, zq_channels, device)),
            Norm::Spatial(SpatialNorm::new(out, zq_channels, device)),
            inp,
            out,
            device,
        )
    }

    fn with_norms(norm1: Norm, norm2: Norm, inp: usize, out: usize, device: &Device) -> Self {
        Self {
            norm1,
            conv1: new_conv3x3(inp, out, device),
            norm2,
            conv2: new_conv3x3(out, out, device),
            conv_shortcut: (inp != out).then(|| Conv2dConfig::new([inp, out], [1, 1]).init(device)),
        }
    }

    /// Applies the block; `zq` conditions spatial norms.
    ///
    /// # Panics
    /// If the block has spatial norms and `zq` is `None`.
    pub fn forward(&self, x: Tensor<4>, zq: Option<&Tensor<4>>) -> Tensor<4> {
        let h = self.norm1.forward_then(x.clone(), zq, true);
        // The decoder's (spatial-norm) resnets take the fastest path, whose larger rounding
        // error nothing amplifies (their result is the image); the encoder's keep the direct
        // convolution (`conv3x3_direct`: its latents seed the UNet in image-to-image).
        let conv = if zq.is_some() {
            conv3x3_large_tiles
        } else {
            conv3x3_direct
        };
        let h = conv(&self.conv1, h);
        let h = self.norm2.forward_then(h, zq, true);
        let h = conv(&self.conv2, h);
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}
