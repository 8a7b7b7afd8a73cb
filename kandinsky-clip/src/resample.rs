//! Pillow's 8-bit resampling, reproduced exactly on the host: `Image.resize(size, filter,
//! reducing_gap=…)` (Pillow 13's `Image.py`, `libImaging/Resample.c`, `libImaging/Reduce.c`).
//!
//! - **Resample** (`ImagingResample`): separable, horizontal pass first (only the rows the
//!   vertical pass reads), then vertical; each pass clipped to 8 bits. Per output pixel the
//!   filter, stretched by the shrink factor, is sampled in f64 over the input pixels its support
//!   covers (bounds rounded as Pillow's `(int)` casts do), normalized, and turned into fixed point
//!   with 22 fraction bits (rounded half away from zero); sums are integers started at ½, shifted
//!   back and clipped.
//! - **Reduce** (`Image.reduce`): the mean of each `fx × fy` cell (cells cut by the box edge
//!   average what they hold) as `((sum + n/2) · m) >> 24` in 32-bit arithmetic, with
//!   m = ⌊2³² / (256 n)⌋ computed in f32, as Pillow's `division_UINT32`.
//! - **`reducing_gap`**: with a gap g, a resize that shrinks by at least 2g first reduces by
//!   ⌊scale / g⌋ over the box Pillow's `_get_safe_box` widens by the filter's support, then
//!   resamples the reduced image over the matching fractional box.

/// A resampling filter of Pillow's `Image.resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resample {
    /// `BOX` (support ½): the mean of the covered pixels.
    Box,
    /// `BICUBIC` (a = −0.5, support 2): images.
    Bicubic,
    /// `LANCZOS` (support 3): the reference's inpainting masks.
    Lanczos,
}

impl Resample {
    /// The filter's support (radius) in input pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Resample::Box => 0.5,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Resample::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bicubic => {
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
            Resample::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// Fraction bits of Pillow's 8-bit fixed-point weights (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// An 8-bit image with `channels` interleaved samples per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Samples per pixel (1 for grey, 3 for RGB).
    pub channels: usize,
    /// `height × width × channels` samples.
    pub data: Vec<u8>,
}

/// The taps of one output pixel: the first input pixel and the fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs`: the taps of each of `out_size` output pixels over the input
/// span [`in0`, `in1`) of an axis of `in_size` pixels.
fn taps(filter: Resample, in_size: usize, (in0, in1): (f32, f32), out_size: usize) -> Vec<Taps> {
    // The box is C `float`: the span is subtracted in f32, then widened.
    let scale = f64::from(in1 - in0) / out_size as f64;
    let in0 = f64::from(in0);
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let ss = 1.0 / filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = in0 + (xx as f64 + 0.5) * scale;
            // C's (int) casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| filter.weight((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    // Pillow's normalize_coeffs_8bpc: round half away from zero, truncate.
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps {
                first: xmin,
                weights,
            }
        })
        .collect()
}

/// Pillow's `clip8`: a fixed-point sum back to 8 bits.
fn clip8(sum: i32) -> u8 {
    if sum >= (1 << PRECISION_BITS << 8) {
        255
    } else if sum <= 0 {
        0
    } else {
        (sum >> PRECISION_BITS) as u8
    }
}

/// One tap sum of samples `at(i)` for the taps.
fn convolve(taps: &Taps, at: impl Fn(usize) -> u8) -> u8 {
    let mut sum: i32 = 1 << (PRECISION_BITS - 1);
    for (i, &w) in taps.weights.iter().enumerate() {
        sum = sum.wrapping_add(i32::from(at(taps.first + i)).wrapping_mul(w));
    }
    clip8(sum)
}

/// Pillow's `ImagingResample` of `image` to `width × height` over the input `bbox` (x0, y0,
/// x1, y1), which Pillow holds as C `float`s.
fn resample_box(
    image: &Pixels,
    width: usize,
    height: usize,
    filter: Resample,
    bbox: [f64; 4],
) -> Pixels {
    let bbox = bbox.map(|v| v as f32);
    let need_horizontal = width != image.width || bbox[0] != 0.0 || bbox[2] != width as f32;
    let need_vertical = height != image.height || bbox[1] != 0.0 || bbox[3] != height as f32;
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice what
    // the width does.
    let (dh, dw) = (
        image.height as i64 - height as i64,
        image.width as i64 - width as i64,
    );
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let horizontal = || taps(filter, image.width, (bbox[0], bbox[2]), width);
    let vertical = taps(filter, image.height, (bbox[1], bbox[3]), height);
    if !horizontal_first {
        return match (need_vertical, need_horizontal) {
            (true, true) => {
                let tall = vertical_pass(image, &vertical, 0);
                horizontal_pass(&tall, &horizontal(), 0, tall.height)
            }
            (true, false) => vertical_pass(image, &vertical, 0),
            (false, true) => horizontal_pass(image, &horizontal(), 0, image.height),
            (false, false) => image.clone(),
        };
    }
    // Horizontal first, over only the rows the vertical pass reads.
    let first_row = vertical.first().map_or(0, |t| t.first);
    let last_row = vertical
        .last()
        .map_or(0, |t| t.first + t.weights.len())
        .max(first_row);
    match (need_horizontal, need_vertical) {
        (true, true) => {
            let wide = horizontal_pass(image, &horizontal(), first_row, last_row - first_row);
            vertical_pass(&wide, &vertical, first_row)
        }
        (true, false) => horizontal_pass(image, &horizontal(), first_row, last_row - first_row),
        (false, true) => vertical_pass(image, &vertical, 0),
        (false, false) => image.clone(),
    }
}

