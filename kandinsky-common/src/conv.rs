//! The 3×3 convolution (stride 1, padding 1) of the UNet and MoVQ resnets, with faster paths
//! for burn's CPU backend.
//!
//! [`conv3x3`] picks one of three ways to compute the same convolution:
//!
//! - **Small maps** (at most [`SMALL_MAP`] positions: the two deepest UNet levels, 16×16 and 8×8
//!   for a 64×64 latent), any backend: one matrix product. The nine shifted copies of the
//!   padded input are stacked next to each channel, giving a (B, 9·C_in, H·W) matrix whose row
//!   order (channel-major, tap-minor) is exactly the order of the checkpoint's
//!   (C_out, C_in, 3, 3) weight, so the weight is used as stored. On burn's CPU backend this runs
//!   1.4–3x faster than its direct convolution, whose per-call re-layout of the (large, at these
//!   levels) weight dominates when there are few positions. With this crate's `flex` feature
//!   the weight is read in place and the product split across the threads by hand
//!   ([`crate::matmul`]).
//! - **Larger maps on the CPU** (burn's `flex` backend, f32, at least 32 input channels: below
//!   that the transforms cost more than they save): Winograd's minimal filtering
//!   F(T×T, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016),
//!   F(2×2, 3×3) in [`conv3x3`] and F(4×4, 3×3) in [`conv3x3_large_tiles`]. Each
//!   (T + 2)×(T + 2) input tile d (stride T) and each 3×3 filter g are transformed, V = Bᵀ d B
//!   and U = G g Gᵀ; the (T + 2)² positions ξ of the transformed tiles are as many independent
//!   matrix products M_ξ = U_ξ V_ξ over the channels (C_out × C_in by C_in × tiles), and each
//!   T×T output tile is Aᵀ M A. That is 16 multiplications per 4 outputs (F(2×2)) or 36 per 16
//!   (F(4×4)) where the direct convolution does 9 per output: 2.25x or 4x fewer. The three
//!   transforms are host loops (the filters' into contiguous C_out × C_in matrices, read in
//!   place with the `flex` feature), the inputs' and outputs' in bands of tile rows so the
//!   transformed tensors stay small; the products of a band run one per thread at a time
//!   (`gemm` on one thread each). F(2×2)'s B, G and A hold only 0, ±1 and ±½: its error stays
//!   within a small multiple of the direct convolution's; F(4×4)'s hold up to 8 and 1/24 and
//!   round ~10x more (the tests below bound both).
//! - **Few output channels on the CPU** (fewer than 16: the decoders' last convolutions):
//!   nine products accumulated, one per tap, with the positions read in place from the
//!   zero-padded input shifted by the tap's offset.
//! - Otherwise (GPU backends, other dtypes): burn's `conv2d`.
//!
//! [`upsample2x_conv3x3`] is the MoVQ upsampler's nearest ×2 followed by such a convolution,
//! computed on the CPU as four 2×2 convolutions of the low-resolution map (on the host, each
//! as four products with shifted views of the padded input).

use std::ops::Range;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::ops::PadMode;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::host::HostF32;
use crate::matmul::{Matrix, product, product_parallel, sum_of_products_parallel};

