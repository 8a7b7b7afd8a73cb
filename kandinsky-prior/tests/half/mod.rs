//! The prior on a device whose float dtype is f16 or bf16, shared by `f16_device.rs` and
//! `bf16_device.rs` (one test binary per dtype: a device's dtype is fixed for the process).
//!
//! Weights and activations are in the device dtype; the timestep features are computed in f32
//! and cast (as in the reference), LayerNorm statistics and the attention softmax accumulate
//! in f32. Bound: max |ours − reference| ≤ ROUNDING_LAYERS · u · max(1, max |reference|), u
//! the dtype's unit roundoff: the path has ~15 rounding layers (projections, 2 × (norm,
//! attention, feed-forward), output), bounded with some margin by 20 u (f16: 9.8e-3, bf16:
//! 7.8e-2).

use burn::tensor::{Bool, DType, FloatDType, Int, Tensor};
use kandinsky_common::tensors::{ToHost, f32_tensor, read_safetensors};
use kandinsky_prior::{PriorTransformer, WEIGHTS_FP16, WEIGHTS_FP32};
use kandinsky_testing::{assert_close, fixtures_dir, half_device, unit_roundoff};

/// Rounding layers on the prior's path, with margin (see the module docs).
const ROUNDING_LAYERS: f32 = 20.0;

pub fn run(dtype: FloatDType) {
    let Some(device) = half_device(dtype) else {
        return;
    };
    let tolerance = ROUNDING_LAYERS * unit_roundoff(dtype);
    let dir = fixtures_dir().join("prior");
    let r = read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let t2 = |k: &str| Tensor::<2>::from_data(r[k].clone(), &device);
    for (file, expected) in [
        (WEIGHTS_FP16, "output_fp16_weights"),
        (WEIGHTS_FP32, "output"),
    ] {
        let prior = PriorTransformer::load_files(
            &dir.join("prior/config.json"),
            &dir.join("prior").join(file),
            &device,
        )
        .unwrap();
        let mask: Tensor<2, Bool> =
            Tensor::<2, Int>::from_data(r["attention_mask"].clone().convert::<i64>(), &device)
                .equal_elem(1);
        let out = prior
            .forward(
                t2("hidden_states"),
                f32_tensor::<1>(r["timestep"].clone(), &device),
                t2("proj_embedding"),
                Tensor::from_data(r["encoder_hidden_states"].clone(), &device),
                mask,
            )
            .unwrap();
        assert_eq!(
            out.dtype(),
            DType::from(dtype),
            "{file}: computed in {dtype:?}"
        );
        assert_close(
            &format!("{file} {dtype:?}"),
            out.to_host(),
            &r[expected],
            tolerance,
        );
    }
}
