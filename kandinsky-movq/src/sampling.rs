//! Down- and upsampling between levels.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use kandinsky_common::conv::{conv3x3, new_conv3x3};

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

    /// Doubles H and W.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let x = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h * 2, w * 2]),
        );
        conv3x3(&self.conv, x)
    }
}
