//! Layers shared by the UNet and the prior: the sinusoidal timestep features (diffusers
//! `Timesteps` / `get_timestep_embedding`) and the MLP over them (`TimestepEmbedding`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Int, Tensor};

/// Sinusoidal timestep features (diffusers `get_timestep_embedding`), computed in f32 whatever
/// the model's dtype (as the reference does: a timestep near 1000 times a frequency near 1
/// needs f32 to keep the phase), then cast to `dtype`.
///
/// Feature `i` < `dim/2` has frequency `exp(−ln(10000)·i / (dim/2 − shift))`; the output is
/// `[cos, sin]` when `flip_sin_to_cos`, else `[sin, cos]`. The operations follow the
/// reference's order so that the f32 rounding is the same.
pub fn timestep_features(
    timesteps: Tensor<1>,
    dim: usize,
    flip_sin_to_cos: bool,
    shift: f64,
    dtype: DType,
) -> Tensor<2> {
    let half = dim / 2;
    let device = timesteps.device();
    let exponent = Tensor::<1, Int>::arange(0..half as i64, &device)
        .float()
        .cast(DType::F32)
        * (-(10000f32.ln()));
    let frequencies = (exponent / (half as f32 - shift as f32)).exp();
    let phases = timesteps.cast(DType::F32).unsqueeze_dim::<2>(1) * frequencies.unsqueeze_dim(0);
    let (sin, cos) = (phases.clone().sin(), phases.cos());
    let features = if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    };
    features.cast(dtype)
}

/// diffusers `TimestepEmbedding` (`time_embedding` of the UNet and of the prior): Linear → SiLU
/// → Linear over the timestep features.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    /// timestep features → hidden width.
    pub linear_1: Linear,
    /// hidden width → output width.
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    /// A `features → hidden → out` embedding.
    pub fn new(features: usize, hidden: usize, out: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(features, hidden).init(device),
            linear_2: LinearConfig::new(hidden, out).init(device),
        }
    }

    /// (B, features) → (B, out).
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(features)))
    }
}