/// A 3×3 convolution with stride 1 and padding 1, lazily initialised (its weights are then
/// loaded from a checkpoint).
pub fn new_conv3x3(inp: usize, out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([inp, out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Feature maps of at most this many positions take the matrix-product path.
pub const SMALL_MAP: usize = 16 * 16;

/// Applies `conv`, a 3×3 convolution with stride 1 and padding 1, to `x` (B, C_in, H, W).
pub fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    fast(conv, x, winograd::<2, 4, F2>)
}

/// [`conv3x3`] with Winograd's larger tiles on the CPU, F(4×4, 3×3): 4x fewer multiplications
/// than the direct convolution where F(2×2, 3×3) saves 2.25x, and a transformed input 2.25
/// rather than 4 times the map's size, but ~10x its rounding error (1–3e-5 of the output's
/// scale at 128–512 input channels, against ~1e-6). For outputs nothing later amplifies: the
/// MoVQ decoder's, whose result is the image.
pub fn conv3x3_large_tiles(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    fast(conv, x, winograd::<4, 6, F4>)
}

/// [`conv3x3`]'s choice of path, with `winograd` for larger maps on the CPU.
fn fast(conv: &Conv2d, x: Tensor<4>, winograd: fn(&Conv2d, Tensor<4>) -> Tensor<4>) -> Tensor<4> {
    let [_, c_in, h, w] = x.dims();
    if h * w <= SMALL_MAP {
        stacked_taps(conv, x)
    } else if x.dtype() == DType::F32 && crate::tensors::is_flex(&x.device()) && c_in >= 32 {
        match conv.weight.dims()[0] {
            c_out if c_out < FEW_OUTPUTS => shifted_taps_on_host(conv, x),
            _ => winograd(conv, x),
        }
    } else {
        conv.forward(x)
    }
}

/// [`conv3x3`] without the Winograd path (the small-map product or burn's `conv2d`), for
/// outputs that a chaotic computation amplifies: Winograd's transforms round a few more times,
/// and the MoVQ encoder's latents seed the UNet's denoising in image-to-image and inpainting,
/// where the 2.2 image-to-image parity error went from 1.9e-4 to 8.0e-4 with them.
pub fn conv3x3_direct(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if h * w <= SMALL_MAP {
        stacked_taps(conv, x)
    } else {
        conv.forward(x)
    }
}

/// Nearest ×2 upsampling followed by `conv` (3×3, stride 1, padding 1), as four 2×2
/// convolutions on `x` (B, C_in, H, W) itself: output pixel (2i + a, 2j + b) only sees input
/// rows i − 1, i (a = 0) or i, i + 1 (a = 1), and likewise columns, with the 3×3 taps that fall
/// on the same input pixel summed. 16 multiplications per input pixel and output channel where
/// upsampling first costs 36, and the 4x larger upsampled map is never made. The same sums of
/// products up to the order of two additions per tap: the error is that of the convolution.
pub fn upsample2x_conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if !crate::tensors::is_flex(&x.device()) || x.dtype() != DType::F32 {
        let up = burn::tensor::module::interpolate(
            x,
            burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Nearest)
                .with_output_size([2 * h, 2 * w]),
        );
        return conv3x3(conv, up);
    }
    upsample2x_conv3x3_on_host(conv, x)
}

/// `f` of the weight (C_out, C_in, 3, 3) of `conv` as contiguous floats: read in place where it
/// can be (burn-flex with this crate's `flex` feature), else copied out.
fn with_filters<R>(conv: &Conv2d, f: impl FnOnce(&[f32]) -> R) -> R {
    let weight = conv.weight.val();
    let len = weight.dims().iter().product();
    let host = HostF32::new(weight.clone());
    match host.as_ref().and_then(|h| h.prefix(len)) {
        Some(in_place) => f(in_place),
        None => f(weight.into_data().as_slice().expect("f32 weight")),
    }
}

/// The bias of `conv`, if it has one, as floats (C_out of them: small, copied).
fn bias_values(conv: &Conv2d) -> Option<Vec<f32>> {
    let bias = conv.bias.as_ref()?.val().into_data();
    Some(bias.try_into_vec::<f32>().expect("f32 bias"))
}

/// `x` (N, C, H, W) read into host memory padded for the shifted-view products ([`pad_maps`]).
fn padded_input(x: Tensor<4>) -> Vec<f32> {
    let [n, c, h, w] = x.dims();
    pad_maps(x.into_data().as_slice().expect("f32 input"), [n, c, h, w])
}

/// `len` zeros, written by the compute threads: a large output buffer's first touch (page faults
/// and the zeroing of reused memory) split between them rather than made by one.
fn zeros(len: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    values.par_extend(rayon::iter::repeat_n(0f32, len));
    values
}

/// The taps of the 3×3 kernel that fall on padded offset `offset` (0 or 1) of phase `phase`
/// along one axis of [`upsample2x_conv3x3`]: phase 0 reads offsets −1 (tap 0) and 0 (taps 1
/// and 2), phase 1 offsets 0 (taps 0 and 1) and +1 (tap 2).
fn folded_taps(phase: usize, offset: usize) -> Range<usize> {
    match (phase, offset) {
        (0, 0) => 0..1,
        (0, _) => 1..3,
        (_, 0) => 0..2,
        _ => 2..3,
    }
}

