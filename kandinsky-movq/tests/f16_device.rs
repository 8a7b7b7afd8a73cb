//! The MoVQ on a device whose float dtype is f16 (its own test binary: a device's dtype is
//! fixed for the whole process once set).
//!
//! Weights (fp16 file, or the fp32 file cast on load) and activations are f16; GroupNorm
//! statistics are accumulated in f32 by burn. Bound: max |ours − reference| ≤ 2e-2 ·
//! max(1, max |reference|). f16 keeps 11 significant bits (unit roundoff 4.9e-4); each of the
//! ~30 layers on the path rounds its output once more and their errors add up, roughly
//! 30 × 4.9e-4 ≈ 1.5e-2 relative in the worst case, which the bound covers. Latents 40× larger
//! than the fixture's must still decode to finite values.

use kandinsky_common::tensors::ToHost;
use kandinsky_common::testing::test_device;
use std::path::PathBuf;

use burn::tensor::{DType, FloatDType, Tensor};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_movq::{MoVQ, WEIGHTS_FP16, WEIGHTS_FP32};

const TOLERANCE: f32 = 2e-2;

#[test]
fn f16_device_decodes_and_encodes_within_the_f16_bound() {
    let mut device = test_device();
    device
        .configure(FloatDType::F16)
        .expect("configure flex for f16 before any tensor exists");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/movq");
    let reference = read_safetensors(&fixtures.join("reference.safetensors")).unwrap();
    for file in [WEIGHTS_FP16, WEIGHTS_FP32] {
        let movq = MoVQ::load_files(
            &fixtures.join("movq/config.json"),
            &fixtures.join("movq").join(file),
            &device,
        )
        .unwrap();
        for (name, out, expected) in [
            (
                "decoded",
                movq.decode(
                    Tensor::<4>::from_data(reference["latents"].clone(), &device),
                    true,
                )
                .unwrap(),
                "decoded",
            ),
            (
                "latents",
                movq.encode(Tensor::<4>::from_data(reference["image"].clone(), &device))
                    .unwrap(),
                "latents",
            ),
        ] {
            assert_eq!(out.dtype(), DType::F16, "{file}: {name} computed in f16");
            let ours = out.to_host().convert::<f32>().try_to_vec::<f32>().unwrap();
            let reference = reference[expected].clone().try_to_vec::<f32>().unwrap();
            let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let err = ours
                .iter()
                .zip(&reference)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            println!("{file} {name}: max abs error {err:.3e} (scale {scale:.3})");
            assert!(
                ours.iter().all(|v| v.is_finite()),
                "{file} {name}: non-finite"
            );
            assert!(
                err <= TOLERANCE * scale,
                "{file} {name}: {err} > {TOLERANCE} x {scale}"
            );
        }
        // Large activations: latents 40× the fixture's (|z| up to ~60, beyond what the real
        // MoVQ produces) decode to finite values in f16: GroupNorm statistics and the attention
        // softmax accumulate in f32, so nothing overflows f16's 65504.
        let large = Tensor::<4>::from_data(reference["latents"].clone(), &device) * 40.0;
        let decoded = movq.decode(large, true).unwrap();
        let values = decoded
            .to_host()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{file}: large latents decode to non-finite values in f16"
        );
    }
}
