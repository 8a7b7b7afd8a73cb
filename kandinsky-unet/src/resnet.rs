//! diffusers `ResnetBlock2D` as the Kandinsky UNet uses it: GroupNorm, scale-shift time
//! conditioning, and resnet-based down/up sampling (average pooling / nearest ×2 applied to
//! both the residual and the hidden path).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::module::{avg_pool2d, interpolate};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use kandinsky_common::norm::{After, group_norm_then};

use kandinsky_common::conv::{conv3x3, new_conv3x3};

/// Resampling done inside a resnet (diffusers `down=True` / `up=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// Same size.
    None,
    /// 2×2 average pooling, stride 2 (sizes floor).
    Down,
    /// Nearest-neighbour ×2.
    Up,
}

/// Sizes of the norms and of the time embedding a resnet is built with.
#[derive(Debug, Clone, Copy)]
pub struct ResnetSizes {
    /// GroupNorm groups.
    pub groups: usize,
    /// GroupNorm epsilon.
    pub eps: f64,
    /// Width of the time embedding.
    pub time: usize,
}

/// norm1 → SiLU → resample → conv1 → norm2·(1 + scale) + shift → SiLU → conv2, plus the
/// (resampled, 1×1-projected when the width changes) input. `(scale, shift)` come from
/// `time_emb_proj(SiLU(emb))`.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    /// First norm, over the input.
    pub(crate) norm1: GroupNorm,
    /// 3×3 conv, in → out.
    pub(crate) conv1: Conv2d,
    /// time embedding → 2·out (scale, then shift).
    pub(crate) time_emb_proj: Linear,
    /// Second norm.
    pub(crate) norm2: GroupNorm,
    /// 3×3 conv, out → out.
    pub(crate) conv2: Conv2d,
    /// 1×1 conv on the residual when the width changes.
    pub(crate) conv_shortcut: Option<Conv2d>,
    #[module(skip)]
    resample: Resample,
}

fn resample(x: Tensor<4>, how: Resample) -> Tensor<4> {
    match how {
        Resample::None => x,
        Resample::Down => avg_pool2d(x, AvgPoolOptions::new([2, 2])),
        Resample::Up => {
            let [_, _, h, w] = x.dims();
            let options =
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]);
            interpolate(x, options)
        }
    }
}

impl ResnetBlock2D {
    /// A block from `inp` to `out` channels.
    pub fn new(
        inp: usize,
        out: usize,
        sizes: ResnetSizes,
        resample: Resample,
        device: &Device,
    ) -> Self {
        let norm = |c| {
            GroupNormConfig::new(sizes.groups, c)
                .with_epsilon(sizes.eps)
                .init(device)
        };
        Self {
            norm1: norm(inp),
            conv1: new_conv3x3(inp, out, device),
            time_emb_proj: LinearConfig::new(sizes.time, 2 * out).init(device),
            norm2: norm(out),
            conv2: new_conv3x3(out, out, device),
            conv_shortcut: (inp != out).then(|| Conv2dConfig::new([inp, out], [1, 1]).init(device)),
            resample,
        }
    }

    /// Applies the block to `x` (B, in, H, W); `emb_act` is SiLU(time embedding), (B, time),
    /// computed once per forward pass by the UNet.
    pub fn forward(&self, x: Tensor<4>, emb_act: &Tensor<2>) -> Tensor<4> {
        let h = group_norm_then(
            &self.norm1,
            x.clone(),
            After {
                modulation: None,
                silu: true,
            },
        );
        let (x, h) = (resample(x, self.resample), resample(h, self.resample));
        let h = conv3x3(&self.conv1, h);
        let [b, c, _, _] = h.dims();
        let t = self
            .time_emb_proj
            .forward(emb_act.clone())
            .reshape([b, 2 * c, 1, 1]);
        let scale = t.clone().narrow(1, 0, c) + 1.0;
        let shift = t.narrow(1, c, c);
        // norm2(h)·(1 + scale) + shift, then SiLU: one pass on the CPU.
        let h = group_norm_then(
            &self.norm2,
            h,
            After {
                modulation: Some((&scale, &shift)),
                silu: true,
            },
        );
        let h = conv3x3(&self.conv2, h);
        let residual = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        residual + h
    }
}
