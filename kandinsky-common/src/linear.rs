//! The forward of a `Linear` layer, `x W + b` over the last axis, with a faster path for
//! burn's CPU backend.
//!
//! With this crate's `flex` feature, on burn-flex in f32, [`linear`] reads the weight and the
//! input in place and splits the product across the compute threads as single-threaded `gemm`
//! calls ([`crate::matmul`]), the bias added by starting the output from it. Elsewhere it is
//! burn's `Linear::forward`. The same products of the same terms: the output differs from
//! burn's only in summation order, within f32 rounding.

use burn::nn::Linear;
use burn::tensor::Tensor;

/// `layer.forward(x)`: `x` (…, d_in) times the weight (d_in, d_out), plus the bias.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    match on_host(layer, &x) {
        Some(y) => y,
        None => layer.forward(x),
    }
}

/// The host path, or `None` where it does not apply (another backend or dtype, a shape burn's
/// own op should report).
fn on_host<const D: usize>(layer: &Linear, x: &Tensor<D>) -> Option<Tensor<D>> {
    use crate::host::HostF32;
    use crate::matmul::{Matrix, product_parallel, product_transposed_parallel};

    let weight = HostF32::new(layer.weight.val())?;
    let weight = weight.matrix()?;
    let mut dims = x.dims();
    let d_in = *dims.last()?;
    let rows = dims[..D - 1].iter().product::<usize>();
    if weight.rows != d_in {
        return None;
    }
    let d_out = weight.cols;
    let len = rows.checked_mul(d_out)?;
    let bias = match &layer.bias {
        Some(bias) => Some(HostF32::new(bias.val())?),
        None => None,
    };
    let bias = match &bias {
        Some(bias) => Some(bias.prefix(d_out)?),
        None => None,
    };
    let input = HostF32::new(x.clone())?;
    let inputs = match input.contiguous() {
        // Every row at once.
        Some(data) => vec![Matrix::row_major(
            data.get(..rows.checked_mul(d_in)?)?,
            rows,
            d_in,
        )],
        // A 2-D or (B, L, d_in) view of other strides (a transposed feature map): one product
        // per batch element, each reading the view as it is.
        None => input.matrices()?,
    };
    let per = rows.checked_div(inputs.len())?;
    let mut out;
    if weight.row_stride == 1 && weight.col_stride != 1 {
        // A weight kept as stored ((out, in), seen transposed: `LinearLayout::StoredView`):
        // the product comes out transposed, the bias is added as it is turned back.
        out = Vec::with_capacity(len);
        let mut transposed = vec![0.0; per * d_out];
        for input in inputs {
            product_transposed_parallel(&mut transposed, input, weight);
            let at = out.len();
            out.resize(at + per * d_out, 0.0);
            transpose_adding(&transposed, per, d_out, bias, &mut out[at..]);
        }
    } else {
        out = match bias {
            Some(bias) => {
                let mut out = Vec::with_capacity(len);
                for _ in 0..rows {
                    out.extend_from_slice(bias);
                }
                out
            }
            None => vec![0.0; len],
        };
        for (out, input) in out.chunks_mut((per * d_out).max(1)).zip(inputs) {
            product_parallel(out, input, weight, true);
        }
    }
    dims[D - 1] = d_out;
    Some(Tensor::from_data(
        burn::tensor::TensorData::new(out, dims),
        &x.device(),
    ))
}

/// `out` (rows × cols, row-major) = `transposed` (cols × rows, row-major)ᵀ plus `bias` on every
/// row, in parallel over bands of rows.
fn transpose_adding(
    transposed: &[f32],
    rows: usize,
    cols: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    const BAND: usize = 16;
    out[..rows * cols]
        .par_chunks_mut((BAND * cols).max(1))
        .enumerate()
        .for_each(|(band, out)| {
            let first = band * BAND;
            let count = out.len() / cols.max(1);
            for c in 0..cols {
                let b = bias.map_or(0.0, |b| b[c]);
                let column = &transposed[c * rows + first..][..count];
                for (r, &value) in column.iter().enumerate() {
                    out[r * cols + c] = value + b;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The host path computes what burn's `Linear::forward` does, with and without a bias, on
    /// 2-D and 3-D inputs, few rows and many, with a weight as burn lays it out and with one
    /// seen transposed. Bound 1e-5 relative: sums of d_in ≤ 320 products
    /// of O(1) terms in another order.
    #[test]
    fn linear_equals_burns_forward() {
        let device = Device::flex();
        for (bias, d_in, d_out, shape) in [
            (true, 320, 200, [2, 77]),
            (false, 64, 1000, [1, 3]),
            (true, 64, 1000, [2, 40]),
            (true, 96, 96, [4, 300]),
        ] {
            let mut layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            if shape == [2, 40] {
                // A weight kept in PyTorch's (out, in) layout, seen as (in, out)
                // (`LinearLayout::StoredView`): the transposed-product path.
                let stored = Tensor::<2>::random([d_out, d_in], Distribution::Default, &device);
                layer.weight = burn::module::Param::from_tensor(stored.swap_dims(0, 1));
            }
            let x = Tensor::<3>::random(
                [shape[0], shape[1], d_in],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            // The comparison is only worth something if the host path ran.
            #[cfg(feature = "flex")]
            assert!(on_host(&layer, &x).is_some(), "the host path did not apply");
            let ours = linear(&layer, x.clone());
            let reference = layer.forward(x.clone());
            assert_eq!(ours.dims(), reference.dims());
            let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
            let err = (ours - reference).abs().max().into_scalar::<f32>();
            assert!(
                err <= 1e-5 * scale,
                "{d_in}->{d_out}: error {err} (scale {scale})"
            );
            // A transposed view, as the UNet's attention feeds its feature maps.
            let transposed = Tensor::<3>::random(
                [shape[0], d_in, shape[1]],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
            .swap_dims(1, 2);
            #[cfg(feature = "flex")]
            assert!(on_host(&layer, &transposed).is_some());
            let err = (linear(&layer, transposed.clone()) - layer.forward(transposed))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(err <= 1e-5 * scale, "view {d_in}->{d_out}: error {err}");
            let flat = x.reshape([shape[0] * shape[1], d_in]);
            let err = (linear(&layer, flat.clone()) - layer.forward(flat))
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(err <= 1e-5 * scale, "2-D {d_in}->{d_out}: error {err}");
        }
    }
}
