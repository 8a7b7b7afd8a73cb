//! Down- and upsampling between levels.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use kandinsky_common::conv::{new_conv3x3, upsample2x_conv3x3};

/// diffusers `Downsample2D(use_conv=True, padding=0)`: zero-pad right and bottom by one, then a
/// 3×3 stride-2 convolution.
#[derive(Module, Debug)]
pub struct Downsample2D {
    /// The strided convolution.
    pub(crate) conv: Conv2d,
}

impl Downsample2D {
    /// A downsampler keeping `channels`.
    pub fn new(channels: usize, device: &Device) -> Self {
        let conv = Conv2dConfig::new([channels, channels], [3, 3])
            .with_stride([2, 2])
            // (top, left, bottom, right): the asymmetric pad of the reference.
            .with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1))
            .init(device);
        Self { conv }
    }

    /// Halves H and W (rounding up).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// diffusers `Upsample2D(use_conv=True)`: nearest ×2, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    /// The convolution after the resize.
    pub(crate) conv: Conv2d,
}

impl Upsample2D {
    /// An upsampler keeping `channels`.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: new_conv3x3(channels, channels, device),
        }
    }

    /// Doubles H and W (on the CPU as four 2×2 convolutions of `x`, without the upsampled
    /// map: `kandinsky_common::conv::upsample2x_conv3x3`).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        upsample2x_conv3x3(&self.conv, x)
    }
}
