//! CLIP image preprocessing (transformers `CLIPImageProcessor` with the Kandinsky prior repos'
//! `preprocessor_config.json`): resize the shortest side to 224 with Pillow's bicubic filter
//! (antialiased when shrinking, no reducing gap), center-crop 224×224, scale to [0, 1],
//! normalize per channel. The resize is Pillow's, byte for byte, on the host
//! ([`crate::resample`]).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_common::ConfigError;
use kandinsky_common::config::read_json;
use kandinsky_common::tensors::{default_float, f32_tensor};
use serde::Deserialize;

use crate::error::ClipError;
pub use crate::resample::Resample;
use crate::resample::{Pixels, resize_pixels};

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

/// Pillow's `Image.resize((width, height), filter, reducing_gap=reducing_gap)` of `image`:
/// (3, height, width) on `device`, values in [0, 255] (integers, byte for byte Pillow's; see
/// [`crate::resample`]). The same size gives the image back unchanged. The tensor is f32
/// whatever the device's default float dtype (bf16 cannot hold every level above 128).
pub fn resize(
    image: &RgbImage<'_>,
    width: usize,
    height: usize,
    filter: Resample,
    reducing_gap: Option<f64>,
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
    if !reducing_gap.is_none_or(|g| g >= 1.0) {
        return Err(ClipError::InvalidInput {
            input: "reducing_gap",
            expected: "at least 1".into(),
            found: vec![],
        });
    }
    let pixels = resize_pixels(&image.pixels(), width, height, filter, reducing_gap);
    Ok(to_tensor(&pixels, (0, 0, width, height), device))
}

impl RgbImage<'_> {
    fn pixels(&self) -> Pixels {
        Pixels {
            width: self.width,
            height: self.height,
            channels: 3,
            data: self.data.to_vec(),
        }
    }
}

/// The window `(left, top, width, height)` of an RGB image: (3, height, width) in [0, 255].
fn to_tensor(
    pixels: &Pixels,
    (left, top, width, height): (usize, usize, usize, usize),
    device: &Device,
) -> Tensor<3> {
    let row = pixels.width * 3;
    let values: Vec<f32> = (top..top + height)
        .flat_map(|y| &pixels.data[y * row + left * 3..y * row + (left + width) * 3])
        .map(|&b| f32::from(b))
        .collect();
    f32_tensor::<3>(TensorData::new(values, [height, width, 3]), device).permute([2, 0, 1])
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

impl ClipImageProcessor {
    /// Reads an `image_processor/preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        let (h, w) = config.crop_size;
        kandinsky_common::config::check_sizes(
            path,
            &[(
                "size.shortest_edge",
                config.size,
                kandinsky_common::config::limits::IMAGE_SIDE,
            )],
        )?;
        for (field, values) in [
            ("image_mean", config.image_mean),
            ("image_std", config.image_std),
        ] {
            let positive = field == "image_std";
            if let Some(v) = values
                .iter()
                .find(|v| !v.is_finite() || (positive && **v <= 0.0))
            {
                let expected = if positive {
                    "positive numbers"
                } else {
                    "finite numbers"
                };
                return Err(ConfigError::invalid(
                    path,
                    field,
                    format!("expected {expected}, found {v}"),
                ));
            }
        }
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
        let resized = resize_pixels(&image.pixels(), new_w, new_h, Resample::Bicubic, None);
        let x = to_tensor(&resized, (left, top, crop_w, crop_h), device);
        let mean = f32_tensor::<1>(TensorData::from(self.image_mean), device).reshape([3, 1, 1]);
        let std = f32_tensor::<1>(TensorData::from(self.image_std), device).reshape([3, 1, 1]);
        Ok(((x / 255.0 - mean) / std)
            .unsqueeze_dim(0)
            .cast(default_float(device)))
    }
}
