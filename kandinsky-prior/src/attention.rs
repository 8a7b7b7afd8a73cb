//! Masked multi-head self-attention: diffusers `Attention` with `AttnProcessor2_0`, as the
//! prior's transformer blocks build it (bias on every projection, no cross-attention).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::attention as sdpa;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};
use kandinsky_common::linear::linear;

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
        self.forward_keeping(x, masked, causal).0
    }

    /// [`forward`](Self::forward), also returning the keys and values of `x`'s tokens, each
    /// (B, heads, L, head width): what later tokens attend to.
    pub fn forward_keeping(
        &self,
        x: Tensor<3>,
        masked: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let (k, v) = self.keys_values(x.clone());
        let q = self.split_heads(linear(&self.to_q, x));
        let out = self.attend(q, k.clone(), v.clone(), masked, causal);
        (out, k, v)
    }

    /// The keys and values of `x`'s tokens (B, L, dim), each (B, heads, L, head width).
    pub fn keys_values(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        let k = self.split_heads(linear(&self.to_k, x.clone()));
        let v = self.split_heads(linear(&self.to_v, x));
        (k, v)
    }

    /// Attends `x` (B, L, dim) to the tokens before it, whose keys and values `past` holds
    /// (each (B, heads, P, head width)), and to itself: the queries are `x`'s, the keys and
    /// values `past`'s followed by `x`'s. `masked` (B, heads, L, P + L) is true where a query
    /// must not see a key.
    pub fn forward_after(
        &self,
        x: Tensor<3>,
        past: (&Tensor<4>, &Tensor<4>),
        masked: Tensor<4, Bool>,
    ) -> Tensor<3> {
        let (k, v) = self.keys_values(x.clone());
        let q = self.split_heads(linear(&self.to_q, x));
        let k = Tensor::cat(vec![past.0.clone(), k], 2);
        let v = Tensor::cat(vec![past.1.clone(), v], 2);
        self.attend(q, k, v, Some(masked), false)
    }

    /// softmax(Q Kᵀ / √d + mask) V, heads merged, then `to_out.0`: (B, L, dim).
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        masked: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let [b, heads, l, d] = q.dims();
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let out = sdpa(q, k, v, masked, None, options);
        linear(
            &self.to_out[0],
            out.swap_dims(1, 2).reshape([b, l, heads * d]),
        )
    }
}
