//! Images in and out: [`Image`] (8-bit RGB) read from PNG, JPEG or WebP files as users have them
//! (EXIF orientation applied, alpha dropped, 16-bit reduced to 8), written as PNG, and turned into
//! the decoder's input tensors.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_clip::{Resample, RgbImage, resize};
use kandinsky_common::tensors::{default_float, f32_tensor};

use crate::error::PipelineError;

/// The largest side of an input image accepted by [`Image::open`], in pixels.
pub const MAX_INPUT_SIDE: u32 = 16_384;
/// The most memory [`Image::open`] lets a decoder allocate (bytes).
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

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

/// What [`Image::save_png_with_text`] does where a file already is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    /// Replace it with the whole new image.
    Replace,
    /// Keep it and fail with an `AlreadyExists` error.
    Fail,
}

/// The folder of `path` and the prefix of its temporary files, `.NAME.tmp-`.
fn temporary_prefix(path: &Path) -> (std::path::PathBuf, String) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("image".into(), |n| n.to_string_lossy());
    (dir.to_path_buf(), format!(".{name}.tmp-"))
}

/// A new temporary file name for a file process `pid` writes before moving it to `path`:
/// `.NAME.tmp-PID-N` in the same folder, N counted per process so that two writers of one
/// name in one process never share a temporary file.
pub fn temporary_path(path: &Path, pid: u32) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (dir, prefix) = temporary_prefix(path);
    dir.join(format!("{prefix}{pid}-{n}"))
}

