//! Parity of the encoders with the reference implementation (transformers
//! `CLIPTextModelWithProjection`, `CLIPVisionModelWithProjection`, diffusers'
//! `MultilingualCLIP`), on small random-weight models and fixed inputs written by
//! `tools/reference/reference.py`, every layer's output included.
//!
//! Tolerance: max |ours − reference| ≤ 1e-4 · max(1, max |reference|), in f32: two layers of
//! matrix products, LayerNorms and softmaxes over ≤ 48-term sums (f32 relative precision 6e-8)
//! stay far below it.

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use kandinsky_clip::config::{ClipTextConfig, ClipVisionConfig, MClipConfig};
use kandinsky_clip::{ClipTextModel, ClipVisionModel, MultilingualClip};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_testing::{assert_close, fixtures_dir, test_device};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn reference(name: &str) -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join(name).join("reference.safetensors")).expect("fixture")
}

fn ints(data: &TensorData, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(data.clone().convert::<i64>(), device)
}

fn check_all(traced: Vec<(String, TensorData)>, r: &BTreeMap<String, TensorData>, expected: usize) {
    assert_eq!(traced.len(), expected, "every layer is traced");
    for (name, value) in traced {
        assert_close(&name, value, &r[&name], TOLERANCE);
    }
}

fn text(name: &str) {
    let device = test_device();
    let model = ClipTextModel::load(&fixtures().join(name).join("text_encoder"), &device).unwrap();
    let r = reference(name);
    let mut traced = Vec::new();
    let out = model
        .forward_traced(ints(&r["input_ids"], &device), &mut |n, v| {
            traced.push((n.to_string(), v.to_data()))
        })
        .unwrap();
    check_all(traced, &r, 4);
    assert_close(
        &format!("{name} text_embeds"),
        out.text_embeds.to_host(),
        &r["text_embeds"],
        TOLERANCE,
    );
}

/// ViT-L/14 style: quick_gelu, padded with a low id after the end-of-text token.
#[test]
fn clip_text_quick_gelu_matches_reference() {
    text("clip_text_l");
}

/// ViT-bigG/14 style: gelu, padded with the end-of-text id itself, so the pooled position is the
/// first of several maximal ids.
#[test]
fn clip_text_gelu_padded_with_eot_matches_reference() {
    text("clip_text_g");
}

#[test]
fn clip_vision_matches_reference() {
    let device = test_device();
    let dir = fixtures().join("clip_vision/image_encoder");
    let model = ClipVisionModel::load(&dir, &device).unwrap();
    let r = reference("clip_vision");
    let mut traced = Vec::new();
    let out = model
        .forward_traced(
            Tensor::from_data(r["pixel_values"].clone(), &device),
            &mut |n, v| traced.push((n.to_string(), v.to_data())),
        )
        .unwrap();
    check_all(traced, &r, 4);
    assert_close(
        "last_hidden_state",
        out.last_hidden_state.to_host(),
        &r["last_hidden_state"],
        TOLERANCE,
    );
    assert_close(
        "image_embeds",
        out.image_embeds.to_host(),
        &r["image_embeds"],
        TOLERANCE,
    );
}

#[test]
fn multilingual_clip_matches_reference() {
    let device = test_device();
    let model = MultilingualClip::load(&fixtures().join("mclip/text_encoder"), &device).unwrap();
    let r = reference("mclip");
    let mut traced = Vec::new();
    let out = model
        .forward_traced(
            ints(&r["input_ids"], &device),
            ints(&r["attention_mask"], &device).equal_elem(1),
            &mut |n, v| traced.push((n.to_string(), v.to_data())),
        )
        .unwrap();
    check_all(traced, &r, 3);
    assert_close(
        "hidden_states",
        out.hidden_states.to_host(),
        &r["hidden_states"],
        TOLERANCE,
    );
    assert_close("pooled", out.pooled.to_host(), &r["pooled"], TOLERANCE);
}

fn manifest(name: &str, ours: Vec<kandinsky_common::ExpectedTensor>, params: usize) {
    let text =
        std::fs::read_to_string(fixtures().join("manifests").join(format!("{name}.txt"))).unwrap();
    let manifest = kandinsky_common::manifest::parse_manifest(&text).unwrap();
    let diffs = kandinsky_common::manifest::compare(&ours, &manifest);
    assert!(
        diffs.is_empty(),
        "{name}: {} differences: {diffs:#?}",
        diffs.len()
    );
    let total: usize = ours.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    assert_eq!(total, params, "{name}");
}

/// The real configurations (ViT-L/14 and ViT-bigG/14 text and vision, XLM-R-Large
/// MultilingualCLIP) build modules that expect exactly the reference classes' parameters.
#[test]
fn real_configs_expect_exactly_the_reference_manifests() {
    let device = test_device();
    let path = |name: &str| {
        fixtures()
            .join("manifests")
            .join(format!("{name}.config.json"))
    };
    for (name, params) in [
        ("clip_text_l", 123_650_304usize),
        ("clip_text_g", 694_659_840),
    ] {
        let config = ClipTextConfig::from_file(&path(name)).unwrap();
        manifest(
            name,
            kandinsky_common::expected_tensors(&config.init(&device)),
            params,
        );
    }
    for (name, params) in [
        ("clip_vision_l", 303_966_208usize),
        ("clip_vision_g", 1_844_907_264),
    ] {
        let config = ClipVisionConfig::from_file(&path(name)).unwrap();
        manifest(
            name,
            kandinsky_common::expected_tensors(&config.init(&device)),
            params,
        );
    }
    // The manifest's config uses the MCLIPConfig constructor's argument names; the saved
    // config.json spells them transformerDimensions / numDims.
    let text = std::fs::read_to_string(path("mclip"))
        .unwrap()
        .replace("transformerDimSize", "transformerDimensions")
        .replace("imageDimSize", "numDims");
    let config: MClipConfig = kandinsky_common::config::parse_json(&text, &path("mclip")).unwrap();
    manifest(
        "mclip",
        kandinsky_common::expected_tensors(&config.init(&device)),
        560_677_632,
    );
}
