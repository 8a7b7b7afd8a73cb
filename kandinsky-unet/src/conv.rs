//! The 3×3 convolution (stride 1, padding 1) of the resnets, with a path for small feature maps.
//!
//! For maps of at most [`SMALL_MAP`] positions (the two deepest levels of the published UNet,
//! 16×16 and 8×8 for a 64×64 latent) the convolution is computed as one matrix product: the
//! nine shifted copies of the padded input are stacked next to each channel, giving a
//! (B, 9·C_in, H·W) matrix whose row order (channel-major, tap-minor) is exactly the order of
//! the checkpoint's (C_out, C_in, 3, 3) weight, so the weight is used as stored, reshaped to
//! (C_out, 9·C_in) without a copy. On burn's CPU backend this runs 1.4–3x faster than its
//! direct convolution at these sizes, whose per-call re-layout of the (large, at these levels)
//! weight dominates when there are few positions; on GPUs both are a single GEMM-like kernel.
//! Larger maps use burn's `conv2d`, which tiles its im2col instead of materialising nine
//! copies of the input.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

/// A 3×3 convolution with stride 1 and padding 1 (every 3×3 conv of the UNet except the
/// ControlNet hint encoder's strided ones).
pub fn new_conv3x3(inp: usize, out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([inp, out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Feature maps of at most this many positions take the matrix-product path.
pub const SMALL_MAP: usize = 16 * 16;

/// Applies `conv`, a 3×3 convolution with stride 1 and padding 1, to `x` (B, C_in, H, W).
pub fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [b, c_in, h, w] = x.dims();
    if h * w > SMALL_MAP {
        return conv.forward(x);
    }
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
    let out = weight.reshape([1, c_out, 9 * c_in]).matmul(columns);
    let out = match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, c_out, 1]),
        None => out,
    };
    out.reshape([b, c_out, h, w])
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The matrix-product path computes the same convolution as burn's `conv2d` (which the
    /// larger maps use): the parity fixtures, whose maps are all small, check it against the
    /// reference; this checks it against the other path. Bound 1e-5 relative: the two sum the
    /// same 9·C_in products of O(1) terms in different orders, f32 rounding ~C_in·6e-8.
    #[test]
    fn small_map_path_equals_conv2d() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([24, 40], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([2, 24, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let ours = conv3x3(&conv, x.clone());
        let reference = conv.forward(x);
        let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
        let err = (ours - reference).abs().max().into_scalar::<f32>();
        assert!(err <= 1e-5 * scale, "max abs error {err} (scale {scale})");
    }
}