/// The process a temporary file name of `path`'s belongs to (`.NAME.tmp-PID-N`), if it is one.
fn temporary_owner(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the temporary files process `pid` has for `path` (what a process interrupted while
/// writing calls on itself before exiting).
pub fn remove_temporaries(path: &Path, pid: u32) {
    let (dir, prefix) = temporary_prefix(path);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if temporary_owner(&prefix, &name) == Some(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes the temporary files for `path` that processes no longer running left behind (killed
/// while writing). Linux only (it asks /proc whether a process runs); elsewhere nothing.
fn remove_stale_temporaries(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        let (dir, prefix) = temporary_prefix(path);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = temporary_owner(&prefix, &name) else {
                continue;
            };
            let alive = Path::new("/proc").join(pid.to_string()).exists();
            if !alive && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// Checks that `path` can be an output file: absent, or a regular file (never a device, a
/// FIFO or a folder, which writing "over" would replace or block on).
pub fn check_output(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a device, FIFO or folder); images are written to regular files only",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Image {
    /// Reads a PNG, JPEG or WebP file, as the reference's `load_image` does: the EXIF
    /// orientation is applied, an alpha channel is dropped (Pillow's `convert("RGB")`, no
    /// compositing), grey is expanded to RGB, and 16-bit RGB samples keep their high byte (as
    /// Pillow reads them). 16-bit grey is scaled to 8 bits, where Pillow's `convert("RGB")`
    /// would clip every value above 255 to white.
    pub fn open(path: &Path) -> Result<Self, PipelineError> {
        let fail = |source: image::ImageError| PipelineError::Image {
            path: path.to_path_buf(),
            source,
        };
        // Only a regular file (a FIFO would block, a device never end).
        let file = kandinsky_common::files::open_regular(path).map_err(|e| fail(e.into()))?;
        let mut reader = image::ImageReader::new(std::io::BufReader::new(file))
            .with_guessed_format()
            .map_err(|e| fail(e.into()))?;
        if reader.format().is_none()
            && let Ok(format) = image::ImageFormat::from_path(path)
        {
            reader.set_format(format);
        }
        Self::decode_with(reader, MAX_INPUT_SIDE).map_err(fail)
    }

    /// Decodes a PNG, JPEG or WebP file held in memory (an upload), exactly as
    /// [`open`](Self::open) reads one from disk, with the same limits; `name` names it in
    /// errors.
    pub fn decode(bytes: &[u8], name: &str) -> Result<Self, PipelineError> {
        Self::decode_within(bytes, name, MAX_INPUT_SIDE)
    }

    /// [`decode`](Self::decode) with a smaller limit on each side, in pixels (a server's
    /// limit; at most [`MAX_INPUT_SIDE`]), checked on the declared size before decoding.
    pub fn decode_within(bytes: &[u8], name: &str, max_side: u32) -> Result<Self, PipelineError> {
        let decoded = Self::decode_bytes(bytes, name, max_side)?;
        Ok(Self::from_decoded(decoded))
    }

    /// Decodes an image held in memory with [`decode_dynamic`](Self::decode_dynamic)'s
    /// limits, at most `max_side` (and [`MAX_INPUT_SIDE`]) a side; `name` names it in errors.
    fn decode_bytes(
        bytes: &[u8],
        name: &str,
        max_side: u32,
    ) -> Result<image::DynamicImage, PipelineError> {
        let fail = |source: image::ImageError| PipelineError::Image {
            path: PathBuf::from(name),
            source,
        };
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| fail(e.into()))?;
        Self::decode_dynamic(reader, max_side.min(MAX_INPUT_SIDE)).map_err(fail)
    }

    /// The inpainting mask an image's transparency says (the OpenAI Images API's convention:
    /// fully transparent pixels are the ones to repaint): white where alpha is 0, black
    /// elsewhere; `None` when the image has no alpha channel. Decoded as
    /// [`decode_within`](Self::decode_within) decodes.
    pub fn decode_transparency_mask(
        bytes: &[u8],
        name: &str,
        max_side: u32,
    ) -> Result<Option<Self>, PipelineError> {
        let decoded = Self::decode_bytes(bytes, name, max_side)?;
        if !decoded.color().has_alpha() {
            return Ok(None);
        }
        let rgba = decoded.to_rgba8();
        let (width, height) = (rgba.width() as usize, rgba.height() as usize);
        let rgb = rgba
            .pixels()
            .flat_map(|p| [if p.0[3] == 0 { 255 } else { 0 }; 3])
            .collect();
        Ok(Some(Self { width, height, rgb }))
    }

    /// Decodes with limits (see [`decode_dynamic`](Self::decode_dynamic)) to 8-bit RGB.
    fn decode_with<R: std::io::BufRead + std::io::Seek>(
        reader: image::ImageReader<R>,
        max_side: u32,
    ) -> Result<Self, image::ImageError> {
        Ok(Self::from_decoded(Self::decode_dynamic(reader, max_side)?))
    }

    /// A decoded image as 8-bit RGB, as Pillow's `convert("RGB")` makes it.
    fn from_decoded(decoded: image::DynamicImage) -> Self {
        let rgb = match decoded {
            // Pillow reads 16-bit RGB(A) PNGs as 8-bit RGB by their high bytes (load_image's
            // convert("RGB")); the image crate would round instead.
            image::DynamicImage::ImageRgb16(_) | image::DynamicImage::ImageRgba16(_) => {
                let wide = decoded.to_rgb16();
                let (w, h) = wide.dimensions();
                let high = wide
                    .into_raw()
                    .into_iter()
                    .map(|v| (v >> 8) as u8)
                    .collect();
                image::RgbImage::from_raw(w, h, high).expect("the same size")
            }
            other => other.to_rgb8(),
        };
        Self {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            rgb: rgb.into_raw(),
        }
    }

    /// Decodes with limits: the declared size is checked before a byte is decoded; an empty
    /// image is refused.
    fn decode_dynamic<R: std::io::BufRead + std::io::Seek>(
        mut reader: image::ImageReader<R>,
        max_side: u32,
    ) -> Result<image::DynamicImage, image::ImageError> {
        use image::ImageDecoder;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(max_side);
        limits.max_image_height = Some(max_side);
        limits.max_alloc = Some(MAX_INPUT_BYTES);
        reader.limits(limits.clone());
        let mut decoder = reader.into_decoder()?;
        // The declared size, checked before a byte is decoded (a small file may declare a
        // huge image), whatever the format's decoder does with the limits.
        let (w, h) = decoder.dimensions();
        let too_large = |kind| image::ImageError::Limits(image::error::LimitError::from_kind(kind));
        if w > max_side || h > max_side {
            return Err(too_large(image::error::LimitErrorKind::DimensionError));
        }
        if decoder.total_bytes() > MAX_INPUT_BYTES {
            return Err(too_large(image::error::LimitErrorKind::InsufficientMemory));
        }
        decoder.set_limits(limits)?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut decoded = image::DynamicImage::from_decoder(decoder)?;
        decoded.apply_orientation(orientation);
        if decoded.width() == 0 || decoded.height() == 0 {
            return Err(too_large(image::error::LimitErrorKind::DimensionError));
        }
        Ok(decoded)
    }

    /// An image from row-major RGB bytes, checked.
    pub fn from_rgb(width: usize, height: usize, rgb: Vec<u8>) -> Result<Self, PipelineError> {
        if width == 0 || height == 0 {
            return Err(PipelineError::invalid(
                "image size",
                format!("{width}×{height}"),
                "both sides positive",
            ));
        }
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(3))
            .ok_or_else(|| {
                PipelineError::invalid(
                    "image size",
                    format!("{width}×{height}"),
                    "a size that fits in memory",
                )
            })?;
        if rgb.len() != expected {
            return Err(PipelineError::Count {
                what: "RGB bytes",
                found: rgb.len(),
                expected,
            });
        }
        Ok(Self { width, height, rgb })
    }

    /// Writes the image as a PNG file (see [`save_png_with_text`](Self::save_png_with_text)).
    pub fn save_png(&self, path: &Path) -> Result<(), PipelineError> {
        self.save_png_with_text(path, &[], IfExists::Replace)
    }

    /// Writes the image as a PNG file with `text` as its text chunks (tEXt, or iTXt for text
    /// beyond Latin-1: prompts in Cyrillic, CJK, emoji), e.g. the generation's parameters. The
    /// file is written under a temporary name in the same folder and moved into place, so
    /// `path` never holds a partial image. An existing `path` is replaced by the whole image
    /// ([`IfExists::Replace`]) or left alone with an `AlreadyExists` error
    /// ([`IfExists::Fail`]; atomic: of two writers, one fails). Only regular files are
    /// written: a device, FIFO or folder at `path` is an error, never replaced.
    pub fn save_png_with_text(
        &self,
        path: &Path,
        text: &[(&str, String)],
        if_exists: IfExists,
    ) -> Result<(), PipelineError> {
        let fail = |source: std::io::Error| PipelineError::Output {
            path: path.to_path_buf(),
            source,
        };
        check_output(path).map_err(fail)?;
        remove_stale_temporaries(path);
        let tmp = temporary_path(path, std::process::id());
        let result = self.write_png(&tmp, text).and_then(|()| match if_exists {
            IfExists::Replace => std::fs::rename(&tmp, path),
            // A hard link is created only where nothing is: atomic no-clobber placement.
            IfExists::Fail => match std::fs::hard_link(&tmp, path) {
                Ok(()) => std::fs::remove_file(&tmp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
                // A file system without hard links: check, then move (not atomic).
                Err(_) if path.exists() => Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the file exists",
                )),
                Err(_) => std::fs::rename(&tmp, path),
            },
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(fail)
    }

    fn write_png(&self, path: &Path, text: &[(&str, String)]) -> std::io::Result<()> {
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(path)?;
        self.encode_png(std::io::BufWriter::new(file), text)
    }

    /// The image as PNG bytes with `text` as its text chunks, as
    /// [`save_png_with_text`](Self::save_png_with_text) writes it (for a server's responses).
    pub fn to_png(&self, text: &[(&str, String)]) -> Result<Vec<u8>, PipelineError> {
        let mut bytes = Vec::new();
        self.encode_png(&mut bytes, text)
            .map_err(|source| PipelineError::Output {
                path: PathBuf::from("(PNG in memory)"),
                source,
            })?;
        Ok(bytes)
    }

    fn encode_png<W: std::io::Write>(
        &self,
        out: W,
        text: &[(&str, String)],
    ) -> std::io::Result<()> {
        let (width, height) = (self.width as u32, self.height as u32);
        let mut encoder = png::Encoder::new(out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (key, value) in text {
            let (key, value) = ((*key).to_string(), value.clone());
            if value.chars().all(|c| (c as u32) < 256) {
                encoder.add_text_chunk(key, value)?;
            } else {
                encoder.add_itxt_chunk(key, value)?;
            }
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.rgb)?;
        writer.finish()?;
        Ok(())
    }

    /// Resized to `width × height` as the reference pipelines resize their input images —
    /// Pillow's `resize((width, height), BICUBIC, reducing_gap=1)`, byte for byte (a shrink by
    /// 2× or more first box-averages by the integer factor; no resize at the same size) — and
    /// scaled to [−1, 1]: (1, 3, height, width), the MoVQ encoder's input (diffusers'
    /// `VaeImageProcessor.preprocess` for a PIL image).
    ///
    /// One difference from the reference: the size is `width × height` as asked (the reference
    /// pipelines pass height and width swapped, so they resize non-square requests transposed).
    pub fn to_tensor(
        &self,
        width: usize,
        height: usize,
        device: &Device,
    ) -> Result<Tensor<4>, PipelineError> {
        let pixels = self.resized(width, height, Resample::Bicubic, Some(1.0), device)?;
        Ok((pixels / 127.5 - 1.0)
            .unsqueeze_dim(0)
            .cast(default_float(device)))
    }

    /// Resized to `width × height` with Pillow's `filter` and `reducing_gap`, values in
    /// [0, 255]: (3, height, width).
    pub(crate) fn resized(
        &self,
        width: usize,
        height: usize,
        filter: Resample,
        reducing_gap: Option<f64>,
        device: &Device,
    ) -> Result<Tensor<3>, PipelineError> {
        let view = RgbImage {
            width: self.width,
            height: self.height,
            data: &self.rgb,
        };
        Ok(resize(&view, width, height, filter, reducing_gap, device)?)
    }

    /// An inpainting mask at `width × height`: (1, 1, height, width), 1 where the image is kept
    /// and 0 where it is repainted, from a user mask that is white (or any luma ≥ 0.5) where
    /// to repaint — the reference's convention since diffusers 0.19. As the reference: resized
    /// with Pillow's Lanczos filter (no reducing gap), converted to luma (ITU-R 601, Pillow's
    /// integer formula), binarized at 0.5, inverted.
    pub fn to_keep_mask(
        &self,
        width: usize,
        height: usize,
        device: &Device,
    ) -> Result<Tensor<4>, PipelineError> {
        let rgb = self.resized(width, height, Resample::Lanczos, None, device)?;
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

impl Image {
    /// The outpainting canvas: this image with `[left, top, right, bottom]` pixels added
    /// (mid grey), grown on the right and bottom to multiples of 64, and its mask (white = the
    /// new area, to be painted). Both sides of the canvas are at most `max_side`.
    pub fn extend(
        &self,
        [l, t, r, b]: [usize; 4],
        max_side: usize,
    ) -> Result<(Image, Image), PipelineError> {
        let extend = format!("{l},{t},{r},{b}");
        if l == 0 && t == 0 && r == 0 && b == 0 {
            return Err(PipelineError::invalid(
                "extend",
                extend,
                "at least one positive side",
            ));
        }
        // Bounded before rounding up to a multiple of 64, which could overflow near usize::MAX.
        let side = |base: usize, a: usize, b: usize| {
            base.checked_add(a)
                .and_then(|s| s.checked_add(b))
                .filter(|&s| s <= max_side)
                .map(|s| s.div_ceil(64) * 64)
                .filter(|&s| s <= max_side)
        };
        let (Some(width), Some(height)) = (side(self.width, l, r), side(self.height, t, b)) else {
            return Err(PipelineError::invalid(
                "extend",
                extend,
                format!("a canvas of at most {max_side} pixels a side"),
            ));
        };
        let mut rgb = vec![127u8; width * height * 3];
        let mut mask = vec![255u8; width * height * 3];
        let row = self.width * 3;
        for y in 0..self.height {
            let at = ((t + y) * width + l) * 3;
            rgb[at..at + row].copy_from_slice(&self.rgb[y * row..(y + 1) * row]);
            mask[at..at + row].fill(0);
        }
        Ok((
            Image::from_rgb(width, height, rgb)?,
            Image::from_rgb(width, height, mask)?,
        ))
    }
}

/// Images in about [−1, 1] (B, 3, H, W) → values in [0, 1] on the host, height × width × RGB
/// row-major per image: x·0.5 + 0.5, clamped (diffusers' `output_type="np"`).
pub fn to_unit_f32(images: Tensor<4>) -> Result<Vec<Vec<f32>>, PipelineError> {
    let [b, c, h, w] = images.dims();
    if c != 3 {
        return Err(PipelineError::shape("images", &[b, c, h, w], &[b, 3, h, w]));
    }
    let values = (images * 0.5 + 0.5)
        .clamp(0.0, 1.0)
        .permute([0, 2, 3, 1])
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PipelineError::Device(format!("{e:?}")))?;
    Ok(values.chunks(h * w * 3).map(<[f32]>::to_vec).collect())
}

/// Images in about [−1, 1] (B, 3, H, W) → 8-bit RGB, row-major, one buffer per image:
/// x·0.5 + 0.5, clamped to [0, 1], times 255, rounded (diffusers' "pil" output).
pub fn to_rgb8(images: Tensor<4>) -> Result<Vec<Vec<u8>>, PipelineError> {
    let [b, c, h, w] = images.dims();
    if c != 3 {
        return Err(PipelineError::shape("images", &[b, c, h, w], &[b, 3, h, w]));
    }
    let pixels = ((images * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0)
        .round()
        .permute([0, 2, 3, 1])
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PipelineError::Device(format!("{e:?}")))?;
    Ok(pixels
        .chunks(h * w * 3)
        .take(b)
        .map(|img| img.iter().map(|&v| v as u8).collect())
        .collect())
}

/// Images in about [−1, 1] (B, 3, H, W) → one [`Image`] each (see [`to_rgb8`]).
pub fn to_images(images: Tensor<4>) -> Result<Vec<Image>, PipelineError> {
    let [_, _, height, width] = images.dims();
    Ok(to_rgb8(images)?
        .into_iter()
        .map(|rgb| Image { width, height, rgb })
        .collect())
}
