//! Masked multi-head self-attention: diffusers `Attention` with `AttnProcessor2_0`, as the
//! prior's transformer blocks build it (bias on every projection, no cross-attention).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::attention as sdpa;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

/// softmax(Q Kᵀ / √d + mask) V over `heads` heads of width `d`, then `to_out.0`.
///
/// The mask goes to burn's fused attention op as a boolean tensor plus its causal flag (no
/// additive bias built on the host), so GPU backends keep their flash kernel. The reference adds
/// −10000 where this masks with −∞; as every query keeps at least one key (its own prompt's
/// first token), both give exactly zero weight to the masked keys in f32.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub(crate) to_q: Linear,
    /// Key projection.
    pub(crate) to_k: Linear,
    /// Value projection.
    pub(crate) to_v: Linear,
    /// Output projection (`to_out.0`; index 1 is a dropout in diffusers).
    pub(crate) to_out: Vec<Linear>,
    #[module(skip)]
    heads: usize,
}

impl Attention {
    /// `heads` heads of width `head_dim` over tokens of width `dim`.
    pub fn new(dim: usize, heads: usize, head_dim: usize, device: &Device) -> Self {
        let inner = heads * head_dim;
        Self {
            to_q: LinearConfig::new(dim, inner).init(device),
            to_k: LinearConfig::new(dim, inner).init(device),
            to_v: LinearConfig::new(dim, inner).init(device),
            to_out: vec![LinearConfig::new(inner, dim).init(device)],
            heads,
        }
    }

    /// (B, L, inner) → (B, heads, L, head width).
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, l, c] = x.dims();
        x.reshape([b, l, self.heads, c / self.heads])
            .swap_dims(1, 2)
    }

    /// Attends `x` (B, L, dim) to itself. `masked` (B, heads, L, L) is true where a query must
    /// not see a key; `causal` additionally hides every later token.
    pub fn forward(
        &self,
        x: Tensor<3>,
        masked: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let [b, l, _] = x.dims();
        let q = self.split_heads(self.to_q.forward(x.clone()));
        let k = self.split_heads(self.to_k.forward(x.clone()));
        let v = self.split_heads(self.to_v.forward(x));
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let out = sdpa(q, k, v, masked, None, options);
        let inner = out.dims()[1] * out.dims()[3];
        self.to_out[0].forward(out.swap_dims(1, 2).reshape([b, l, inner]))
    }
}
