//! The MoVQ decoder: latent → image, every norm a SpatialNorm conditioned on the latent.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::blocks::{MidBlock2D, UpDecoderBlock2D};
use crate::config::{MoVQConfig, UpBlockType};
use crate::norm::SpatialNorm;
use kandinsky_common::activation::silu;
use kandinsky_common::conv::{conv3x3, new_conv3x3};
use kandinsky_common::trace::{Activation, Trace};

/// diffusers `Decoder` with `norm_type = "spatial"`.
#[derive(Module, Debug)]
pub struct Decoder {
    /// 3×3 conv, latent channels → deepest width.
    pub(crate) conv_in: Conv2d,
    /// Resnet, attention, resnet at the deepest width.
    pub(crate) mid_block: MidBlock2D,
    /// One block per level, deepest first; all but the last double the resolution.
    pub(crate) up_blocks: Vec<UpDecoderBlock2D>,
    /// Final SpatialNorm.
    pub(crate) conv_norm_out: SpatialNorm,
    /// 3×3 conv, first width → image channels.
    pub(crate) conv_out: Conv2d,
}

impl Decoder {
    /// Builds the decoder with lazily initialised parameters.
    pub fn new(config: &MoVQConfig, device: &Device) -> Self {
        let reversed: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let zq = config.latent_channels;
        let last = reversed.len() - 1;
        let up_blocks = config
            .up_block_types
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let inp = if i == 0 { reversed[0] } else { reversed[i - 1] };
                UpDecoderBlock2D::new(
                    inp,
                    reversed[i],
                    config.layers_per_block + 1,
                    zq,
                    *kind == UpBlockType::AttnUpDecoderBlock2D,
                    i != last,
                    device,
                )
            })
            .collect();
        Self {
            conv_in: new_conv3x3(config.latent_channels, reversed[0], device),
            mid_block: MidBlock2D::spatial(reversed[0], zq, config.mid_block_add_attention, device),
            up_blocks,
            conv_norm_out: SpatialNorm::new(reversed[last], zq, device),
            conv_out: new_conv3x3(reversed[last], config.out_channels, device),
        }
    }

    /// Decodes `z` (after `post_quant_conv`) conditioned on `zq` (before it).
    pub fn forward(&self, z: Tensor<4>, zq: &Tensor<4>, trace: Trace<'_>) -> Tensor<4> {
        let mut h = conv3x3(&self.conv_in, z);
        trace("decoder.conv_in", Activation::Map(&h));
        h = self.mid_block.forward(h, Some(zq));
        trace("decoder.mid_block", Activation::Map(&h));
        for (i, block) in self.up_blocks.iter().enumerate() {
            h = block.forward(h, zq);
            trace(&format!("decoder.up_blocks.{i}"), Activation::Map(&h));
        }
        h = self.conv_norm_out.forward(h, zq);
        trace("decoder.conv_norm_out", Activation::Map(&h));
        h = conv3x3(&self.conv_out, silu(h));
        trace("decoder.conv_out", Activation::Map(&h));
        h
    }
}
