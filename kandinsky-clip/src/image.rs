//! CLIP image preprocessing (transformers `CLIPImageProcessor` with the Kandinsky prior repos'
//! `preprocessor_config.json`): resize the shortest side to 224 with PIL's bicubic filter
//! (antialiased when shrinking), center-crop 224×224, scale to [0, 1], normalize per channel.
//!
//! The resize is separable: for each axis a (output × input) weight matrix is built on the host
//! — PIL's bicubic kernel (a = −0.5) stretched by the shrink factor, normalized per output
//! pixel, only for the rows and columns the crop keeps — and applied on the device as two
//! matrix products, horizontal first, each rounded to 8 bits as PIL does between its passes.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_common::ConfigError;
use kandinsky_common::config::read_json;
use kandinsky_common::tensors::{default_float, f32_tensor};
use serde::Deserialize;

use crate::error::ClipError;

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height × width × 3` bytes.
    pub data: &'a [u8],
}

impl RgbImage<'_> {
    fn check(&self) -> Result<(), ClipError> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || self.data.len() != w * h * 3 {
            return Err(ClipError::InvalidInput {
                input: "image",
                expected: format!("{w}×{h}×3 = {} bytes, both sides positive", w * h * 3),
                found: vec![h, w, self.data.len()],
            });
        }
        Ok(())
    }
}

/// A resampling filter of PIL's `Image.resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// `BICUBIC` (a = −0.5, radius 2): images.
    Bicubic,
    /// `LANCZOS` (radius 3): the reference's inpainting masks.
    Lanczos,
}

/// PIL's resize (`Image.resize(size, filter)`, antialiased when shrinking) of `image` to
/// `width × height`: (3, height, width) on `device`, values in [0, 255] rounded to integers
/// as PIL's 8-bit passes are. The same size gives the image back unchanged. The tensor is f32
/// whatever the device's default float dtype: f16 and bf16 cannot hold PIL's fixed-point
/// weights, and bf16 not even every level above 128.
pub fn resize(
    image: &RgbImage<'_>,
    width: usize,
    height: usize,
    filter: Resample,
    device: &Device,
) -> Result<Tensor<3>, ClipError> {
    image.check()?;
    if width == 0 || height == 0 {
        return Err(ClipError::InvalidInput {
            input: "resize target",
            expected: "both sides positive".into(),
            found: vec![height, width],
        });
    }
    Ok(resize_window(
        image,
        filter,
        (width, height),
        (0, 0, width, height),
        device,
    ))
}

/// Resizes to `new = (w, h)` and keeps the window `(left, top, width, height)` of the result;
/// only the kept rows and columns are computed.
fn resize_window(
    image: &RgbImage<'_>,
    filter: Resample,
    (new_w, new_h): (usize, usize),
    (left, top, crop_w, crop_h): (usize, usize, usize, usize),
    device: &Device,
) -> Tensor<3> {
    let (w, h) = (image.width, image.height);
    let pixels: Vec<f32> = image.data.iter().map(|&b| b as f32).collect();
    let x = f32_tensor::<3>(TensorData::new(pixels, [h, w, 3]), device).permute([2, 0, 1]); // (3, H, W)
    if (new_w, new_h, crop_w, crop_h) == (w, h, w, h) {
        return x;
    }
    let wx = f32_tensor::<2>(
        TensorData::new(resize_weights(filter, w, new_w, left, crop_w), [crop_w, w]),
        device,
    );
    let wy = f32_tensor::<2>(
        TensorData::new(resize_weights(filter, h, new_h, top, crop_h), [crop_h, h]),
        device,
    );
    // PIL rounds each pass half up (adds ½ in fixed point, then shifts) and clips to 8 bits.
    let round = |t: Tensor<3>| (t + 0.5).floor().clamp(0.0, 255.0);
    let x = round(x.matmul(wx.transpose().unsqueeze_dim::<3>(0))); // (3, H, crop_w)
    round(wy.unsqueeze_dim::<3>(0).matmul(x)) // (3, crop_h, crop_w)
}

#[derive(Debug, Clone, Deserialize)]
struct ShortestEdge {
    shortest_edge: usize,
}

#[derive(Debug, Clone, Deserialize)]
struct CropSize {
    height: usize,
    width: usize,
}

/// The fields of `preprocessor_config.json` this processor follows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipImageProcessor {
    /// Target of the shortest side (224).
    #[serde(deserialize_with = "shortest_edge")]
    pub size: usize,
    /// Crop height and width (224 × 224).
    #[serde(deserialize_with = "crop_size")]
    pub crop_size: (usize, usize),
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub image_std: [f32; 3],
}

