//! Tracing of forward passes: every model's `forward_traced` reports its intermediate results,
//! named by the diffusers module path, so that they can be compared with the reference block by
//! block (or timed).

use burn::tensor::Tensor;

use crate::tensors::to_host;

/// An intermediate result reported to a [`Trace`].
#[derive(Debug, Clone, Copy)]
pub enum Activation<'a> {
    /// A (B, C) embedding.
    Vector(&'a Tensor<2>),
    /// A (B, L, C) token sequence.
    Sequence(&'a Tensor<3>),
    /// A (B, C, H, W) feature map.
    Map(&'a Tensor<4>),
}

impl Activation<'_> {
    /// The values, read back into host memory of their own (see [`crate::tensors::to_host`]),
    /// so they may be kept while the forward pass goes on.
    pub fn to_data(&self) -> burn::tensor::TensorData {
        match self {
            Self::Vector(t) => to_host((*t).clone()),
            Self::Sequence(t) => to_host((*t).clone()),
            Self::Map(t) => to_host((*t).clone()),
        }
    }
}

/// Receives `(name, value)` for each traced step of a forward pass; names follow the diffusers
/// module paths (`time_embedding`, `down_blocks.0`, `transformer_blocks.3`, …).
pub type Trace<'a> = &'a mut dyn FnMut(&str, Activation<'_>);
