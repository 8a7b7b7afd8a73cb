//! The encoders on a device whose float dtype is f16 or bf16, shared by `f16_device.rs` and
//! `bf16_device.rs` (one test binary per dtype: a device's dtype is fixed for the process):
//! CLIP text (gelu, bigG style), CLIP vision and the MultilingualCLIP, f32 weights cast on
//! load, against the f32 reference outputs.
//!
//! Bound: max |ours − reference| ≤ ROUNDING_LAYERS · u · max(1, max |reference|), u the
//! dtype's unit roundoff: the small encoders' longest paths pass ~25 rounding layers
//! (embeddings, 2 blocks of norm/attention/MLP, final norm, projection, pooling), about 25 u in
//! the worst case, bounded with margin by 41 u (f16: 2.0e-2, bf16: 0.16).

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use kandinsky_clip::{ClipTextModel, ClipVisionModel, MultilingualClip};
use kandinsky_common::tensors::{ToHost, read_safetensors};
use kandinsky_testing::{assert_close, fixtures_dir, half_device, unit_roundoff};

/// Rounding layers on the encoders' longest paths, with margin (see the module docs).
const ROUNDING_LAYERS: f32 = 41.0;

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn reference(name: &str) -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join(name).join("reference.safetensors")).unwrap()
}

fn ints(data: &TensorData, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(data.clone().convert::<i64>(), device)
}

fn check(dtype: FloatDType, name: &str, out: Tensor<2>, expected: &TensorData) {
    assert_eq!(
        out.dtype(),
        DType::from(dtype),
        "{name}: computed in {dtype:?}"
    );
    let tolerance = ROUNDING_LAYERS * unit_roundoff(dtype);
    assert_close(
        &format!("{name} {dtype:?}"),
        out.to_host(),
        expected,
        tolerance,
    );
}

pub fn run(dtype: FloatDType) {
    let Some(device) = half_device(dtype) else {
        return;
    };

    let r = reference("clip_text_g");
    let text = ClipTextModel::load(&fixtures().join("clip_text_g/text_encoder"), &device).unwrap();
    let out = text.forward(ints(&r["input_ids"], &device)).unwrap();
    check(
        dtype,
        "clip text_embeds",
        out.text_embeds,
        &r["text_embeds"],
    );

    let r = reference("clip_vision");
    let vision =
        ClipVisionModel::load(&fixtures().join("clip_vision/image_encoder"), &device).unwrap();
    let out = vision
        .forward(Tensor::from_data(r["pixel_values"].clone(), &device))
        .unwrap();
    check(
        dtype,
        "clip image_embeds",
        out.image_embeds,
        &r["image_embeds"],
    );

    let r = reference("mclip");
    let mclip = MultilingualClip::load(&fixtures().join("mclip/text_encoder"), &device).unwrap();
    let out = mclip
        .forward(
            ints(&r["input_ids"], &device),
            ints(&r["attention_mask"], &device).equal_elem(1),
        )
        .unwrap();
    check(dtype, "mclip pooled", out.pooled, &r["pooled"]);
}
