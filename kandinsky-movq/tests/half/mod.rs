//! The MoVQ on a device whose float dtype is f16 or bf16, shared by `f16_device.rs` and
//! `bf16_device.rs` (one test binary per dtype: a device's dtype is fixed for the process).
//!
//! Weights (fp16 file, or the fp32 file cast on load) and activations are in the device dtype;
//! GroupNorm statistics are accumulated in f32 by burn. Bound: max |ours − reference| ≤
//! ROUNDING_LAYERS · u · max(1, max |reference|), u the dtype's unit roundoff: each of the ~30
//! layers on the path rounds its output once more and their errors add up, roughly 30 u in the
//! worst case, bounded with margin by 41 u (f16: 2.0e-2, bf16: 0.16). Latents 40× larger than
//! the fixture's must still decode to finite values.

use burn::tensor::{DType, FloatDType, Tensor};
use kandinsky_common::tensors::{ToHost, read_safetensors};
use kandinsky_movq::{MoVQ, WEIGHTS_FP16, WEIGHTS_FP32};
use kandinsky_testing::{assert_close, fixtures_dir, half_device, unit_roundoff};

/// Rounding layers on the longest path of the small MoVQ, with margin (see the module docs).
const ROUNDING_LAYERS: f32 = 41.0;

pub fn run(dtype: FloatDType) {
    let Some(device) = half_device(dtype) else {
        return;
    };
    let tolerance = ROUNDING_LAYERS * unit_roundoff(dtype);
    let fixtures = fixtures_dir().join("movq");
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
            assert_eq!(
                out.dtype(),
                DType::from(dtype),
                "{file}: {name} computed in {dtype:?}"
            );
            assert_close(
                &format!("{file} {name} {dtype:?}"),
                out.to_host(),
                &reference[expected],
                tolerance,
            );
        }
        // Large activations: latents 40× the fixture's (|z| up to ~60, beyond what the real
        // MoVQ produces) decode to finite values: GroupNorm statistics and the attention
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
            "{file}: large latents decode to non-finite values in {dtype:?}"
        );
    }
}
