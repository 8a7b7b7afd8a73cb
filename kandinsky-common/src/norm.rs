//! GroupNorm with what follows it in the MoVQ decoder fused into one pass on burn's CPU
//! backend: the per-channel affine, SpatialNorm's modulation by maps at a lower resolution
//! (`normed · scale + shift`, the maps nearest-upsampled by an integer factor on the fly) and
//! the resnets' SiLU.
//!
//! Composed of burn ops, a SpatialNorm + SiLU at 512×512 with 128 channels streams its
//! 134 MB maps through about a dozen passes (the group statistics, the normalisation, the
//! affine, two upsampled maps, the product, the sum, the SiLU). [`group_norm_then`] reads the input
//! twice (mean, then the centred variance, both summed in f64) and writes the output once, in
//! parallel over (image, group), in the flex tensors' own buffers. Other backends and dtypes
//! compose the same computation from burn ops.

use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

/// What is applied after the normalisation and the norm's own affine.
pub struct After<'a> {
    /// SpatialNorm's modulation: `x · scale + shift`, both (B, C, h, w) with H and W multiples of
    /// h and w (nearest-upsampled to (H, W)).
    pub modulation: Option<(&'a Tensor<4>, &'a Tensor<4>)>,
    /// Then SiLU.
    pub silu: bool,
}

/// `norm(x)` (B, C, H, W), then `after`.
pub fn group_norm_then(norm: &GroupNorm, x: Tensor<4>, after: After<'_>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    // The fused pass indexes the maps as (B, C, h, w) of x's batch and channels, both the same
    // size; anything else (a broadcast batch, say) goes through burn's broadcasting ops.
    let fits = after.modulation.is_none_or(|(scale, shift)| {
        let [sb, sc, sh, sw] = scale.dims();
        shift.dims() == scale.dims()
            && (sb, sc) == (b, c)
            && sh > 0
            && sw > 0
            && h % sh == 0
            && w % sw == 0
    });
    if fits && x.dtype() == DType::F32 && crate::tensors::is_flex(&x.device()) {
        fused(norm, x, after)
    } else {
        composed(norm, x, after)
    }
}

/// The same from burn ops.
fn composed(norm: &GroupNorm, x: Tensor<4>, after: After<'_>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let mut y = norm.forward(x);
    if let Some((scale, shift)) = after.modulation {
        let up = |t: &Tensor<4>| {
            let [_, _, th, tw] = t.dims();
            // Same size, or one value per channel (the UNet's scale-shift): broadcast as is.
            if (th, tw) == (h, w) || (th, tw) == (1, 1) {
                t.clone()
            } else {
                // PyTorch's legacy "nearest" (floor), what diffusers uses.
                interpolate(
                    t.clone(),
                    InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
                )
            }
        };
        y = y * up(scale) + up(shift);
    }
    if after.silu { silu(y) } else { y }
}

fn host(t: &Tensor<1>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 vector")
}

