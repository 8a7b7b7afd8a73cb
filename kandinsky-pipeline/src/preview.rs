//! Low-cost previews of a generation in progress: the decoder's latents (or its estimate of the
//! clean latents, x̂₀) mapped to colours by one linear map per pixel, instead of a MoVQ decode.
//!
//! The map (latent channels + 1 → RGB) is fitted once per decoder by least squares: a fixed
//! seeded batch of standard-normal latents is decoded by that decoder's own MoVQ, its output
//! averaged over each latent pixel's block, and the linear map closest to it solved for. A
//! preview is therefore a blurry, colour-approximate picture at the latent resolution (64×64
//! for a 512² image), costing one small matrix product instead of a decode (which takes longer
//! than a UNet step on a CPU).

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_movq::MoVQ;

use crate::error::PipelineError;
use crate::image::{Image, to_images};
use crate::rng::{Rng, draw};

/// The side of the latents the map is fitted on (its square is the number of samples per
/// image of the fit).
const FIT_SIDE: usize = 16;
/// The images of the fit.
const FIT_BATCH: usize = 2;

/// A linear map from latent channels to colours in about [−1, 1]: `rgb = W·latent + b`.
#[derive(Debug, Clone)]
pub struct LatentPreview {
    /// (3, C): the weights.
    weights: Tensor<2>,
    /// (3, 1): the bias.
    bias: Tensor<2>,
    channels: usize,
}

impl LatentPreview {
    /// Fits the map to `movq` (see the module documentation).
    pub fn fit(movq: &MoVQ, device: &Device) -> Result<Self, PipelineError> {
        let c = movq.config().latent_channels;
        let mut rng = Rng::new(0x5eed_c0de);
        let shape = [FIT_BATCH, c, FIT_SIDE, FIT_SIDE];
        let latents: Tensor<4> = draw(&mut rng, shape, device)?;
        let pixels = movq.decode(latents.clone(), true)?;
        let [_, _, height, width] = pixels.dims();
        let factor = height / FIT_SIDE;
        if factor == 0 || height != FIT_SIDE * factor || width != FIT_SIDE * factor {
            return Err(PipelineError::shape(
                "MoVQ output of the preview fit",
                &pixels.dims(),
                &[
                    FIT_BATCH,
                    3,
                    FIT_SIDE * factor.max(1),
                    FIT_SIDE * factor.max(1),
                ],
            ));
        }
        // Each latent pixel's block of output pixels, averaged.
        let (s, f) = (FIT_SIDE, factor);
        let blocks: Tensor<4> = pixels
            .reshape([FIT_BATCH, 3, s, f, s, f])
            .mean_dim(5)
            .mean_dim(3)
            .reshape([FIT_BATCH, 3, s, s]);
        let host = |t: Tensor<4>| -> Result<Vec<f32>, PipelineError> {
            t.permute([1, 0, 2, 3])
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| PipelineError::Device(format!("{e:?}")))
        };
        // Channel-major: x[k][n] for the n-th sample.
        let x = host(latents)?;
        let y = host(blocks)?;
        let n = FIT_BATCH * FIT_SIDE * FIT_SIDE;
        let (weights, bias) = least_squares(&x, &y, c, n)
            .ok_or_else(|| PipelineError::Device("the preview fit is singular".into()))?;
        Ok(Self {
            weights: Tensor::from_data(TensorData::new(weights, [3, c]), device),
            bias: Tensor::from_data(TensorData::new(bias, [3, 1]), device),
            channels: c,
        })
    }

    /// The preview of the first image of `latents` (B, C, h, w): an h × w image.
    pub fn image(&self, latents: &Tensor<4>) -> Result<Image, PipelineError> {
        let [b, c, h, w] = latents.dims();
        if b == 0 || c != self.channels {
            return Err(PipelineError::shape(
                "latents to preview",
                &[b, c, h, w],
                &[1, self.channels, h, w],
            ));
        }
        let first = latents
            .clone()
            .slice([0..1, 0..c, 0..h, 0..w])
            .reshape([c, h * w]);
        let weights = self.weights.clone().cast(first.dtype());
        let bias = self.bias.clone().cast(first.dtype());
        let rgb = (weights.matmul(first) + bias).reshape([1, 3, h, w]);
        to_images(rgb)?
            .pop()
            .ok_or_else(|| PipelineError::Device("no preview image".into()))
    }
}

/// Solves min ‖W·x + b − y‖² over the `n` samples of `x` (`c` rows) and `y` (3 rows), both
/// row-major by channel; `None` when the normal equations are singular.
fn least_squares(x: &[f32], y: &[f32], c: usize, n: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    let k = c + 1;
    // The design row of sample s: x[0][s], …, x[c−1][s], 1.
    let at = |row: usize, s: usize| {
        if row == c {
            1.0
        } else {
            f64::from(x[row * n + s])
        }
    };
    let mut gram = vec![0.0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            gram[i * k + j] = (0..n).map(|s| at(i, s) * at(j, s)).sum();
        }
    }
    let mut weights = Vec::with_capacity(3 * c);
    let mut bias = Vec::with_capacity(3);
    for colour in 0..3 {
        let rhs: Vec<f64> = (0..k)
            .map(|i| {
                (0..n)
                    .map(|s| at(i, s) * f64::from(y[colour * n + s]))
                    .sum()
            })
            .collect();
        let solution = solve(gram.clone(), rhs, k)?;
        weights.extend(solution[..c].iter().map(|&v| v as f32));
        bias.push(solution[c] as f32);
    }
    Some((weights, bias))
}

/// Gaussian elimination with partial pivoting on a `k` × `k` system.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, k: usize) -> Option<Vec<f64>> {
    for col in 0..k {
        let pivot =
            (col..k).max_by(|&p, &q| a[p * k + col].abs().total_cmp(&a[q * k + col].abs()))?;
        if a[pivot * k + col].abs() < 1e-12 {
            return None;
        }
        for j in 0..k {
            a.swap(col * k + j, pivot * k + j);
        }
        b.swap(col, pivot);
        for row in col + 1..k {
            let f = a[row * k + col] / a[col * k + col];
            for j in col..k {
                a[row * k + j] -= f * a[col * k + j];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; k];
    for row in (0..k).rev() {
        let rest: f64 = (row + 1..k).map(|j| a[row * k + j] * x[j]).sum();
        x[row] = (b[row] - rest) / a[row * k + row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_an_exact_linear_map() {
        // y = W x + b with W = [[1, 2], [−1, 0.5], [0, 3]], b = [0.25, −1, 2].
        let (c, n) = (2, 7);
        let x: Vec<f32> = (0..c * n)
            .map(|i| ((i * 37 % 11) as f32) / 5.0 - 1.0)
            .collect();
        let w = [[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]];
        let b = [0.25, -1.0, 2.0];
        let mut y = vec![0.0f32; 3 * n];
        for colour in 0..3 {
            for s in 0..n {
                y[colour * n + s] = w[colour][0] * x[s] + w[colour][1] * x[n + s] + b[colour];
            }
        }
        let (weights, bias) = least_squares(&x, &y, c, n).unwrap();
        for colour in 0..3 {
            for k in 0..c {
                assert!((weights[colour * c + k] - w[colour][k]).abs() < 1e-5);
            }
            assert!((bias[colour] - b[colour]).abs() < 1e-5);
        }
    }

    #[test]
    fn a_constant_input_is_singular() {
        assert!(least_squares(&[1.0; 8], &[0.0; 12], 2, 4).is_none());
    }
}