/// The 16 folded 2×2 kernels of [`upsample2x_conv3x3`] from `weight` (C_out, C_in, 3, 3)
/// (contiguous), one after the other, each C_out × C_in row-major: matrix 4·(2a + p) + 2u + v
/// is phase (a, p) at padded offset (u, v).
fn fold_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut folded = vec![0f32; 16 * plane];
    let mut rows: Vec<Vec<&mut [f32]>> = (0..c_out).map(|_| Vec::with_capacity(16)).collect();
    for matrix in folded.chunks_mut(plane) {
        for (co, row) in matrix.chunks_mut(c_in).enumerate() {
            rows[co].push(row);
        }
    }
    rows.par_iter_mut().enumerate().for_each(|(co, rows)| {
        for (index, row) in rows.iter_mut().enumerate() {
            let (phase, offset) = (index / 4, index % 4);
            let (ys, xs) = (
                folded_taps(phase / 2, offset / 2),
                folded_taps(phase % 2, offset % 2),
            );
            for (ci, value) in row.iter_mut().enumerate() {
                let g = &weight[(co * c_in + ci) * 9..][..9];
                *value = ys
                    .clone()
                    .flat_map(|ky| xs.clone().map(move |kx| g[3 * ky + kx]))
                    .sum();
            }
        }
    });
    folded
}

/// `x` (N, C, H, W) with a border of one zero on every side of each map, as (N, C, H + 2, W + 2)
/// followed by two more zeros: a view that starts up to two places into a map and runs
/// (H)·(W + 2) places then stays inside.
fn pad_maps(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let plane = (h + 2) * (w + 2);
    let mut padded = zeros(n * c * plane + 2);
    padded[..n * c * plane]
        .par_chunks_mut(plane)
        .zip(x.par_chunks(h * w))
        .for_each(|(padded, map)| {
            for (row, values) in padded[w + 2..].chunks_mut(w + 2).zip(map.chunks(w)) {
                row[1..=w].copy_from_slice(values);
            }
        });
    padded
}

/// [`upsample2x_conv3x3`] on burn's CPU backend: each phase's 2×2 convolution as four products
/// accumulated, C_out × C_in folded kernel by C_in × positions, the positions read in place
/// from the zero-padded input shifted by the tap's offset. Rows of positions are two wider than
/// the map (the view runs on through the padding; those two outputs per row are dropped), so a
/// shifted map is a plain strided matrix. In bands of input rows; the four phases of a band run
/// one per thread at a time (`gemm` on one thread each), then are interleaved into the output
/// with the bias.
fn upsample2x_conv3x3_on_host(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    let [n, c_in, h, w] = x.dims();
    let c_out = conv.weight.dims()[0];
    let folded = with_filters(conv, |weight| fold_filters(weight, c_out, c_in));
    let bias = bias_values(conv);
    let padded = padded_input(x);

    let (wide, plane) = (w + 2, (h + 2) * (w + 2));
    let (h2, w2) = (2 * h, 2 * w);
    let mut out = zeros(n * c_out * h2 * w2);
    let band = (BAND_FLOATS / (4 * c_out * wide)).clamp(1, h);
    let mut phases = vec![Vec::new(); 4];
    for image in 0..n {
        let padded = &padded[image * c_in * plane..];
        let out = &mut out[image * c_out * h2 * w2..][..c_out * h2 * w2];
        for start in (0..h).step_by(band) {
            let rows = start..(start + band).min(h);
            let positions = rows.len() * wide;
            phases.par_iter_mut().enumerate().for_each(|(phase, dst)| {
                dst.resize(c_out * positions, 0.0);
                let (a, p) = (phase / 2, phase % 2);
                for offset in 0..4 {
                    let (u, v) = (offset / 2, offset % 2);
                    let kernel = &folded[(4 * phase + offset) * c_out * c_in..][..c_out * c_in];
                    // Padded offsets a + u, p + v: input offsets −1, 0 or +1.
                    let taps = Matrix {
                        data: &padded[(rows.start + a + u) * wide + p + v..],
                        rows: c_in,
                        cols: positions,
                        row_stride: plane,
                        col_stride: 1,
                    };
                    let kernel = Matrix::row_major(kernel, c_out, c_in);
                    product(dst, kernel, taps, offset > 0);
                }
            });
            // Interleave: output row 2i + a holds phases (a, 0) and (a, 1) column by column.
            out.par_chunks_mut(h2 * w2)
                .enumerate()
                .for_each(|(co, map)| {
                    let bias = bias.as_ref().map_or(0.0, |b| b[co]);
                    for (r, i) in rows.clone().enumerate() {
                        for a in 0..2 {
                            let even = &phases[2 * a][(co * rows.len() + r) * wide..][..w];
                            let odd = &phases[2 * a + 1][(co * rows.len() + r) * wide..][..w];
                            let row = &mut map[(2 * i + a) * w2..][..w2];
                            for ((pair, &e), &o) in row.chunks_exact_mut(2).zip(even).zip(odd) {
                                pair[0] = e + bias;
                                pair[1] = o + bias;
                            }
                        }
                    }
                });
        }
    }
    Tensor::from_data(TensorData::new(out, [n, c_out, h2, w2]), &device)
}