fn fused(norm: &GroupNorm, x: Tensor<4>, after: After<'_>) -> Tensor<4> {
    let device = x.device();
    let [_, c, h, w] = x.dims();
    let groups = norm.num_groups;
    let per_group = c / groups;
    let gamma = norm.gamma.as_ref().map(|g| host(&g.val()));
    let beta = norm.beta.as_ref().map(|g| host(&g.val()));
    let modulation = after.modulation.map(|(scale, shift)| {
        let dims = scale.dims();
        let read = |t: &Tensor<4>| t.to_data().convert::<f32>();
        (read(scale), read(shift), [dims[2], dims[3]])
    });
    let eps = norm.epsilon;
    let mut data = x.into_data();
    let values = data.as_mut_slice::<f32>().expect("f32 tensor");
    let plane = h * w;
    values
        .par_chunks_mut(per_group * plane)
        .enumerate()
        .for_each(|(index, chunk)| {
            let (img, group) = (index / groups, index % groups);
            let n = chunk.len() as f64;
            let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = chunk
                .iter()
                .map(|&v| {
                    let d = v as f64 - mean;
                    d * d
                })
                .sum::<f64>()
                / n;
            let inv = (1.0 / (var + eps).sqrt()) as f32;
            let mean = mean as f32;
            for (k, plane_values) in chunk.chunks_mut(plane).enumerate() {
                let ch = group * per_group + k;
                let g = gamma.as_ref().map_or(1.0, |g| g[ch]) * inv;
                let o = beta.as_ref().map_or(0.0, |b| b[ch]) - mean * g;
                match &modulation {
                    None => {
                        for v in plane_values.iter_mut() {
                            *v = *v * g + o;
                        }
                    }
                    Some((scale, shift, [sh, sw])) => {
                        let (fy, fx) = (h / sh, w / sw);
                        let at = (img * c + ch) * sh * sw;
                        let scale = &scale.as_slice::<f32>().expect("f32")[at..][..sh * sw];
                        let shift = &shift.as_slice::<f32>().expect("f32")[at..][..sh * sw];
                        for (y, row) in plane_values.chunks_mut(w).enumerate() {
                            let from = y / fy * sw;
                            let (srow, brow) = (&scale[from..][..*sw], &shift[from..][..*sw]);
                            for ((run, &s), &t) in row.chunks_mut(fx).zip(srow).zip(brow) {
                                for v in run {
                                    *v = (*v * g + o) * s + t;
                                }
                            }
                        }
                    }
                }
                if after.silu {
                    crate::activation::silu_in_place(plane_values);
                }
            }
        });
    Tensor::from_data(data, &device)
}

#[cfg(test)]
mod tests {
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The fused pass against the composed ops, with and without modulation and SiLU, on an
    /// affine norm with non-trivial γ, β. Bound 2e-5 relative to max(1, |ref|): both compute
    /// the same normalisation; the group statistics are summed in f64 here and in f32 by burn
    /// (over 4·64·64 values: ~1e-6 relative), then a few roundings.
    #[test]
    fn fused_equals_composed() {
        let device = Device::flex();
        let mut norm = GroupNormConfig::new(4, 16).with_epsilon(1e-6).init(&device);
        let random = |mean| Tensor::<1>::random([16], Distribution::Normal(mean, 0.5), &device);
        norm.gamma = Some(burn::module::Param::from_tensor(random(1.0)));
        norm.beta = Some(burn::module::Param::from_tensor(random(0.0)));
        let x = Tensor::<4>::random([2, 16, 64, 48], Distribution::Normal(0.5, 2.0), &device);
        let scale = Tensor::<4>::random([2, 16, 8, 12], Distribution::Normal(0.0, 1.0), &device);
        let shift = Tensor::<4>::random([2, 16, 8, 12], Distribution::Normal(0.0, 1.0), &device);
        // One value per channel, as the UNet's time scale-shift.
        let scale1 = Tensor::<4>::random([2, 16, 1, 1], Distribution::Normal(1.0, 0.5), &device);
        let shift1 = Tensor::<4>::random([2, 16, 1, 1], Distribution::Normal(0.0, 0.5), &device);
        let cases = [(0, false), (0, true), (1, false), (1, true), (2, true)];
        for (modulation, silu) in cases {
            let maps = [None, Some((&scale, &shift)), Some((&scale1, &shift1))];
            let after = || After {
                modulation: maps[modulation],
                silu,
            };
            let ours = fused(&norm, x.clone(), after());
            let reference = composed(&norm, x.clone(), after());
            let bound = reference.clone().abs().clamp_min(1.0) * 2e-5;
            let excess = ((ours - reference).abs() - bound)
                .max()
                .into_scalar::<f32>();
            assert!(
                excess <= 0.0,
                "modulation {modulation} silu {silu}: over by {excess}"
            );
        }
    }
}
