//! The CLIP transformer shared by the text and image towers: transformers `CLIPAttention`,
//! `CLIPMLP`, `CLIPEncoderLayer` (pre-LN) and `CLIPEncoder`.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use kandinsky_common::activation::gelu;
use kandinsky_common::attention::{attention, causal_attention};
use kandinsky_common::linear::linear;

use crate::config::HiddenAct;

/// Applies the MLP activation.
pub fn activate(x: Tensor<3>, act: HiddenAct) -> Tensor<3> {
    match act {
        HiddenAct::Gelu => gelu(x),
        HiddenAct::QuickGelu => x.clone() * sigmoid(x * 1.702),
    }
}

pub(crate) fn layer_norm(dim: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim).with_epsilon(eps).init(device)
}

/// Multi-head self-attention, causal (text) or not (vision), through
/// `kandinsky_common::attention` (burn's fused attention op off the CPU backend).
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Key projection.
    pub(crate) k_proj: Linear,
    /// Value projection.
    pub(crate) v_proj: Linear,
    /// Query projection.
    pub(crate) q_proj: Linear,
    /// Output projection.
    pub(crate) out_proj: Linear,
    #[module(skip)]
    heads: usize,
}

impl ClipAttention {
    /// `heads` heads over width `dim`.
    pub fn new(dim: usize, heads: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(dim, dim).init(device);
        Self {
            k_proj: linear(),
            v_proj: linear(),
            q_proj: linear(),
            out_proj: linear(),
            heads,
        }
    }

    fn split(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, l, c] = x.dims();
        x.reshape([b, l, self.heads, c / self.heads])
            .swap_dims(1, 2)
    }

    /// (B, L, dim) → (B, L, dim); scale 1/√(head width).
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, l, c] = x.dims();
        let q = self.split(linear(&self.q_proj, x.clone()));
        let k = self.split(linear(&self.k_proj, x.clone()));
        let v = self.split(linear(&self.v_proj, x));
        let out = if causal {
            causal_attention(q, k, v)
        } else {
            attention(q, k, v)
        };
        linear(&self.out_proj, out.swap_dims(1, 2).reshape([b, l, c]))
    }
}

/// fc1 → activation → fc2.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// dim → intermediate.
    pub(crate) fc1: Linear,
    /// intermediate → dim.
    pub(crate) fc2: Linear,
    #[module(skip)]
    act: HiddenAct,
}

impl ClipMlp {
    /// `dim → intermediate → dim` with `act`.
    pub fn new(dim: usize, intermediate: usize, act: HiddenAct, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(dim, intermediate).init(device),
            fc2: LinearConfig::new(intermediate, dim).init(device),
            act,
        }
    }

    /// (B, L, dim) → (B, L, dim).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(&self.fc2, activate(linear(&self.fc1, x), self.act))
    }
}

/// `x += self_attn(layer_norm1(x))`, then `x += mlp(layer_norm2(x))`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Self-attention.
    pub(crate) self_attn: ClipAttention,
    /// LayerNorm before the attention.
    pub(crate) layer_norm1: LayerNorm,
    /// The MLP.
    pub(crate) mlp: ClipMlp,
    /// LayerNorm before the MLP.
    pub(crate) layer_norm2: LayerNorm,
}

/// The sizes of a CLIP transformer.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSizes {
    /// Width.
    pub(crate) dim: usize,
    /// MLP width.
    pub(crate) intermediate: usize,
    /// Attention heads.
    pub(crate) heads: usize,
    /// Layers.
    pub(crate) layers: usize,
    /// MLP activation.
    pub(crate) act: HiddenAct,
    /// LayerNorm epsilon.
    pub(crate) eps: f64,
}

/// The stack of encoder layers (`encoder.layers`).
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The layers.
    pub(crate) layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    /// A transformer of the given sizes.
    pub fn new(s: EncoderSizes, device: &Device) -> Self {
        let layer = || ClipEncoderLayer {
            self_attn: ClipAttention::new(s.dim, s.heads, device),
            layer_norm1: layer_norm(s.dim, s.eps, device),
            mlp: ClipMlp::new(s.dim, s.intermediate, s.act, device),
            layer_norm2: layer_norm(s.dim, s.eps, device),
        };
        Self {
            layers: (0..s.layers).map(|_| layer()).collect(),
        }
    }

    /// Runs the layers, passing each output to `each(index, output)`.
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        causal: bool,
        each: &mut dyn FnMut(usize, &Tensor<3>),
    ) -> Tensor<3> {
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer
                .self_attn
                .forward(layer.layer_norm1.forward(x.clone()), causal);
            x = x + h;
            x = x.clone() + layer.mlp.forward(layer.layer_norm2.forward(x));
            each(i, &x);
        }
        x
    }
}
