//! Parity of the prior with the reference implementation (diffusers `PriorTransformer`), on the
//! small random-weight model and fixed inputs written by `tools/reference/reference.py`: batch 2
//! with different timesteps, one prompt padded (5 of 9 tokens) and one full.
//!
//! Tolerance: max |ours − reference| ≤ 1e-4 · max(1, max |reference|), in f32, for every traced
//! intermediate and the output. Both sides compute in f32 through ~16 matrix products and
//! LayerNorms with different summation orders (f32 relative precision 6e-8, sums of ≤ 96
//! terms); the masked keys get exactly zero weight on both sides (−10000 there, −∞ here, both
//! underflow), so the bound holds with two orders of magnitude to spare.

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_prior::{PriorConfig, PriorTransformer, WEIGHTS_FP16, WEIGHTS_FP32};
use kandinsky_testing::{assert_close, fixtures_dir, test_device};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn reference() -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join("prior/reference.safetensors")).expect("reference fixture")
}

fn t<const D: usize>(data: &TensorData, device: &Device) -> Tensor<D> {
    Tensor::from_data(data.clone(), device)
}

/// The reference's mask `key` (uint8, 1 for real tokens) as the prior takes it.
fn mask(r: &BTreeMap<String, TensorData>, key: &str, device: &Device) -> Tensor<2, Bool> {
    Tensor::<2, Int>::from_data(r[key].clone().convert::<i64>(), device).equal_elem(1)
}

fn run(
    prior: &PriorTransformer,
    r: &BTreeMap<String, TensorData>,
    device: &Device,
    trace: kandinsky_prior::Trace<'_>,
) -> Tensor<2> {
    let mask = mask(r, "attention_mask", device);
    prior
        .forward_traced(
            t(&r["hidden_states"], device),
            t(&r["timestep"], device),
            t(&r["proj_embedding"], device),
            t(&r["encoder_hidden_states"], device),
            mask,
            trace,
        )
        .unwrap()
}

#[test]
fn prior_matches_reference_at_every_block() {
    let device = test_device();
    let prior = PriorTransformer::load(&fixtures().join("prior/prior"), &device).unwrap();
    let r = reference();
    let mut traced = Vec::new();
    let out = run(&prior, &r, &device, &mut |name, value| {
        traced.push((name.to_string(), value.to_data()))
    });
    assert_eq!(traced.len(), 8, "every step is traced");
    for (name, value) in traced {
        assert_close(&name, value, &r[&name], TOLERANCE);
    }
    assert_close("output", out.clone().to_host(), &r["output"], TOLERANCE);
    let embedding = prior.post_process_latents(out);
    assert_close(
        "post_processed",
        embedding.to_host(),
        &r["post_processed"],
        TOLERANCE,
    );
}

/// `forward` leaves the prompts' padding tokens out of the sequence: both prompts padded (5
/// and 5 of 9 tokens, the second with a gap), the reference's output with every token run.
/// The same bound. `forward_with_prompt` after `encode_prompt` leaves them out too.
#[test]
fn forward_without_the_padding_matches_reference() {
    let device = test_device();
    let prior = PriorTransformer::load(&fixtures().join("prior/prior"), &device).unwrap();
    let r = reference();
    let padded = || mask(&r, "attention_mask_padded", &device);
    let out = prior
        .forward(
            t(&r["hidden_states"], &device),
            t(&r["timestep"], &device),
            t(&r["proj_embedding"], &device),
            t(&r["encoder_hidden_states"], &device),
            padded(),
        )
        .unwrap();
    assert_close(
        "output_padded",
        out.to_host(),
        &r["output_padded"],
        TOLERANCE,
    );
    let prompt = prior
        .encode_prompt(
            t(&r["proj_embedding"], &device),
            t(&r["encoder_hidden_states"], &device),
            padded(),
        )
        .unwrap();
    let step = prior
        .forward_with_prompt(
            &prompt,
            t(&r["hidden_states"], &device),
            t(&r["timestep"], &device),
        )
        .unwrap();
    assert_close(
        "output_padded (step)",
        step.to_host(),
        &r["output_padded"],
        TOLERANCE,
    );
}

/// The prompt's tokens run once (`encode_prompt`), then only the step tokens
/// (`forward_with_prompt`), as the denoising loop does: the reference's output (a whole
/// forward) within the same bound; the prompt is encoded once and used for two steps, the
/// second one at the reference's inputs.
#[test]
fn forward_with_an_encoded_prompt_matches_reference() {
    let device = test_device();
    let prior = PriorTransformer::load(&fixtures().join("prior/prior"), &device).unwrap();
    let r = reference();
    let mask = mask(&r, "attention_mask", &device);
    let prompt = prior
        .encode_prompt(
            t(&r["proj_embedding"], &device),
            t(&r["encoder_hidden_states"], &device),
            mask,
        )
        .unwrap();
    assert_eq!(prompt.batch_size(), 2);
    let hidden: Tensor<2> = t(&r["hidden_states"], &device);
    let other = prior.forward_with_prompt(
        &prompt,
        hidden.clone() * 0.5,
        t(&r["timestep"], &device) * 0.5,
    );
    assert!(other.is_ok());
    let out = prior
        .forward_with_prompt(&prompt, hidden, t(&r["timestep"], &device))
        .unwrap();
    assert_close("output", out.to_host(), &r["output"], TOLERANCE);
}

/// The fp16 file onto an f32 device computes with the fp16 values widened to f32, as the
/// reference's `from_pretrained(variant="fp16", torch_dtype=float32)` does: same f32 bound.
#[test]
fn fp16_weights_on_an_f32_device() {
    let device = test_device();
    let dir = fixtures().join("prior/prior");
    assert!(dir.join(WEIGHTS_FP32).is_file());
    let prior =
        PriorTransformer::load_files(&dir.join("config.json"), &dir.join(WEIGHTS_FP16), &device)
            .unwrap();
    let r = reference();
    let out = run(&prior, &r, &device, &mut |_, _| {});
    assert_close(
        "output_fp16_weights",
        out.to_host(),
        &r["output_fp16_weights"],
        TOLERANCE,
    );
}

/// The published configs (2.1: diffusers defaults, 2.2: embedding width 1280) build modules that
/// expect exactly the reference classes' parameter names and shapes.
#[test]
fn real_configs_expect_exactly_the_reference_manifests() {
    let manifests = fixtures().join("manifests");
    let device = test_device();
    for (name, preset, params) in [
        ("prior_21", PriorConfig::kandinsky_2_1(), 1_022_030_080usize),
        ("prior_22", PriorConfig::kandinsky_2_2(), 1_026_225_920),
    ] {
        let config =
            PriorConfig::from_file(&manifests.join(format!("{name}.config.json"))).unwrap();
        assert_eq!(
            config, preset,
            "{name}: the preset equals the published config"
        );
        // The 2.1 prior's published config is empty: diffusers' defaults are the 2.1 model.
        assert_eq!(
            kandinsky_common::config::parse_json::<PriorConfig>("{}", "empty".as_ref()).unwrap(),
            PriorConfig::kandinsky_2_1()
        );
        let ours = kandinsky_common::expected_tensors(&config.init(&device));
        let manifest = kandinsky_common::manifest::parse_manifest(
            &std::fs::read_to_string(manifests.join(format!("{name}.txt"))).unwrap(),
        )
        .unwrap();
        let diffs = kandinsky_common::manifest::compare(&ours, &manifest);
        assert!(
            diffs.is_empty(),
            "{name}: {} differences: {diffs:#?}",
            diffs.len()
        );
        let total: usize = ours.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        assert_eq!(total, params, "{name}");
    }
}