/// Below this many output channels (the decoders' last convolutions, to 3 or 8 channels),
/// Winograd's input transform (16 values per input pixel, written and read) costs more than the
/// products it saves: [`shifted_taps_on_host`] instead.
const FEW_OUTPUTS: usize = 16;

/// The 3×3 convolution on burn's CPU backend as nine products accumulated, C_out × C_in tap by
/// C_in × positions, the positions read in place from the zero-padded input shifted by the
/// tap's offset (rows of positions two wider than the map, as in
/// [`upsample2x_conv3x3_on_host`]); each thread takes a band of the positions.
fn shifted_taps_on_host(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    let [n, c_in, h, w] = x.dims();
    let c_out = conv.weight.dims()[0];
    let bias = bias_values(conv);
    let padded = padded_input(x);

    let (wide, plane) = (w + 2, (h + 2) * (w + 2));
    let positions = h * wide;
    let mut wide_out = zeros(c_out * positions);
    let mut out = zeros(n * c_out * h * w);
    with_filters(conv, |weight| {
        for (image, out) in out.chunks_mut(c_out * h * w).enumerate() {
            let padded = &padded[image * c_in * plane..];
            sum_of_products_parallel(&mut wide_out, 9, |tap| {
                let (dy, dx) = (tap / 3, tap % 3);
                let kernel = Matrix {
                    data: &weight[tap..],
                    rows: c_out,
                    cols: c_in,
                    row_stride: 9 * c_in,
                    col_stride: 9,
                };
                let taps = Matrix {
                    data: &padded[dy * wide + dx..],
                    rows: c_in,
                    cols: positions,
                    row_stride: plane,
                    col_stride: 1,
                };
                (kernel, taps)
            });
            // Drop the two extra outputs of each row, add the bias.
            out.par_chunks_mut(h * w)
                .zip(wide_out.par_chunks(positions))
                .enumerate()
                .for_each(|(co, (map, wide_map))| {
                    let bias = bias.as_ref().map_or(0.0, |b| b[co]);
                    for (row, values) in map.chunks_mut(w).zip(wide_map.chunks(wide)) {
                        for (o, &v) in row.iter_mut().zip(values) {
                            *o = v + bias;
                        }
                    }
                });
        }
    });
    Tensor::from_data(TensorData::new(out, [n, c_out, h, w]), &device)
}

/// The small-map path: one (C_out, 9·C_in) × (9·C_in, H·W) product per image.
fn stacked_taps(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [b, c_in, h, w] = x.dims();
    let weight = conv.weight.val();
    let c_out = weight.dims()[0];
    let padded = x.pad([(0, 0), (0, 0), (1, 1), (1, 1)], PadMode::Constant(0.0));
    let taps: Vec<Tensor<4>> = (0..3)
        .flat_map(|dy| (0..3).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| {
            padded
                .clone()
                .slice([0..b, 0..c_in, dy..dy + h, dx..dx + w])
        })
        .collect();
    let columns = Tensor::stack::<5>(taps, 2).reshape([b, 9 * c_in, h * w]);
    if let Some(out) = stacked_taps_on_host(conv, &columns) {
        return out.reshape([b, c_out, h, w]);
    }
    let out = weight.reshape([1, c_out, 9 * c_in]).matmul(columns);
    let out = match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, c_out, 1]),
        None => out,
    };
    out.reshape([b, c_out, h, w])
}