fn shortest_edge<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    Ok(ShortestEdge::deserialize(d)?.shortest_edge)
}

fn crop_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(usize, usize), D::Error> {
    let c = CropSize::deserialize(d)?;
    Ok((c.height, c.width))
}

impl Default for ClipImageProcessor {
    /// The configuration of both Kandinsky prior repos (OpenAI CLIP's statistics).
    fn default() -> Self {
        Self {
            size: 224,
            crop_size: (224, 224),
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
        }
    }
}

/// PIL's bicubic kernel, a = −0.5.
/// PIL's Lanczos kernel: sinc(x)·sinc(x/3) on [−3, 3).
fn lanczos(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI)
        }
    };
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Row `i` holds the weights of output pixel `first + i` over the `input` pixels, for a resize
/// from `input` to `output` pixels (PIL's `precompute_coeffs`).
/// 2^22: the fixed-point unit of PIL's 8-bit resampling (`PRECISION_BITS`).
const FIXED_ONE: f64 = (1u32 << 22) as f64;

fn resize_weights(
    filter: Resample,
    input: usize,
    output: usize,
    first: usize,
    count: usize,
) -> Vec<f32> {
    let (kernel, radius): (fn(f64) -> f64, f64) = match filter {
        Resample::Bicubic => (bicubic, 2.0),
        Resample::Lanczos => (lanczos, 3.0),
    };
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = radius * filter_scale;
    let mut weights = vec![0.0f32; count * input];
    for i in 0..count {
        let center = (first + i) as f64 + 0.5;
        let center = center * scale;
        let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
        let hi = ((center + support + 0.5).floor() as usize).min(input);
        let row: Vec<f64> = (lo..hi)
            .map(|j| kernel((j as f64 - center + 0.5) / filter_scale))
            .collect();
        let total: f64 = row.iter().sum();
        for (j, w) in (lo..hi).zip(row) {
            // PIL's 8-bit passes use the normalized weights in fixed point with 22 fraction
            // bits (rounded half away from zero), exactly representable in f32.
            let w = if total != 0.0 { w / total } else { 0.0 };
            weights[i * input + j] = ((w * FIXED_ONE).round() / FIXED_ONE) as f32;
        }
    }
    weights
}

impl ClipImageProcessor {
    /// Reads an `image_processor/preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        let (h, w) = config.crop_size;
        if config.size == 0 || h == 0 || w == 0 || h > config.size || w > config.size {
            return Err(ConfigError::invalid(
                path,
                "crop_size",
                format!(
                    "expected a crop within the resized image (shortest side {}), found {h}×{w}",
                    config.size
                ),
            ));
        }
        Ok(config)
    }

    /// The processed images (B, 3, crop height, crop width), ready for
    /// [`ClipVisionModel::forward`](crate::ClipVisionModel::forward).
    pub fn preprocess(
        &self,
        images: &[RgbImage<'_>],
        device: &Device,
    ) -> Result<Tensor<4>, ClipError> {
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            out.push(self.preprocess_one(image, device)?);
        }
        if out.is_empty() {
            return Err(ClipError::InvalidInput {
                input: "images",
                expected: "at least one image".into(),
                found: vec![0],
            });
        }
        Ok(Tensor::cat(out, 0))
    }

    fn preprocess_one(
        &self,
        image: &RgbImage<'_>,
        device: &Device,
    ) -> Result<Tensor<4>, ClipError> {
        let (w, h) = (image.width, image.height);
        image.check()?;
        // Shortest side to `size`, the other truncated (transformers' rule).
        let (new_h, new_w) = if w <= h {
            (self.size * h / w, self.size)
        } else {
            (self.size, self.size * w / h)
        };
        let (crop_h, crop_w) = self.crop_size;
        let (top, left) = ((new_h - crop_h) / 2, (new_w - crop_w) / 2);
        let x = resize_window(
            image,
            Resample::Bicubic,
            (new_w, new_h),
            (left, top, crop_w, crop_h),
            device,
        );
        let mean = f32_tensor::<1>(TensorData::from(self.image_mean), device).reshape([3, 1, 1]);
        let std = f32_tensor::<1>(TensorData::from(self.image_std), device).reshape([3, 1, 1]);
        Ok(((x / 255.0 - mean) / std)
            .unsqueeze_dim(0)
            .cast(default_float(device)))
    }
}
