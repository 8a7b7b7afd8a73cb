//! Bad checkpoints, configs and inputs give errors that name the file, the key or field, and
//! expected versus found — never a panic. (The file-level checks — truncation, dtypes, extra
//! keys — are the shared loader's and are tested with the MoVQ; here the UNet-specific ones.)

use kandinsky_testing::{fixtures_dir, test_device};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Distribution, Tensor};
use kandinsky_common::{ConfigError, WeightProblem, WeightsError};
use kandinsky_unet::{Conditioning, UNet, UNetError, WEIGHTS_FP32};

fn fixture(variant: &str) -> PathBuf {
    fixtures_dir().join(variant).join("unet")
}

/// A folder with `variant`'s weights and its config edited by `edit` (a JSON object edit).
fn folder(variant: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(variant).join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixture(variant).join(WEIGHTS_FP32),
        dir.path().join(WEIGHTS_FP32),
    )
    .unwrap();
    dir
}

fn load(dir: &Path) -> UNetError {
    UNet::load(dir, &test_device()).expect_err("loading must fail")
}

fn invalid_field(err: UNetError) -> (String, String) {
    let text = err.to_string();
    match err {
        UNetError::Config(ConfigError::Invalid { field, .. }) => (field, text),
        other => panic!("expected an invalid config value, got {other:?}"),
    }
}

#[test]
fn missing_folder_and_missing_weights_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&dir.path().join("unet"));
    assert!(
        matches!(err, UNetError::Weights(WeightsError::NotFound { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    std::fs::write(dir.path().join("diffusion_pytorch_model.bin"), b"").unwrap();
    let err = load(dir.path());
    assert!(err.to_string().contains(".bin"), "{err}");
}

#[test]
fn unsupported_options_are_rejected_by_name() {
    for (field, value) in [
        ("class_embed_type", serde_json::json!("timestep")),
        ("resnet_time_scale_shift", serde_json::json!("default")),
        ("only_cross_attention", serde_json::json!(true)),
        ("resnet_out_scale_factor", serde_json::json!(2.0)),
        ("time_embedding_act_fn", serde_json::json!("silu")),
    ] {
        let dir = folder("unet_22", |c| c[field] = value.clone());
        let (named, text) = invalid_field(load(dir.path()));
        assert_eq!(named, field);
        assert!(
            text.contains("config.json") && text.contains(&value.to_string()),
            "{text}"
        );
    }
}

#[test]
fn inconsistent_sizes_are_rejected_by_name() {
    let dir = folder("unet_22", |c| c["attention_head_dim"] = 7.into());
    let (field, text) = invalid_field(load(dir.path()));
    assert_eq!(field, "block_out_channels[1]");
    assert!(
        text.contains("attention_head_dim (7)") && text.contains("16"),
        "{text}"
    );

    let dir = folder("unet_22", |c| c["norm_num_groups"] = 3.into());
    assert_eq!(invalid_field(load(dir.path())).0, "block_out_channels[0]");

    let dir = folder("unet_22", |c| {
        c["up_block_types"].as_array_mut().unwrap().pop();
    });
    assert_eq!(invalid_field(load(dir.path())).0, "up_block_types");

    let dir = folder("unet_22", |c| {
        c["addition_embed_type"] = "text_image".into()
    });
    assert_eq!(invalid_field(load(dir.path())).0, "addition_embed_type");
}

#[test]
fn unknown_block_types_name_the_field() {
    let dir = folder("unet_22", |c| {
        c["down_block_types"][1] = "CrossAttnDownBlock2D".into()
    });
    let err = load(dir.path());
    let text = err.to_string();
    assert!(
        matches!(&err, UNetError::Config(ConfigError::Parse { field, .. }) if field.starts_with("down_block_types")),
        "{err:?}"
    );
    assert!(text.contains("CrossAttnDownBlock2D"), "{text}");
}

/// A 9-channel (inpainting) config over 4-channel weights: the first conv's shape names it.
#[test]
fn weights_of_another_variant_are_a_shape_mismatch() {
    let dir = folder("unet_22", |c| c["in_channels"] = 9.into());
    let err = load(dir.path());
    let text = err.to_string();
    let UNetError::Weights(WeightsError::Mismatch { problems, .. }) = err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(
        problems,
        [WeightProblem::Shape {
            key: "conv_in.weight".into(),
            expected: vec![8, 9, 3, 3],
            found: vec![8, 4, 3, 3],
        }]
    );
    assert!(text.contains("conv_in.weight"), "{text}");

    // 2.2 weights under a ControlNet config: every hint-encoder key is missing.
    let dir = folder("unet_22", |c| {
        c["addition_embed_type"] = "image_hint".into();
        c["in_channels"] = 8.into();
    });
    let UNetError::Weights(WeightsError::Mismatch { problems, .. }) = load(dir.path()) else {
        panic!("expected a mismatch");
    };
    let missing = problems
        .iter()
        .filter(|p| matches!(p, WeightProblem::Missing { key, .. } if key.starts_with("add_embedding.input_hint_block.")))
        .count();
    assert_eq!(missing, 16, "{problems:?}");
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn bad_forward_inputs_are_errors() {
    let device = test_device();
    let unet = UNet::load(&fixture("unet_22"), &device).unwrap();
    let image = |b| Conditioning::Image {
        image_embeds: random([b, 28], &device),
    };
    let t = |v: &[f32]| Tensor::<1>::from_floats(v, &device);
    let input_error = |r: Result<Tensor<4>, UNetError>| match r {
        Err(UNetError::InvalidInput { input, .. }) => input,
        other => panic!("expected an input error, got {other:?}"),
    };
    // Wrong channel count, size not a multiple of 4 (two halvings), wrong timestep count.
    let r = unet.forward(random([2, 9, 8, 8], &device), t(&[1.0]), image(2));
    assert_eq!(input_error(r), "sample");
    let r = unet.forward(random([2, 4, 8, 6], &device), t(&[1.0]), image(2));
    assert_eq!(input_error(r), "sample");
    let r = unet.forward(random([2, 4, 8, 8], &device), t(&[1.0, 2.0, 3.0]), image(2));
    assert_eq!(input_error(r), "timesteps");
    // Embedding batch or width differing from the sample's.
    let r = unet.forward(random([2, 4, 8, 8], &device), t(&[1.0]), image(3));
    assert_eq!(input_error(r), "image_embeds");
    // 2.1 conditioning to a 2.2 UNet.
    let r = unet.forward(
        random([2, 4, 8, 8], &device),
        t(&[1.0]),
        Conditioning::TextImage {
            text_hidden_states: random([2, 7, 12], &device),
            text_embeds: random([2, 20], &device),
            image_embeds: random([2, 20], &device),
        },
    );
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            UNetError::WrongConditioning {
                expected: "image",
                found: "text_image"
            }
        ),
        "{err:?}"
    );

    // A ControlNet hint at the wrong resolution.
    let unet = UNet::load(&fixture("unet_22_controlnet"), &device).unwrap();
    let r = unet.forward(
        random([1, 4, 8, 8], &device),
        t(&[1.0]),
        Conditioning::ImageHint {
            image_embeds: random([1, 28], &device),
            hint: random([1, 3, 32, 64], &device),
        },
    );
    let err = r.unwrap_err();
    assert!(err.to_string().contains("(1, 3, 64, 64)"), "{err}");
}
