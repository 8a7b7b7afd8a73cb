//! The UNet on a device whose float dtype is f16 (its own test binary: a device's dtype is fixed
//! for the whole process once set).
//!
//! Weights (fp16 file, or the fp32 file cast on load) and activations are f16; the timestep
//! features are computed in f32 and cast (as in the reference), GroupNorm statistics and the
//! attention softmax accumulate in f32. Bound: max |ours − reference| ≤ 3e-2 ·
//! max(1, max |reference|). f16 keeps 11 significant bits (unit roundoff 4.9e-4); the longest
//! path through the small UNet passes ~60 rounding layers (convs, norms, attentions, skips),
//! whose relative errors add up to at most ~60 × 4.9e-4 ≈ 3e-2. Inputs 30× larger than the
//! fixture's must still give finite values.

use kandinsky_common::tensors::ToHost;
use std::path::PathBuf;

use burn::tensor::{DType, FloatDType, Tensor};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_common::testing::{assert_close, test_device};
use kandinsky_unet::{Conditioning, UNet, WEIGHTS_FP16, WEIGHTS_FP32};

const TOLERANCE: f32 = 3e-2;

#[test]
fn f16_device_runs_within_the_f16_bound() {
    let mut device = test_device();
    device
        .configure(FloatDType::F16)
        .expect("configure flex for f16 before any tensor exists");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/unet_22");
    let r = read_safetensors(&dir.join("reference.safetensors")).unwrap();
    for (file, expected) in [
        (WEIGHTS_FP16, "output_fp16_weights"),
        (WEIGHTS_FP32, "output"),
    ] {
        let unet = UNet::load_files(
            &dir.join("unet/config.json"),
            &dir.join("unet").join(file),
            &device,
        )
        .unwrap();
        let out = unet
            .forward(
                Tensor::from_data(r["sample"].clone(), &device),
                Tensor::from_data(r["timestep"].clone(), &device),
                Conditioning::Image {
                    image_embeds: Tensor::from_data(r["image_embeds"].clone(), &device),
                },
            )
            .unwrap();
        assert_eq!(out.dtype(), DType::F16, "{file}: computed in f16");
        assert_close(
            &format!("{file} f16"),
            out.to_host(),
            &r[expected],
            TOLERANCE,
        );
        // Large activations: a sample and embeddings 30× the fixture's stay finite in f16.
        let out = unet
            .forward(
                Tensor::<4>::from_data(r["sample"].clone(), &device) * 30.0,
                Tensor::from_data(r["timestep"].clone(), &device),
                Conditioning::Image {
                    image_embeds: Tensor::<2>::from_data(r["image_embeds"].clone(), &device) * 30.0,
                },
            )
            .unwrap();
        let values = out.to_host().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{file}: large inputs give non-finite values in f16"
        );
    }
}