/// The horizontal pass over `rows` rows of `image` from `first_row`.
fn horizontal_pass(image: &Pixels, taps: &[Taps], first_row: usize, rows: usize) -> Pixels {
    let c = image.channels;
    let width = taps.len();
    let mut out = vec![0u8; rows * width * c];
    for y in 0..rows {
        let line = &image.data[(first_row + y) * image.width * c..][..image.width * c];
        for (x, t) in taps.iter().enumerate() {
            for ch in 0..c {
                out[(y * width + x) * c + ch] = convolve(t, |i| line[i * c + ch]);
            }
        }
    }
    Pixels {
        width,
        height: rows,
        channels: c,
        data: out,
    }
}

/// The vertical pass of `image`, whose row 0 is input row `shift`.
fn vertical_pass(image: &Pixels, taps: &[Taps], shift: usize) -> Pixels {
    let (c, w) = (image.channels, image.width);
    let height = taps.len();
    let mut out = vec![0u8; height * w * c];
    for (y, t) in taps.iter().enumerate() {
        for x in 0..w {
            for ch in 0..c {
                out[(y * w + x) * c + ch] =
                    convolve(t, |i| image.data[((i - shift) * w + x) * c + ch]);
            }
        }
    }
    Pixels {
        width: w,
        height,
        channels: c,
        data: out,
    }
}

/// Pillow's `division_UINT32(n, 8)`: ⌊2³² / (256 n)⌋, the division done in f32.
fn reduce_multiplier(n: u32) -> u32 {
    let max_int = 4_294_967_296.0f32;
    (max_int / (256 * n) as f32) as u32
}

/// Pillow's `Image.reduce((fx, fy), box)` over the box (x0, y0, x1, y1).
fn reduce(image: &Pixels, (fx, fy): (usize, usize), [x0, y0, x1, y1]: [usize; 4]) -> Pixels {
    let c = image.channels;
    let (bw, bh) = (x1 - x0, y1 - y0);
    let (width, height) = (bw.div_ceil(fx), bh.div_ceil(fy));
    let mut out = vec![0u8; width * height * c];
    for y in 0..height {
        let rows = (y0 + y * fy)..(y0 + ((y + 1) * fy).min(bh));
        for x in 0..width {
            let cols = (x0 + x * fx)..(x0 + ((x + 1) * fx).min(bw));
            let n = (rows.len() * cols.len()) as u32;
            let multiplier = reduce_multiplier(n);
            for ch in 0..c {
                let mut sum = n / 2;
                for yy in rows.clone() {
                    for xx in cols.clone() {
                        sum += u32::from(image.data[(yy * image.width + xx) * c + ch]);
                    }
                }
                out[(y * width + x) * c + ch] = (sum.wrapping_mul(multiplier) >> 24) as u8;
            }
        }
    }
    Pixels {
        width,
        height,
        channels: c,
        data: out,
    }
}

/// Pillow's `Image.resize((width, height), filter, reducing_gap=gap)` of an 8-bit image (both
/// target sides positive; the same size gives the image back).
pub fn resize_pixels(
    image: &Pixels,
    width: usize,
    height: usize,
    filter: Resample,
    reducing_gap: Option<f64>,
) -> Pixels {
    let (w, h) = (image.width as f64, image.height as f64);
    if (image.width, image.height) == (width, height) {
        return image.clone();
    }
    let mut bbox = [0.0, 0.0, w, h];
    let reduced;
    let mut source = image;
    if let Some(gap) = reducing_gap {
        // Python's int() of a positive float truncates.
        let fx = ((w / width as f64 / gap) as usize).max(1);
        let fy = ((h / height as f64 / gap) as usize).max(1);
        if fx > 1 || fy > 1 {
            // Pillow's _get_safe_box: the box widened by the filter's support, less ½.
            let support = filter.support() - 0.5;
            let (sx, sy) = (support * w / width as f64, support * h / height as f64);
            let safe = [
                ((bbox[0] - sx) as i64).max(0) as usize,
                ((bbox[1] - sy) as i64).max(0) as usize,
                ((bbox[2] + sx).ceil() as usize).min(image.width),
                ((bbox[3] + sy).ceil() as usize).min(image.height),
            ];
            reduced = reduce(image, (fx, fy), safe);
            source = &reduced;
            let (fx, fy) = (fx as f64, fy as f64);
            bbox = [
                (bbox[0] - safe[0] as f64) / fx,
                (bbox[1] - safe[1] as f64) / fy,
                (bbox[2] - safe[0] as f64) / fx,
                (bbox[3] - safe[1] as f64) / fy,
            ];
        }
    }
    resample_box(source, width, height, filter, bbox)
}