/// [`stacked_taps`]' products with the weight and the columns read in place and the bias as the
/// products' starting value, split across the threads ([`product_parallel`]); `None` where they
/// cannot be read in place.
fn stacked_taps_on_host(conv: &Conv2d, columns: &Tensor<3>) -> Option<Tensor<3>> {
    let [b, k, positions] = columns.dims();
    let c_out = conv.weight.dims()[0];
    let weight = HostF32::new(conv.weight.val())?;
    let weight = Matrix::row_major(weight.prefix(c_out * k)?, c_out, k);
    let host = HostF32::new(columns.clone())?;
    let columns_data = host.prefix(b * k * positions)?;
    let bias = match &conv.bias {
        Some(bias) => Some(HostF32::new(bias.val())?),
        None => None,
    };
    let bias = match &bias {
        Some(bias) => Some(bias.prefix(c_out)?),
        None => None,
    };
    let mut out = zeros(b * c_out * positions);
    for (image, out) in out.chunks_mut(c_out * positions).enumerate() {
        if let Some(bias) = bias {
            for (row, &value) in out.chunks_mut(positions).zip(bias) {
                row.fill(value);
            }
        }
        let columns = &columns_data[image * k * positions..][..k * positions];
        product_parallel(out, weight, Matrix::row_major(columns, k, positions), true);
    }
    Some(Tensor::from_data(
        TensorData::new(out, [b, c_out, positions]),
        &columns.device(),
    ))
}

/// One Winograd minimal filtering algorithm F(T×T, 3×3): output tiles of side `T` from input
/// tiles of side `S` = T + 2 (stride T), as its three one-dimensional transforms (applied along
/// the rows, then along the columns).
trait Tiling<const T: usize, const S: usize> {
    /// G·g for one column (g0, g1, g2) of a 3×3 filter.
    fn filter(g: [f32; 3]) -> [f32; S];
    /// Bᵀ·d for one column of an input tile.
    fn input(d: [f32; S]) -> [f32; S];
    /// Aᵀ·m for one column of a tile of products.
    fn output(m: [f32; S]) -> [f32; T];
}

/// F(2×2, 3×3): interpolation points 0, ±1 and ∞; every coefficient 0, ±1 or ±½ (exact).
struct F2;

