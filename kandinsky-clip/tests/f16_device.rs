//! The encoders on a device whose float dtype is f16 (their own test binary: a device's dtype
//! is fixed for the whole process once set): CLIP text (gelu, bigG style), CLIP vision and the
//! MultilingualCLIP, f32 weights cast on load, against the f32 reference outputs.
//!
//! Bound: max |ours − reference| ≤ 2e-2 · max(1, max |reference|). f16 keeps 11 significant
//! bits (unit roundoff 4.9e-4); the small encoders' longest paths pass ~25 rounding layers
//! (embeddings, 2 blocks of norm/attention/MLP, final norm, projection, pooling), so about
//! 25 × 4.9e-4 ≈ 1.2e-2 relative in the worst case, which the bound covers.

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use kandinsky_clip::{ClipTextModel, ClipVisionModel, MultilingualClip};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_common::testing::{assert_close, test_device};

const TOLERANCE: f32 = 2e-2;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn reference(name: &str) -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join(name).join("reference.safetensors")).unwrap()
}

fn ints(data: &TensorData, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(data.clone().convert::<i64>(), device)
}

fn check(name: &str, out: Tensor<2>, expected: &TensorData) {
    assert_eq!(out.dtype(), DType::F16, "{name}: computed in f16");
    assert_close(&format!("{name} f16"), out.to_host(), expected, TOLERANCE);
}

#[test]
fn f16_device_encodes_within_the_f16_bound() {
    let mut device = test_device();
    device
        .configure(FloatDType::F16)
        .expect("configure the device for f16 before any tensor exists");

    let r = reference("clip_text_g");
    let text = ClipTextModel::load(&fixtures().join("clip_text_g/text_encoder"), &device).unwrap();
    let out = text.forward(ints(&r["input_ids"], &device)).unwrap();
    check("clip text_embeds", out.text_embeds, &r["text_embeds"]);

    let r = reference("clip_vision");
    let vision =
        ClipVisionModel::load(&fixtures().join("clip_vision/image_encoder"), &device).unwrap();
    let out = vision
        .forward(Tensor::from_data(r["pixel_values"].clone(), &device))
        .unwrap();
    check("clip image_embeds", out.image_embeds, &r["image_embeds"]);

    let r = reference("mclip");
    let mclip = MultilingualClip::load(&fixtures().join("mclip/text_encoder"), &device).unwrap();
    let out = mclip
        .forward(
            ints(&r["input_ids"], &device),
            ints(&r["attention_mask"], &device),
        )
        .unwrap();
    check("mclip pooled", out.pooled, &r["pooled"]);
}
