//! The prior on a device whose float dtype is f16 (its own test binary: a device's dtype is fixed
//! for the whole process once set).
//!
//! Weights and activations are f16; the timestep features are computed in f32 and cast (as in
//! the reference), LayerNorm statistics and the attention softmax accumulate in f32. Bound:
//! max |ours − reference| ≤ 1e-2 · max(1, max |reference|): f16's unit roundoff is 4.9e-4 and
//! the path has ~15 rounding layers (projections, 2 × (norm, attention, feed-forward), output),
//! ~7e-3 relative in the worst case.

use kandinsky_common::tensors::ToHost;
use std::path::PathBuf;

use burn::tensor::{Bool, DType, FloatDType, Int, Tensor};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_common::testing::{assert_close, test_device};
use kandinsky_prior::{PriorTransformer, WEIGHTS_FP16, WEIGHTS_FP32};

#[test]
fn f16_device_runs_within_the_f16_bound() {
    let mut device = test_device();
    device
        .configure(FloatDType::F16)
        .expect("configure flex for f16 before any tensor exists");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/prior");
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
                Tensor::from_data(r["timestep"].clone(), &device),
                t2("proj_embedding"),
                Tensor::from_data(r["encoder_hidden_states"].clone(), &device),
                mask,
            )
            .unwrap();
        assert_eq!(out.dtype(), DType::F16, "{file}: computed in f16");
        assert_close(&format!("{file} f16"), out.to_host(), &r[expected], 1e-2);
    }
}
