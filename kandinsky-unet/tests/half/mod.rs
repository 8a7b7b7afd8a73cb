//! The UNet on a device whose float dtype is f16 or bf16, shared by `f16_device.rs` and
//! `bf16_device.rs` (one test binary per dtype: a device's dtype is fixed for the process).
//!
//! Weights (fp16 file, or the fp32 file cast on load) and activations are in the device dtype;
//! the timestep features are computed in f32 and cast (as in the reference), GroupNorm
//! statistics and the attention softmax accumulate in f32. Bound: max |ours − reference| ≤
//! ROUNDING_LAYERS · u · max(1, max |reference|), u the dtype's unit roundoff: the longest path
//! through the small UNet passes ~60 rounding layers (convs, norms, attentions, skips) whose
//! relative errors add up to at most ~60 u (f16: 3.0e-2, bf16: 0.24). Inputs 30× larger than
//! the fixture's must still give finite values.

use burn::tensor::{DType, FloatDType, Tensor};
use kandinsky_common::tensors::{ToHost, f32_tensor, read_safetensors};
use kandinsky_testing::{assert_close, fixtures_dir, half_device, unit_roundoff};
use kandinsky_unet::{Conditioning, UNet, WEIGHTS_FP16, WEIGHTS_FP32};

/// Rounding layers on the longest path of the small UNet (see the module docs).
const ROUNDING_LAYERS: f32 = 61.0;

pub fn run(dtype: FloatDType) {
    let Some(device) = half_device(dtype) else {
        return;
    };
    let tolerance = ROUNDING_LAYERS * unit_roundoff(dtype);
    let dir = fixtures_dir().join("unet_22");
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
                f32_tensor::<1>(r["timestep"].clone(), &device),
                Conditioning::Image {
                    image_embeds: Tensor::from_data(r["image_embeds"].clone(), &device),
                },
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
        // Large activations: a sample and embeddings 30× the fixture's stay finite.
        let out = unet
            .forward(
                Tensor::<4>::from_data(r["sample"].clone(), &device) * 30.0,
                f32_tensor::<1>(r["timestep"].clone(), &device),
                Conditioning::Image {
                    image_embeds: Tensor::<2>::from_data(r["image_embeds"].clone(), &device) * 30.0,
                },
            )
            .unwrap();
        let values = out.to_host().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{file}: large inputs give non-finite values in {dtype:?}"
        );
    }
}
