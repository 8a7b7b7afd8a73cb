//! The down, mid and up blocks: diffusers `ResnetDownsampleBlock2D` /
//! `SimpleCrossAttnDownBlock2D`, `UNetMidBlock2DSimpleCrossAttn`, and `SimpleCrossAttnUpBlock2D`
//! / `ResnetUpsampleBlock2D`. The plain and the attention variants of a level differ only in
//! whether `attentions` is empty, which is also how their weight keys differ.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::attention::Attention;
use crate::resnet::{Resample, ResnetBlock2D, ResnetSizes};

/// Sizes shared by every block of a UNet.
#[derive(Debug, Clone, Copy)]
pub struct BlockSizes {
    /// Norm groups, epsilon and time-embedding width of the resnets.
    pub(crate) resnet: ResnetSizes,
    /// Attention head size.
    pub(crate) head_dim: usize,
    /// Width of the context tokens.
    pub(crate) context_dim: usize,
}

impl BlockSizes {
    fn attention(&self, channels: usize, device: &Device) -> Attention {
        let groups = self.resnet.groups;
        Attention::new(channels, self.head_dim, self.context_dim, groups, device)
    }
}

/// One level of the down path.
#[derive(Module, Debug)]
pub struct DownBlock {
    /// `layers` resnets; the first changes the width.
    pub(crate) resnets: Vec<ResnetBlock2D>,
    /// One attention after each resnet, or none.
    pub(crate) attentions: Vec<Attention>,
    /// The downsampling resnet (`downsamplers.0`), absent at the last level.
    pub(crate) downsamplers: Vec<ResnetBlock2D>,
}

impl DownBlock {
    /// A level from `inp` to `out` channels.
    pub fn new(
        inp: usize,
        out: usize,
        layers: usize,
        attention: bool,
        downsample: bool,
        sizes: BlockSizes,
        device: &Device,
    ) -> Self {
        let resnet = |i, resample| ResnetBlock2D::new(i, out, sizes.resnet, resample, device);
        let resnets = (0..layers)
            .map(|j| resnet(if j == 0 { inp } else { out }, Resample::None))
            .collect();
        let attentions = match attention {
            true => (0..layers).map(|_| sizes.attention(out, device)).collect(),
            false => Vec::new(),
        };
        let downsamplers = match downsample {
            true => vec![resnet(out, Resample::Down)],
            false => Vec::new(),
        };
        Self {
            resnets,
            attentions,
            downsamplers,
        }
    }

    /// Applies the level, pushing every resnet/attention output and the downsampler's output
    /// onto `skips`.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        emb_act: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, emb_act);
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x, context);
            }
            skips.push(x.clone());
        }
        for downsampler in &self.downsamplers {
            x = downsampler.forward(x, emb_act);
            skips.push(x.clone());
        }
        x
    }
}

/// The mid block: resnet, then (attention, resnet).
#[derive(Module, Debug)]
pub struct MidBlock {
    /// Two resnets.
    pub(crate) resnets: Vec<ResnetBlock2D>,
    /// One attention.
    pub(crate) attentions: Vec<Attention>,
}

impl MidBlock {
    /// A mid block of `channels` width.
    pub fn new(channels: usize, sizes: BlockSizes, device: &Device) -> Self {
        let resnet =
            || ResnetBlock2D::new(channels, channels, sizes.resnet, Resample::None, device);
        Self {
            resnets: vec![resnet(), resnet()],
            attentions: vec![sizes.attention(channels, device)],
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>, emb_act: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, emb_act);
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attention.forward(x, context), emb_act);
        }
        x
    }
}

/// One level of the up path.
#[derive(Module, Debug)]
pub struct UpBlock {
    /// `layers` resnets, each over (hidden ‖ popped skip).
    pub(crate) resnets: Vec<ResnetBlock2D>,
    /// One attention after each resnet, or none.
    pub(crate) attentions: Vec<Attention>,
    /// The upsampling resnet (`upsamplers.0`), absent at the last level.
    pub(crate) upsamplers: Vec<ResnetBlock2D>,
}

/// The channel counts of an up block, in diffusers' terms.
#[derive(Debug, Clone, Copy)]
pub struct UpChannels {
    /// Width coming from the block below (`prev_output_channel`).
    pub(crate) prev: usize,
    /// Width of this level (`output_channel`).
    pub(crate) out: usize,
    /// Width of the skip popped by the last resnet (`input_channel`, the level above's width).
    pub(crate) last_skip: usize,
}

impl UpBlock {
    /// An up level.
    pub fn new(
        channels: UpChannels,
        layers: usize,
        attention: bool,
        upsample: bool,
        sizes: BlockSizes,
        device: &Device,
    ) -> Self {
        let UpChannels {
            prev,
            out,
            last_skip,
        } = channels;
        let resnets = (0..layers)
            .map(|j| {
                let hidden = if j == 0 { prev } else { out };
                let skip = if j + 1 == layers { last_skip } else { out };
                ResnetBlock2D::new(hidden + skip, out, sizes.resnet, Resample::None, device)
            })
            .collect();
        let attentions = match attention {
            true => (0..layers).map(|_| sizes.attention(out, device)).collect(),
            false => Vec::new(),
        };
        let upsamplers = match upsample {
            true => vec![ResnetBlock2D::new(
                out,
                out,
                sizes.resnet,
                Resample::Up,
                device,
            )],
            false => Vec::new(),
        };
        Self {
            resnets,
            attentions,
            upsamplers,
        }
    }

    /// Applies the level, popping one skip per resnet from `skips`.
    ///
    /// # Panics
    /// If `skips` runs out (the UNet pushes exactly as many as its up blocks pop).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        emb_act: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .expect("the down path pushes one skip per up resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), emb_act);
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x, context);
            }
        }
        for upsampler in &self.upsamplers {
            x = upsampler.forward(x, emb_act);
        }
        x
    }
}
