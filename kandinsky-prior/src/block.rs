//! The prior's transformer block: diffusers `BasicTransformerBlock` with layer norms, self-
//! attention only, and a GELU feed-forward.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use kandinsky_common::activation::gelu;

use crate::attention::Attention;

/// Epsilon of the blocks' LayerNorms (and of `norm_out`).
pub const LAYER_NORM_EPS: f64 = 1e-5;

pub(crate) fn layer_norm(dim: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim)
        .with_epsilon(LAYER_NORM_EPS)
        .init(device)
}

/// diffusers `GELU`: a Linear then the exact (erf) GELU.
#[derive(Module, Debug)]
pub struct GeluProj {
    /// dim → 4·dim.
    pub(crate) proj: Linear,
}

/// One entry of the feed-forward's `net` (a PyTorch `ModuleList`); the variant adds nothing to
/// the weight keys, so the entries are `net.0.proj`, `net.1` (no weights) and `net.2`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum FeedForwardLayer {
    /// `net.0`: Linear + GELU.
    Gelu(GeluProj),
    /// `net.1`: dropout (identity at inference).
    Dropout(Dropout),
    /// `net.2`: Linear 4·dim → dim.
    Out(Linear),
}

/// diffusers `FeedForward` with `activation_fn = "gelu"`: Linear → GELU → Linear.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// The layers, in the checkpoint's numbering.
    pub(crate) net: Vec<FeedForwardLayer>,
}

impl FeedForward {
    /// A `dim → 4·dim → dim` feed-forward.
    pub fn new(dim: usize, device: &Device) -> Self {
        Self {
            net: vec![
                FeedForwardLayer::Gelu(GeluProj {
                    proj: LinearConfig::new(dim, 4 * dim).init(device),
                }),
                FeedForwardLayer::Dropout(DropoutConfig::new(0.0).init()),
                FeedForwardLayer::Out(LinearConfig::new(4 * dim, dim).init(device)),
            ],
        }
    }

    /// (B, L, dim) → (B, L, dim).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.net.iter().fold(x, |x, layer| match layer {
            FeedForwardLayer::Gelu(g) => gelu(kandinsky_common::linear::linear(&g.proj, x)),
            FeedForwardLayer::Dropout(_) => x,
            FeedForwardLayer::Out(layer) => kandinsky_common::linear::linear(layer, x),
        })
    }
}

/// Pre-LN block: `x += attn1(norm1(x))`, then `x += ff(norm3(x))`. (diffusers' `norm2`/`attn2`
/// exist only with cross-attention, which the prior does not use.)
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    /// LayerNorm before the attention.
    pub(crate) norm1: LayerNorm,
    /// Masked self-attention.
    pub(crate) attn1: Attention,
    /// LayerNorm before the feed-forward.
    pub(crate) norm3: LayerNorm,
    /// The feed-forward.
    pub(crate) ff: FeedForward,
}

impl BasicTransformerBlock {
    /// A block of width `dim` with `heads` heads of `head_dim`.
    pub fn new(dim: usize, heads: usize, head_dim: usize, device: &Device) -> Self {
        Self {
            norm1: layer_norm(dim, device),
            attn1: Attention::new(dim, heads, head_dim, device),
            norm3: layer_norm(dim, device),
            ff: FeedForward::new(dim, device),
        }
    }

    /// Applies the block to `x` (B, L, dim) with the attention mask (see [`Attention::forward`]).
    pub fn forward(
        &self,
        x: Tensor<3>,
        masked: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let x = self
            .attn1
            .forward(self.norm1.forward(x.clone()), masked, causal)
            + x;
        self.feed_forward(x)
    }

    /// [`forward`](Self::forward), also returning the keys and values the block's attention
    /// made of `x`'s tokens (see [`Attention::forward_keeping`]).
    pub fn forward_keeping(
        &self,
        x: Tensor<3>,
        masked: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let (attended, k, v) =
            self.attn1
                .forward_keeping(self.norm1.forward(x.clone()), masked, causal);
        (self.feed_forward(attended + x), k, v)
    }

    /// The keys and values the block's attention makes of `x`'s tokens, without the rest of the
    /// block.
    pub fn keys_values(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        self.attn1.keys_values(self.norm1.forward(x))
    }

    /// Applies the block to `x` (B, L, dim), tokens that come after those whose keys and
    /// values `past` holds (see [`Attention::forward_after`]).
    pub fn forward_after(
        &self,
        x: Tensor<3>,
        past: (&Tensor<4>, &Tensor<4>),
        masked: Tensor<4, Bool>,
    ) -> Tensor<3> {
        let x = self
            .attn1
            .forward_after(self.norm1.forward(x.clone()), past, masked)
            + x;
        self.feed_forward(x)
    }

    /// `x + ff(norm3(x))`.
    fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }
}
