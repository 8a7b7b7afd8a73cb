//! The MoVQ encoder: image → latent (before `quant_conv`).

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::blocks::{DownEncoderBlock2D, MidBlock2D};
use crate::config::{DownBlockType, MoVQConfig};
use crate::norm::group_norm;
use kandinsky_common::activation::silu;
use kandinsky_common::conv::{conv3x3_direct, new_conv3x3};
use kandinsky_common::trace::{Activation, Trace};

/// diffusers `Encoder` with `double_z = False`.
#[derive(Module, Debug)]
pub struct Encoder {
    /// 3×3 conv, image channels → first width.
    pub(crate) conv_in: Conv2d,
    /// One block per level; all but the last halve the resolution.
    pub(crate) down_blocks: Vec<DownEncoderBlock2D>,
    /// Resnet, attention, resnet at the deepest width.
    pub(crate) mid_block: MidBlock2D,
    /// Final GroupNorm.
    pub(crate) conv_norm_out: GroupNorm,
    /// 3×3 conv, deepest width → latent channels.
    pub(crate) conv_out: Conv2d,
}

impl Encoder {
    /// Builds the encoder with lazily initialised parameters.
    pub fn new(config: &MoVQConfig, device: &Device) -> Self {
        let widths = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let last = widths.len() - 1;
        let down_blocks = config
            .down_block_types
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let inp = if i == 0 { widths[0] } else { widths[i - 1] };
                DownEncoderBlock2D::new(
                    inp,
                    widths[i],
                    config.layers_per_block,
                    groups,
                    *kind == DownBlockType::AttnDownEncoderBlock2D,
                    i != last,
                    device,
                )
            })
            .collect();
        Self {
            conv_in: new_conv3x3(config.in_channels, widths[0], device),
            down_blocks,
            mid_block: MidBlock2D::group(
                widths[last],
                groups,
                config.mid_block_add_attention,
                device,
            ),
            conv_norm_out: group_norm(groups, widths[last], device),
            conv_out: new_conv3x3(widths[last], config.latent_channels, device),
        }
    }

    /// Encodes `x` (B, C, H, W), reporting each block's output to `trace`.
    pub fn forward(&self, x: Tensor<4>, trace: Trace<'_>) -> Tensor<4> {
        let mut h = conv3x3_direct(&self.conv_in, x);
        trace("encoder.conv_in", Activation::Map(&h));
        for (i, block) in self.down_blocks.iter().enumerate() {
            h = block.forward(h);
            trace(&format!("encoder.down_blocks.{i}"), Activation::Map(&h));
        }
        h = self.mid_block.forward(h, None);
        trace("encoder.mid_block", Activation::Map(&h));
        h = self.conv_norm_out.forward(h);
        trace("encoder.conv_norm_out", Activation::Map(&h));
        h = conv3x3_direct(&self.conv_out, silu(h));
        trace("encoder.conv_out", Activation::Map(&h));
        h
    }
}
