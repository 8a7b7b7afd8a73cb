//! The level blocks of the encoder and decoder, and the mid block both share.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::attention::Attention;
use crate::resnet::ResnetBlock;
use crate::sampling::{Downsample2D, Upsample2D};

/// diffusers `DownEncoderBlock2D` / `AttnDownEncoderBlock2D`: resnets, each optionally followed
/// by an attention, then an optional downsampler.
#[derive(Module, Debug)]
pub struct DownEncoderBlock2D {
    /// The resnets (`layers_per_block`).
    pub(crate) resnets: Vec<ResnetBlock>,
    /// One attention per resnet, or none.
    pub(crate) attentions: Vec<Attention>,
    /// Zero or one downsampler.
    pub(crate) downsamplers: Vec<Downsample2D>,
}

/// diffusers `UpDecoderBlock2D` / `AttnUpDecoderBlock2D`: spatial-norm resnets, each optionally
/// followed by an attention, then an optional upsampler.
#[derive(Module, Debug)]
pub struct UpDecoderBlock2D {
    /// The resnets (`layers_per_block + 1`).
    pub(crate) resnets: Vec<ResnetBlock>,
    /// One attention per resnet, or none.
    pub(crate) attentions: Vec<Attention>,
    /// Zero or one upsampler.
    pub(crate) upsamplers: Vec<Upsample2D>,
}

/// Resnets interleaved with attentions: resnet, (attention, resnet)*.
fn resnets_and_attentions(
    resnets: &[ResnetBlock],
    attentions: &[Attention],
    mut x: Tensor<4>,
    zq: Option<&Tensor<4>>,
) -> Tensor<4> {
    for (i, resnet) in resnets.iter().enumerate() {
        x = resnet.forward(x, zq);
        if let Some(attention) = attentions.get(i) {
            x = attention.forward(x, zq);
        }
    }
    x
}

impl DownEncoderBlock2D {
    /// A block of `layers` GroupNorm resnets from `inp` to `out` channels.
    pub fn new(
        inp: usize,
        out: usize,
        layers: usize,
        groups: usize,
        attention: bool,
        downsample: bool,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| ResnetBlock::group(if i == 0 { inp } else { out }, out, groups, device))
                .collect(),
            attentions: if attention {
                (0..layers)
                    .map(|_| Attention::group(out, groups, device))
                    .collect()
            } else {
                Vec::new()
            },
            downsamplers: if downsample {
                vec![Downsample2D::new(out, device)]
            } else {
                Vec::new()
            },
        }
    }

    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = resnets_and_attentions(&self.resnets, &self.attentions, x, None);
        self.downsamplers.iter().fold(x, |x, d| d.forward(x))
    }
}

impl UpDecoderBlock2D {
    /// A block of `layers` spatial-norm resnets from `inp` to `out` channels.
    pub fn new(
        inp: usize,
        out: usize,
        layers: usize,
        zq_channels: usize,
        attention: bool,
        upsample: bool,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| {
                    ResnetBlock::spatial(if i == 0 { inp } else { out }, out, zq_channels, device)
                })
                .collect(),
            attentions: if attention {
                (0..layers)
                    .map(|_| Attention::spatial(out, zq_channels, device))
                    .collect()
            } else {
                Vec::new()
            },
            upsamplers: if upsample {
                vec![Upsample2D::new(out, device)]
            } else {
                Vec::new()
            },
        }
    }

    /// Applies the block, conditioning every norm on `zq`.
    pub fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let x = resnets_and_attentions(&self.resnets, &self.attentions, x, Some(zq));
        self.upsamplers.iter().fold(x, |x, u| u.forward(x))
    }
}

/// diffusers `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct MidBlock2D {
    /// Two resnets.
    pub(crate) resnets: Vec<ResnetBlock>,
    /// One attention (none when `mid_block_add_attention` is false).
    pub(crate) attentions: Vec<Attention>,
}

impl MidBlock2D {
    /// The encoder's mid block (GroupNorm).
    pub fn group(channels: usize, groups: usize, attention: bool, device: &Device) -> Self {
        Self {
            resnets: (0..2)
                .map(|_| ResnetBlock::group(channels, channels, groups, device))
                .collect(),
            attentions: if attention {
                vec![Attention::group(channels, groups, device)]
            } else {
                Vec::new()
            },
        }
    }

    /// The decoder's mid block (SpatialNorm).
    pub fn spatial(channels: usize, zq_channels: usize, attention: bool, device: &Device) -> Self {
        Self {
            resnets: (0..2)
                .map(|_| ResnetBlock::spatial(channels, channels, zq_channels, device))
                .collect(),
            attentions: if attention {
                vec![Attention::spatial(channels, zq_channels, device)]
            } else {
                Vec::new()
            },
        }
    }

    /// Applies the block; `zq` conditions spatial norms.
    ///
    /// # Panics
    /// If the block has spatial norms and `zq` is `None`.
    pub fn forward(&self, x: Tensor<4>, zq: Option<&Tensor<4>>) -> Tensor<4> {
        let x = self.resnets[0].forward(x, zq);
        let x = self.attentions.iter().fold(x, |x, a| a.forward(x, zq));
        self.resnets[1].forward(x, zq)
    }
}