impl Tiling<2, 4> for F2 {
    #[inline(always)]
    fn filter([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
        [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
    }

    #[inline(always)]
    fn input([d0, d1, d2, d3]: [f32; 4]) -> [f32; 4] {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    }

    #[inline(always)]
    fn output([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }
}

/// F(4×4, 3×3): interpolation points 0, ±1, ±2 and ∞; coefficients up to 8 (A) and 1/24 (G,
/// inexact in binary), so more rounding than [`F2`].
struct F4;

impl Tiling<4, 6> for F4 {
    #[inline(always)]
    fn filter([g0, g1, g2]: [f32; 3]) -> [f32; 6] {
        let (even, odd) = (g0 + g2, g1);
        [
            0.25 * g0,
            -(even + odd) / 6.0,
            -(even - odd) / 6.0,
            (g0 / 24.0 + g2 / 6.0) + odd / 12.0,
            (g0 / 24.0 + g2 / 6.0) - odd / 12.0,
            g2,
        ]
    }

    #[inline(always)]
    fn input([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
        let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
        let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
        [
            4.0 * d0 - 5.0 * d2 + d4,
            a + b,
            a - b,
            c + e,
            c - e,
            4.0 * d1 - 5.0 * d3 + d5,
        ]
    }

    #[inline(always)]
    fn output([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
        let (s1, s2) = (m1 + m2, m1 - m2);
        let (s3, s4) = (m3 + m4, m3 - m4);
        [
            m0 + s1 + s3,
            s2 + 2.0 * s4,
            s1 + 4.0 * s3,
            s2 + 8.0 * s4 + m5,
        ]
    }
}

/// U = G g Gᵀ for every filter g of `weight` (C_out, C_in, 3, 3) (contiguous), as S² matrices
/// U_ξ (C_out × C_in, row-major) one after the other: ξ = S·a + b is row a, column b of U.
fn transform_filters<const T: usize, const S: usize, W: Tiling<T, S>>(
    weight: &[f32],
    c_out: usize,
    c_in: usize,
) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut u = vec![0f32; S * S * plane];
    // Each task writes rows `co` of all S² matrices: split them per position first.
    let mut rows: Vec<Vec<&mut [f32]>> = (0..c_out).map(|_| Vec::with_capacity(S * S)).collect();
    for matrix in u.chunks_mut(plane) {
        for (co, row) in matrix.chunks_mut(c_in).enumerate() {
            rows[co].push(row);
        }
    }
    rows.par_iter_mut().enumerate().for_each(|(co, u)| {
        for ci in 0..c_in {
            let g = &weight[(co * c_in + ci) * 9..][..9];
            // G g: S rows of three, then (G g) Gᵀ along the rows.
            let columns = [0, 1, 2].map(|l| W::filter([g[l], g[3 + l], g[6 + l]]));
            for a in 0..S {
                let row = W::filter([columns[0][a], columns[1][a], columns[2][a]]);
                for (b, value) in row.into_iter().enumerate() {
                    u[S * a + b][ci] = value;
                }
            }
        }
    });
    u
}

/// `N` rows of `data`, `stride` apart, each the `len` values from `offset` on: mutable slices
/// whose length the loops over them can see (and whose bounds checks then go).
fn rows_mut<const N: usize>(
    data: &mut [f32],
    stride: usize,
    offset: usize,
    len: usize,
) -> [&mut [f32]; N] {
    let mut rows = data.chunks_mut(stride);
    std::array::from_fn(|_| &mut rows.next().expect("N rows")[offset..][..len])
}

/// Floats of the transformed input (or output) held at once: bands of tile rows are sized to it.
const BAND_FLOATS: usize = 16 << 20;

/// The Winograd F(T×T, 3×3) path (see the module documentation).
fn winograd<const T: usize, const S: usize, W: Tiling<T, S>>(
    conv: &Conv2d,
    x: Tensor<4>,
) -> Tensor<4> {
    let device = x.device();
    let [n, c_in, h, w] = x.dims();
    let c_out = conv.weight.dims()[0];
    let (ht, wt) = (h.div_ceil(T), w.div_ceil(T));
    let u = with_filters(conv, |weight| {
        transform_filters::<T, S, W>(weight, c_out, c_in)
    });
    let bias = bias_values(conv);
    let bias = bias.as_deref();
    let input = x.into_data();
    let input: &[f32] = input.as_slice().expect("f32 input");

    let mut out = zeros(n * c_out * h * w);
    let per_row = S * S * c_in.max(c_out) * n * wt;
    let band = (BAND_FLOATS / per_row).clamp(1, ht);
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for start in (0..ht).step_by(band) {
        let rows = start..(start + band).min(ht);
        let tiles = n * rows.len() * wt;
        transform_input::<T, S, W>(&mut v, input, [n, c_in, h, w], rows.clone(), wt);
        // M_ξ = U_ξ V_ξ (C_out × tiles), the S² products spread over the threads.
        m.resize(S * S * c_out * tiles, 0.0);
        m.par_chunks_mut(c_out * tiles)
            .enumerate()
            .for_each(|(xi, m)| {
                let u = Matrix::row_major(&u[xi * c_out * c_in..][..c_out * c_in], c_out, c_in);
                let v = Matrix {
                    data: &v[xi * tiles..],
                    rows: c_in,
                    cols: tiles,
                    row_stride: S * S * tiles,
                    col_stride: 1,
                };
                product(m, u, v, false);
            });
        transform_output::<T, S, W>(&m, bias, &mut out, [n, c_out, h, w], rows, wt);
    }
    Tensor::from_data(TensorData::new(out, [n, c_out, h, w]), &device)
}

/// V = Bᵀ d B for every S×S tile of the tile rows `rows`, into `v` as (C_in, S², N·tiles): for
/// channel c and position ξ, the tiles of image 0 (row-major), then of image 1, … (`v` is
/// resized to that and every element written: a buffer kept between bands is not cleared.)
///
/// Each input row is read into T phases (padded column x goes to phase x mod T, place ⌊x/T⌋),
/// so that column c of tile j is phase c mod T at place j + ⌊c/T⌋: both transforms then run
/// over the tiles with contiguous loads and stores (which the compiler vectorises).
fn transform_input<const T: usize, const S: usize, W: Tiling<T, S>>(
    v: &mut Vec<f32>,
    x: &[f32],
    [n, c_in, h, w]: [usize; 4],
    rows: Range<usize>,
    wt: usize,
) {
    let tiles = rows.len() * wt;
    let stride = n * tiles; // between positions ξ of one channel
    v.resize(c_in * S * S * stride, 0.0);
    let places = wt + 1; // of each phase: padded columns 0 … T·wt + T − 1
    let row_len = T * places;
    v.par_chunks_mut(S * S * stride)
        .enumerate()
        .for_each(|(c, v)| {
            let mut d = vec![0f32; S * row_len];
            let mut t = vec![0f32; S * row_len];
            for img in 0..n {
                let plane = &x[(img * c_in + c) * h * w..][..h * w];
                for (ti, i) in rows.clone().enumerate() {
                    // Input rows T·i − 1 … T·i + T, zero outside the map, one zero column left.
                    for (k, row) in d.chunks_mut(row_len).enumerate() {
                        row.fill(0.0);
                        let y = (T * i + k) as isize - 1;
                        if y >= 0 && y < h as isize {
                            for (x, &value) in plane[y as usize * w..][..w].iter().enumerate() {
                                let padded = x + 1;
                                row[(padded % T) * places + padded / T] = value;
                            }
                        }
                    }
                    // Bᵀ on the rows, element by element (the phases' order is immaterial), on
                    // slices of the loop's length so that its bounds checks go.
                    {
                        let d: [&[f32]; S] = std::array::from_fn(|k| &d[k * row_len..][..row_len]);
                        let mut t: [&mut [f32]; S] = rows_mut(&mut t, row_len, 0, row_len);
                        for x in 0..row_len {
                            let column = W::input(d.map(|row| row[x]));
                            for (row, value) in t.iter_mut().zip(column) {
                                row[x] = value;
                            }
                        }
                    }
                    // B on the columns of each tile, written to the S² positions.
                    let at = img * tiles + ti * wt;
                    for (a, row) in t.chunks(row_len).enumerate() {
                        let columns: [&[f32]; S] =
                            std::array::from_fn(|c| &row[(c % T) * places + c / T..][..wt]);
                        let mut v: [&mut [f32]; S] =
                            rows_mut(&mut v[S * a * stride..], stride, at, wt);
                        for j in 0..wt {
                            let values = W::input(columns.map(|column| column[j]));
                            for (v, value) in v.iter_mut().zip(values) {
                                v[j] = value;
                            }
                        }
                    }
                }
            }
        });
}

/// Y = Aᵀ M A (+ bias) for the tile rows `rows`, from M as (S², C_out, N·tiles), into `out`
/// (N, C_out, H, W); tiles that overhang the map's edge are cut. Both transforms run over the
/// tiles with contiguous loads and stores; the T outputs of each tile are then interleaved
/// into the row.
fn transform_output<const T: usize, const S: usize, W: Tiling<T, S>>(
    m: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    [n, c_out, h, w]: [usize; 4],
    rows: Range<usize>,
    wt: usize,
) {
    let tiles = rows.len() * wt;
    let stride = c_out * n * tiles; // between positions ξ
    out.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(plane, out)| {
            let (img, co) = (plane / c_out, plane % c_out);
            let bias = bias.map_or(0.0, |b| b[co]);
            let at = co * n * tiles + img * tiles;
            // Aᵀ M: T rows of S columns (b) of `wt` tiles each.
            let mut s = vec![0f32; T * S * wt];
            let mut q = vec![0f32; T * wt];
            for (ti, i) in rows.clone().enumerate() {
                let ms = |xi: usize| &m[xi * stride + at + ti * wt..][..wt];
                for b in 0..S {
                    let column: [&[f32]; S] = std::array::from_fn(|a| ms(S * a + b));
                    let mut sb: [&mut [f32]; T] = rows_mut(&mut s, S * wt, b * wt, wt);
                    for j in 0..wt {
                        let values = W::output(column.map(|m| m[j]));
                        for (s, value) in sb.iter_mut().zip(values) {
                            s[j] = value;
                        }
                    }
                }
                // (Aᵀ M) A: T output columns per tile, then the bias.
                for r in 0..T {
                    let row = T * i + r;
                    if row >= h {
                        break;
                    }
                    let sr: [&[f32]; S] = std::array::from_fn(|b| &s[(r * S + b) * wt..][..wt]);
                    let mut qs: [&mut [f32]; T] = rows_mut(&mut q, wt, 0, wt);
                    for j in 0..wt {
                        let values = W::output(sr.map(|s| s[j]));
                        for (q, value) in qs.iter_mut().zip(values) {
                            q[j] = value;
                        }
                    }
                    let qs: [&[f32]; T] = std::array::from_fn(|k| &q[k * wt..][..wt]);
                    for (j, tile) in out[row * w..][..w].chunks_mut(T).enumerate() {
                        for (o, q) in tile.iter_mut().zip(qs) {
                            *o = q[j] + bias;
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn check(
        c_in: usize,
        c_out: usize,
        [b, h, w]: [usize; 3],
        path: fn(&Conv2d, Tensor<4>) -> Tensor<4>,
    ) {
        let device = Device::flex();
        let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([b, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let ours = path(&conv, x.clone());
        let reference = conv.forward(x);
        assert_eq!(ours.dims(), reference.dims());
        let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
        let err = (ours - reference).abs().max().into_scalar::<f32>();
        assert!(
            err <= 1e-5 * scale,
            "{c_in}->{c_out} {b}x{h}x{w}: max abs error {err} (scale {scale})"
        );
    }

    /// The matrix-product path computes the same convolution as burn's `conv2d`. Bound 1e-5
    /// relative: the two sum the same 9·C_in products of O(1) terms in different orders, f32
    /// rounding ~C_in·6e-8.
    #[test]
    fn small_map_path_equals_conv2d() {
        check(24, 40, [2, 5, 7], stacked_taps);
    }

    /// The nine shifted products compute the same convolution as burn's `conv2d`, on one and
    /// two images, square and oblong maps, as `conv3x3` takes them for few output channels.
    /// Bound 1e-5 relative, as above: the same 9·C_in products summed in another order.
    #[test]
    fn shifted_taps_equal_conv2d() {
        check(40, 3, [2, 20, 18], shifted_taps_on_host);
        check(32, 8, [1, 17, 23], shifted_taps_on_host);
        check(36, 5, [1, 24, 24], conv3x3);
    }

    /// Upsampling ×2 then convolving equals the four folded 2×2 convolutions on the host, bias
    /// included, one and two images, few and many channels. Bound 1e-5 relative: the same
    /// products, two of them pre-summed per tap.
    #[test]
    fn upsample_then_conv_equals_folded_phases() {
        let up = |conv: &Conv2d, x: Tensor<4>| {
            let [_, _, h, w] = x.dims();
            let x = burn::tensor::module::interpolate(
                x,
                burn::tensor::ops::InterpolateOptions::new(
                    burn::tensor::ops::InterpolateMode::Nearest,
                )
                .with_output_size([2 * h, 2 * w]),
            );
            conv.forward(x)
        };
        let device = Device::flex();
        for (c_in, c_out, [b, h, w]) in [
            (8, 12, [2, 5, 7]),
            (16, 16, [1, 12, 9]),
            (32, 12, [2, 5, 7]),
            (40, 48, [1, 9, 12]),
        ] {
            let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let x = Tensor::<4>::random([b, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
            let ours = upsample2x_conv3x3(&conv, x.clone());
            let reference = up(&conv, x);
            assert_eq!(ours.dims(), reference.dims());
            let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
            let err = (ours - reference).abs().max().into_scalar::<f32>();
            assert!(err <= 1e-5 * scale, "max abs error {err} (scale {scale})");
        }
    }

    /// Winograd F(2×2, 3×3) computes the same convolution as burn's `conv2d`, on even and odd
    /// maps, one and two images, with bias. Bound 1e-5 relative, as above: the transforms add
    /// at most a handful of roundings of O(1) sums (×½ is exact).
    #[test]
    fn winograd_path_equals_conv2d() {
        let winograd = winograd::<2, 4, F2>;
        check(24, 40, [2, 8, 10], winograd);
        check(16, 8, [1, 7, 5], winograd);
        check(3, 5, [2, 33, 17], winograd);
        check(64, 64, [1, 40, 40], winograd);
    }

    /// Winograd F(4×4, 3×3) likewise, on maps whose sides are and are not multiples of 4.
    /// Bound 1e-5 relative up to 64 input channels: its transforms multiply by up to 8 and by
    /// 1/6 and 1/24 (rounded), ~10x F(2×2)'s error (measured 6e-6 at 64 channels; the error
    /// grows as √C_in, 1–3e-5 at 128–512, `conv3x3_large_tiles`' documentation).
    #[test]
    fn large_tile_winograd_path_equals_conv2d() {
        let winograd = winograd::<4, 6, F4>;
        check(24, 40, [2, 8, 10], winograd);
        check(16, 8, [1, 7, 5], winograd);
        check(3, 5, [2, 33, 17], winograd);
        check(64, 64, [1, 40, 40], winograd);
        check(32, 48, [1, 18, 23], winograd);
    }
}
