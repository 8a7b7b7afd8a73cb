//! Parity of the UNet with the reference implementation (diffusers `UNet2DConditionModel`), on
//! the small random-weight models and fixed inputs written by `tools/reference/reference.py`:
//! Kandinsky 2.1, 2.1 inpainting, 2.2 and 2.2 ControlNet-depth.
//!
//! Tolerance: max |ours − reference| ≤ 1e-4 · max(1, max |reference|), in f32, for every traced
//! intermediate and the output. Both sides compute in f32 with different summation orders
//! (im2col + GEMM and a fused attention here, oneDNN/MKL and PyTorch's SDPA there) through ~50
//! layers; f32's relative precision is 6e-8, and the worst-conditioned step (a GroupNorm over 2
//! channels of a 3×5 map) amplifies rounding by at most ~100, which leaves the accumulated
//! error well below 1e-4 of the activations' scale.

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_testing::{assert_close, fixtures_dir, test_device};
use kandinsky_unet::{Conditioning, UNet, UNetConfig, WEIGHTS_FP16, WEIGHTS_FP32};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn reference(variant: &str) -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join(variant).join("reference.safetensors"))
        .expect("reference fixture")
}

fn t<const D: usize>(data: &TensorData, device: &Device) -> Tensor<D> {
    Tensor::from_data(data.clone(), device)
}

/// The fixture's conditioning, by the variant's config.
fn conditioning(unet: &UNet, r: &BTreeMap<String, TensorData>, device: &Device) -> Conditioning {
    use kandinsky_unet::config::AdditionEmbedType::*;
    let image_embeds = t(&r["image_embeds"], device);
    match unet.config().addition_embed_type {
        TextImage => Conditioning::TextImage {
            text_hidden_states: t(&r["encoder_hidden_states"], device),
            text_embeds: t(&r["text_embeds"], device),
            image_embeds,
        },
        Image => Conditioning::Image { image_embeds },
        ImageHint => Conditioning::ImageHint {
            image_embeds,
            hint: t(&r["hint"], device),
        },
    }
}

/// Runs the fixture's inputs through `unet`, checks every traced step against the reference,
/// and returns the output.
fn check_variant(variant: &str, unet: &UNet, device: &Device) -> Tensor<4> {
    let r = reference(variant);
    let mut traced = Vec::new();
    let out = unet
        .forward_traced(
            t(&r["sample"], device),
            t(&r["timestep"], device),
            conditioning(unet, &r, device),
            &mut |name, value| traced.push((name.to_string(), value.to_data())),
        )
        .unwrap();
    let expected: Vec<&String> = r
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("time_embedding")
                || k.starts_with("add_embedding")
                || k.starts_with("encoder_hid_proj")
                || k.starts_with("conv_")
                || k.contains("blocks")
        })
        .collect();
    let names: Vec<&String> = traced.iter().map(|(n, _)| n).collect();
    for name in &expected {
        assert!(names.contains(name), "{variant}: {name} not traced");
    }
    for (name, value) in traced {
        assert_close(&format!("{variant} {name}"), value, &r[&name], TOLERANCE);
    }
    assert_close(
        &format!("{variant} output"),
        out.clone().to_host(),
        &r["output"],
        TOLERANCE,
    );
    out
}

fn load(variant: &str, device: &Device) -> UNet {
    UNet::load(&fixtures().join(variant).join("unet"), device).expect("load the fixture unet")
}

#[test]
fn kandinsky_2_1_matches_reference_at_every_block() {
    let device = test_device();
    check_variant("unet_21", &load("unet_21", &device), &device);
}

#[test]
fn kandinsky_2_1_inpainting_matches_reference_at_every_block() {
    let device = test_device();
    let unet = load("unet_21_inpaint", &device);
    assert_eq!(unet.config().in_channels, 9);
    check_variant("unet_21_inpaint", &unet, &device);
}

#[test]
fn kandinsky_2_2_matches_reference_at_every_block() {
    let device = test_device();
    check_variant("unet_22", &load("unet_22", &device), &device);
}

/// The same model on a 32×24 latent, whose first level (768 positions) takes the CPU's
/// Winograd convolution rather than the small-map product the other fixtures stay on; same
/// bound.
#[test]
fn kandinsky_2_2_on_a_larger_map_matches_reference_at_every_block() {
    let device = test_device();
    check_variant("unet_22_large_map", &load("unet_22", &device), &device);
}

#[test]
fn kandinsky_2_2_controlnet_matches_reference_at_every_block() {
    let device = test_device();
    check_variant(
        "unet_22_controlnet",
        &load("unet_22_controlnet", &device),
        &device,
    );
}

/// One timestep for the whole batch is the same as that value repeated.
#[test]
fn a_single_timestep_applies_to_the_whole_batch() {
    let device = test_device();
    let unet = load("unet_22", &device);
    let r = reference("unet_22");
    let run = |timesteps: Tensor<1>| {
        unet.forward(
            t(&r["sample"], &device),
            timesteps,
            conditioning(&unet, &r, &device),
        )
        .unwrap()
        .to_host()
    };
    let one = run(Tensor::from_floats([17.0], &device));
    let both = run(Tensor::from_floats([17.0, 17.0], &device));
    assert_eq!(one, both);
}

/// The fp16 file loaded onto an f32 device holds the fp16 values widened to f32, which is what
/// the reference's `from_pretrained(variant="fp16", torch_dtype=float32)` computes with: the
/// same f32 bound applies.
#[test]
fn fp16_weights_on_an_f32_device() {
    let device = test_device();
    let dir = fixtures().join("unet_22/unet");
    assert!(dir.join(WEIGHTS_FP32).is_file());
    let unet =
        UNet::load_files(&dir.join("config.json"), &dir.join(WEIGHTS_FP16), &device).unwrap();
    let r = reference("unet_22");
    let out = unet
        .forward(
            t(&r["sample"], &device),
            t(&r["timestep"], &device),
            conditioning(&unet, &r, &device),
        )
        .unwrap();
    assert_close(
        "output_fp16_weights",
        out.to_host(),
        &r["output_fp16_weights"],
        TOLERANCE,
    );
}

/// The real configurations of the five published UNets (written by the reference script from
/// the published config values) build modules that expect exactly the names and shapes of the
/// reference classes' parameters.
#[test]
fn real_configs_expect_exactly_the_reference_manifests() {
    let manifests = fixtures().join("manifests");
    let device = test_device();
    let cases = [
        ("unet_21", UNetConfig::kandinsky_2_1(4), 1_228_661_768usize),
        (
            "unet_21_inpaint",
            UNetConfig::kandinsky_2_1(9),
            1_228_679_048,
        ),
        ("unet_22", UNetConfig::kandinsky_2_2(4), 1_253_057_288),
        (
            "unet_22_inpaint",
            UNetConfig::kandinsky_2_2(9),
            1_253_074_568,
        ),
        (
            "unet_22_controlnet",
            UNetConfig::kandinsky_2_2_controlnet(),
            1_253_429_212,
        ),
    ];
    for (name, preset, params) in cases {
        let mut config =
            UNetConfig::from_file(&manifests.join(format!("{name}.config.json"))).unwrap();
        config.other.clear();
        assert_eq!(
            config, preset,
            "{name}: the preset equals the published config"
        );
        // Lazily initialised: building and listing allocate no weights.
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
