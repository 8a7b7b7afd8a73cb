//! What a generation returns.

use burn::tensor::Tensor;

use crate::error::PipelineError;
use crate::image::{Image, to_images, to_unit_f32};

/// The generated images, as the decoder made them: (B, 3, H, W) in about [−1, 1] on the
/// device, with conversions to 8-bit images and to floats in [0, 1].
#[derive(Debug, Clone)]
pub struct Output {
    pixels: Tensor<4>,
}

impl Output {
    pub(crate) fn new(pixels: Tensor<4>) -> Self {
        Self { pixels }
    }

    /// The images as 8-bit RGB (diffusers' `output_type="pil"`).
    pub fn images(&self) -> Result<Vec<Image>, PipelineError> {
        to_images(self.pixels.clone())
    }

    /// The images as floats in [0, 1], height × width × RGB row-major each (diffusers'
    /// `output_type="np"`).
    pub fn to_unit_f32(&self) -> Result<Vec<Vec<f32>>, PipelineError> {
        to_unit_f32(self.pixels.clone())
    }

    /// The decoder's output (B, 3, H, W) in about [−1, 1] (diffusers' `output_type="pt"`
    /// before post-processing).
    pub fn pixels(&self) -> &Tensor<4> {
        &self.pixels
    }

    /// The decoder's output, taken.
    pub fn into_pixels(self) -> Tensor<4> {
        self.pixels
    }
}
