//! Images in and out: [`Image`] (8-bit RGB) read from PNG, JPEG or WebP files as users have them
//! (EXIF orientation applied, alpha dropped, 16-bit reduced to 8), written as PNG, and turned into
//! the decoder's input tensors.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_clip::{Resample, RgbImage, resize};
use kandinsky_common::tensors::{default_float, f32_tensor};

use crate::error::PipelineError;

/// An 8-bit RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}

impl Image {
    /// Reads a PNG, JPEG or WebP file, as the reference's `load_image` does: the EXIF
    /// orientation is applied, an alpha channel is dropped (PIL's `convert("RGB")`, no
    /// compositing), grey is expanded to RGB and 16-bit samples are reduced to 8 bits.
    pub fn open(path: &Path) -> Result<Self, PipelineError> {
        use image::ImageDecoder;
        let fail = |message: String| PipelineError::Image {
            path: path.to_path_buf(),
            message,
        };
        let reader = image::ImageReader::open(path)
            .map_err(|e| fail(e.to_string()))?
            .with_guessed_format()
            .map_err(|e| fail(e.to_string()))?;
        let mut decoder = reader.into_decoder().map_err(|e| fail(e.to_string()))?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut decoded =
            image::DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?;
        decoded.apply_orientation(orientation);
        let rgb = decoded.to_rgb8();
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        if width == 0 || height == 0 {
            return Err(fail("the image is empty".into()));
        }
        Ok(Self {
            width,
            height,
            rgb: rgb.into_raw(),
        })
    }

    /// An image from row-major RGB bytes, checked.
    pub fn from_rgb(width: usize, height: usize, rgb: Vec<u8>) -> Result<Self, PipelineError> {
        if width == 0 || height == 0 || rgb.len() != width * height * 3 {
            return Err(PipelineError::Mismatch(format!(
                "an RGB image of {width}×{height} needs {} bytes, found {}",
                width * height * 3,
                rgb.len()
            )));
        }
        Ok(Self { width, height, rgb })
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &Path) -> Result<(), PipelineError> {
        let io = |e: std::io::Error| PipelineError::Output {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let fail = |e: png::EncodingError| PipelineError::Output {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&self.rgb).map_err(fail)?;
        writer.finish().map_err(fail)
    }

    /// Resized to `width × height` with PIL's bicubic filter (no resize at the same size) and
    /// scaled to [−1, 1]: (1, 3, height, width), the MoVQ encoder's input (diffusers'
    /// `VaeImageProcessor.preprocess` for a PIL image).
    ///
    /// Differences from the reference: the size is `width × height` as asked (the reference
    /// pipelines pass height and width swapped, so they resize non-square requests transposed),
    /// and shrinking by 2× or more filters the whole image in one pass where PIL's
    /// `reducing_gap=1` first box-averages by the integer factor (a difference of a few levels
    /// on fine detail).
    pub fn to_tensor(
        &self,
        width: usize,
        height: usize,
        device: &Device,
    ) -> Result<Tensor<4>, PipelineError> {
        let pixels = self.resized(width, height, Resample::Bicubic, device)?;
        Ok((pixels / 127.5 - 1.0)
            .unsqueeze_dim(0)
            .cast(default_float(device)))
    }

    /// Resized to `width × height` with PIL's `filter`, values in [0, 255]: (3, height, width).
    pub(crate) fn resized(
        &self,
        width: usize,
        height: usize,
        filter: Resample,
        device: &Device,
    ) -> Result<Tensor<3>, PipelineError> {
        let view = RgbImage {
            width: self.width,
            height: self.height,
            data: &self.rgb,
        };
        Ok(resize(&view, width, height, filter, device)?)
    }

    /// An inpainting mask at `width × height`: (1, 1, height, width), 1 where the image is kept
    /// and 0 where it is repainted, from a user mask that is white (or any luma ≥ 0.5) where
    /// to repaint — the reference's convention since diffusers 0.19. As the reference: resized
    /// with PIL's Lanczos filter, converted to luma (ITU-R 601, PIL's integer formula),
    /// binarized at 0.5, inverted.
    pub fn to_keep_mask(
        &self,
        width: usize,
        height: usize,
        device: &Device,
    ) -> Result<Tensor<4>, PipelineError> {
        let rgb = self.resized(width, height, Resample::Lanczos, device)?;
        let weights = f32_tensor::<1>(TensorData::from([19595.0f32, 38470.0, 7471.0]), device)
            .reshape([3, 1, 1]);
        // PIL: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
        let luma = ((rgb * weights).sum_dim(0) + 32768.0) / 65536.0;
        let luma = luma.floor();
        let repaint = luma.greater_equal_elem(127.5).float();
        Ok((repaint.neg() + 1.0)
            .unsqueeze_dim(0)
            .cast(default_float(device)))
    }
}
