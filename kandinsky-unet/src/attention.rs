//! Added-KV cross-attention: diffusers `Attention` with `AttnAddedKVProcessor2_0`, as built by
//! the SimpleCrossAttn blocks.

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kandinsky_common::attention::attention;
use kandinsky_common::linear::linear;

/// Epsilon of the attention's GroupNorm (diffusers' `Attention` default; the blocks do not pass
/// the UNet's `norm_eps`).
pub const ATTENTION_NORM_EPS: f64 = 1e-5;

/// Attention of the H·W positions of a feature map over the context tokens followed by the
/// positions themselves:
///
/// 1. `xn = group_norm(x)` flattened to (B, HW, C); `Q = to_q(xn)`.
/// 2. `K = [add_k_proj(ctx) ; to_k(xn)]`, `V = [add_v_proj(ctx) ; to_v(xn)]` along the sequence
///    (context first).
/// 3. Multi-head softmax(Q Kᵀ / √d) V with head size `d`, `to_out.0`, plus the input.
///
/// No mask (the Kandinsky pipelines pass none). The product goes through burn's fused
/// `attention` op, so GPU backends get their flash kernel; its softmax accumulates in f32
/// (flex casts f16/bf16 inputs to f32 for it).
#[derive(Module, Debug)]
pub struct Attention {
    /// GroupNorm over the feature map (query and self keys/values only).
    pub(crate) group_norm: GroupNorm,
    /// Query projection, C → C.
    pub(crate) to_q: Linear,
    /// Self key projection, C → C.
    pub(crate) to_k: Linear,
    /// Self value projection, C → C.
    pub(crate) to_v: Linear,
    /// Context key projection, cross-attention width → C.
    pub(crate) add_k_proj: Linear,
    /// Context value projection, cross-attention width → C.
    pub(crate) add_v_proj: Linear,
    /// Output projection (`to_out.0`; index 1 is a dropout in diffusers).
    pub(crate) to_out: Vec<Linear>,
    #[module(skip)]
    heads: usize,
}

impl Attention {
    /// An attention over `channels` features with heads of `head_dim`, context tokens of width
    /// `context_dim`, GroupNorm with `groups` groups.
    pub fn new(
        channels: usize,
        head_dim: usize,
        context_dim: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        Self {
            group_norm: GroupNormConfig::new(groups, channels)
                .with_epsilon(ATTENTION_NORM_EPS)
                .init(device),
            to_q: linear(channels, channels),
            to_k: linear(channels, channels),
            to_v: linear(channels, channels),
            add_k_proj: linear(context_dim, channels),
            add_v_proj: linear(context_dim, channels),
            to_out: vec![linear(channels, channels)],
            heads: channels / head_dim,
        }
    }

    /// (B, L, C) → (B, heads, L, C / heads).
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, l, c] = x.dims();
        x.reshape([b, l, self.heads, c / self.heads])
            .swap_dims(1, 2)
    }

    /// Applies the block to `x` (B, C, H, W) with context `context` (B, L, cross-attention width).
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let hidden = self
            .group_norm
            .forward(x.clone().reshape([b, c, h * w]))
            .swap_dims(1, 2); // (B, HW, C)
        let q = self.split_heads(linear(&self.to_q, hidden.clone()));
        let k = Tensor::cat(
            vec![
                self.split_heads(linear(&self.add_k_proj, context.clone())),
                self.split_heads(linear(&self.to_k, hidden.clone())),
            ],
            2,
        );
        let v = Tensor::cat(
            vec![
                self.split_heads(linear(&self.add_v_proj, context.clone())),
                self.split_heads(linear(&self.to_v, hidden)),
            ],
            2,
        );
        let out = attention(q, k, v);
        let out = out.swap_dims(1, 2).reshape([b, h * w, c]);
        let out = linear(&self.to_out[0], out);
        out.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}
