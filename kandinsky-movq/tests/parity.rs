//! Parity of the MoVQ with the reference implementation (diffusers `VQModel`), on the small
//! random-weight model and the fixed inputs written by `tools/reference/reference.py`.
//!
//! Tolerance: max |ours − reference| ≤ 1e-4 · max(1, max |reference|), in f32. Both sides
//! compute in f32 with different summation orders (im2col + GEMM here, oneDNN/MKL there) through
//! up to ~40 convolutions; f32 has a relative precision of 6e-8, and accumulating over the
//! 9·64-term dot products of ~40 layers stays two orders of magnitude below 1e-4.

use kandinsky_common::tensors::ToHost;
use kandinsky_testing::{fixtures_dir, test_device};
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_movq::{Activation, MoVQ, MoVQConfig, WEIGHTS_FP16, WEIGHTS_FP32};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn reference() -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join("movq/reference.safetensors")).expect("reference fixture")
}

fn tensor(data: &TensorData, device: &Device) -> Tensor<4> {
    Tensor::from_data(data.clone(), device)
}

/// Asserts the bound and returns the max abs error relative to max(1, max|ref|), for reporting.
fn assert_close(name: &str, ours: &Tensor<4>, reference: &TensorData) -> f32 {
    let ours_data = ours.clone().to_host();
    assert_eq!(
        ours_data.shape(),
        reference.shape(),
        "{name}: shape differs from the reference"
    );
    let ours = ours_data.convert::<f32>().try_to_vec::<f32>().unwrap();
    let reference = reference
        .clone()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let max_err = ours
        .iter()
        .zip(&reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        ours.iter().all(|v| v.is_finite()),
        "{name}: non-finite output"
    );
    println!("{name}: max abs error {max_err:.3e} (scale {scale:.3})");
    assert!(
        max_err <= TOLERANCE * scale,
        "{name}: max abs error {max_err:e} exceeds {TOLERANCE:e} x {scale}"
    );
    max_err / scale
}

fn load(device: &Device) -> MoVQ {
    MoVQ::load(&fixtures().join("movq/movq"), device).expect("load the fixture movq")
}

#[test]
fn encode_matches_reference_at_every_block() {
    let device = test_device();
    let movq = load(&device);
    let reference = reference();
    let mut seen = Vec::new();
    let latents = movq
        .encode_traced(tensor(&reference["image"], &device), &mut |name, a| {
            let Activation::Map(t) = a else {
                panic!("{name}: the MoVQ traces feature maps")
            };
            seen.push((format!("encode.{name}"), t.clone()))
        })
        .unwrap();
    assert_eq!(seen.len(), 9, "every encoder block is traced");
    for (name, t) in &seen {
        let expected = reference
            .get(name)
            .unwrap_or_else(|| panic!("no reference for {name}"));
        assert_close(name, t, expected);
    }
    assert_close("latents", &latents, &reference["latents"]);
}

#[test]
fn decode_without_quantization_matches_reference_at_every_block() {
    let device = test_device();
    let movq = load(&device);
    let reference = reference();
    let mut seen = Vec::new();
    let image = movq
        .decode_traced(
            tensor(&reference["latents"], &device),
            true,
            &mut |name, a| {
                let Activation::Map(t) = a else {
                    panic!("{name}: the MoVQ traces feature maps")
                };
                seen.push((format!("decode.{name}"), t.clone()))
            },
        )
        .unwrap();
    assert_eq!(seen.len(), 9, "every decoder block is traced");
    for (name, t) in &seen {
        assert_close(name, t, &reference[name.as_str()]);
    }
    assert_close("decoded", &image, &reference["decoded"]);
}

#[test]
fn quantize_and_decode_with_quantization_match_reference() {
    let device = test_device();
    let movq = load(&device);
    let reference = reference();
    let latents = tensor(&reference["latents"], &device);
    let (quantized, indices): (Tensor<4>, Tensor<3, Int>) = movq.quantize(latents.clone()).unwrap();
    let indices = indices
        .to_host()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let expected = reference["quantize_indices"]
        .clone()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(indices, expected, "codebook indices");
    assert_close("quantized", &quantized, &reference["quantized"]);
    let image = movq.decode(latents, false).unwrap();
    assert_close("decoded_quantized", &image, &reference["decoded_quantized"]);
}

/// The fp16 file loaded onto an f32 device holds exactly the fp16 values widened to f32, which
/// is what the reference's `from_pretrained(variant="fp16", torch_dtype=float32)` computes with:
/// the same f32 bound applies. (Against the fp32 weights the outputs differ by the fp16
/// rounding of the weights, ~1e-3 relative, printed below for information.)
#[test]
fn fp16_weights_on_an_f32_device() {
    let device = test_device();
    let dir = fixtures().join("movq/movq");
    let movq =
        MoVQ::load_files(&dir.join("config.json"), &dir.join(WEIGHTS_FP16), &device).unwrap();
    let reference = reference();
    let latents = movq.encode(tensor(&reference["image"], &device)).unwrap();
    assert_close(
        "latents_fp16_weights",
        &latents,
        &reference["latents_fp16_weights"],
    );
    let image = movq
        .decode(tensor(&reference["latents"], &device), true)
        .unwrap();
    assert_close(
        "decoded_fp16_weights",
        &image,
        &reference["decoded_fp16_weights"],
    );
    let ours = image.to_host().try_to_vec::<f32>().unwrap();
    let fp32 = reference["decoded"].clone().try_to_vec::<f32>().unwrap();
    let diff = ours
        .iter()
        .zip(&fp32)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("fp16 weights vs fp32 weights: max abs difference {diff:.3e}");
    assert!(dir.join(WEIGHTS_FP32).is_file());
}

#[test]
fn real_config_expects_exactly_the_reference_manifest() {
    let manifests = fixtures().join("manifests");
    let config = MoVQConfig::from_file(&manifests.join("movq.config.json")).unwrap();
    assert_eq!(config, MoVQConfig::kandinsky());
    let device = test_device();
    // Lazily initialised: building and listing allocate no weights.
    let movq = config.init(&device);
    let ours = kandinsky_common::expected_tensors(&movq);
    let manifest = kandinsky_common::manifest::parse_manifest(
        &std::fs::read_to_string(manifests.join("movq.txt")).unwrap(),
    )
    .unwrap();
    let diffs = kandinsky_common::manifest::compare(&ours, &manifest);
    assert!(diffs.is_empty(), "{} differences: {diffs:#?}", diffs.len());
    let params: usize = ours.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    assert_eq!(params, 67_832_495);
}
