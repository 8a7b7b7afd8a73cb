//! Bad checkpoints, configs and inputs give errors that name the file, the key or field, and
//! expected versus found — never a panic.

use kandinsky_testing::{fixtures_dir, test_device};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use kandinsky_common::{ConfigError, WeightProblem, WeightsError};
use kandinsky_movq::{MoVQ, MoVQError, WEIGHTS_FP32};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

fn fixture_dir() -> PathBuf {
    fixtures_dir().join("movq/movq")
}

/// A copy of the fixture folder with the config text and weight tensors edited.
fn folder_with(
    config: impl FnOnce(String) -> String,
    edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture_dir().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), config(text)).unwrap();
    let bytes = std::fs::read(fixture_dir().join(WEIGHTS_FP32)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = file
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                (v.dtype(), v.shape().to_vec(), v.data().to_vec()),
            )
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (dtype, shape, data))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join(WEIGHTS_FP32)).unwrap();
    dir
}

fn load(dir: &Path) -> MoVQError {
    MoVQ::load(dir, &test_device()).expect_err("loading must fail")
}

fn problems(err: MoVQError) -> (PathBuf, Vec<WeightProblem>, String) {
    let text = err.to_string();
    match err {
        MoVQError::Weights(WeightsError::Mismatch { path, problems }) => (path, problems, text),
        other => panic!("expected a weight mismatch, got {other:?}"),
    }
}

const KEY: &str = "decoder.up_blocks.1.resnets.0.conv_shortcut.weight";

#[test]
fn truncated_file_is_a_corrupt_file_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(fixture_dir().join(WEIGHTS_FP32)).unwrap();
    std::fs::write(dir.path().join(WEIGHTS_FP32), &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path());
    let text = err.to_string();
    assert!(
        matches!(err, MoVQError::Weights(WeightsError::Corrupt { .. })),
        "{err:?}"
    );
    assert!(text.contains(WEIGHTS_FP32), "{text}");
    // Shorter than the header itself.
    std::fs::write(dir.path().join(WEIGHTS_FP32), &bytes[..5]).unwrap();
    assert!(matches!(
        load(dir.path()),
        MoVQError::Weights(WeightsError::Corrupt { .. })
    ));
}

#[test]
fn missing_key_is_named_with_its_expected_shape() {
    let dir = folder_with(
        |c| c,
        |t| {
            t.remove(KEY);
        },
    );
    let (path, problems, text) = problems(load(dir.path()));
    assert!(path.ends_with(WEIGHTS_FP32));
    assert_eq!(
        problems,
        [WeightProblem::Missing {
            key: KEY.into(),
            expected: vec![32, 64, 1, 1]
        }]
    );
    assert!(text.contains(KEY) && text.contains("32,64,1,1"), "{text}");
}

#[test]
fn extra_key_is_named() {
    let dir = folder_with(
        |c| c,
        |t| {
            let v = t["quant_conv.bias"].clone();
            t.insert("decoder.extra.bias".into(), v);
        },
    );
    let (_, problems, text) = problems(load(dir.path()));
    assert_eq!(
        problems,
        [WeightProblem::Unexpected {
            key: "decoder.extra.bias".into(),
            found: vec![4]
        }]
    );
    assert!(
        text.contains("unexpected key `decoder.extra.bias`"),
        "{text}"
    );
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let dir = folder_with(
        |c| c,
        |t| {
            let (dtype, _, data) = t["quant_conv.weight"].clone();
            t.insert("quant_conv.weight".into(), (dtype, vec![2, 8, 1, 1], data));
        },
    );
    let (_, problems, text) = problems(load(dir.path()));
    assert_eq!(
        problems,
        [WeightProblem::Shape {
            key: "quant_conv.weight".into(),
            expected: vec![4, 4, 1, 1],
            found: vec![2, 8, 1, 1]
        }]
    );
    assert!(
        text.contains("expected shape [4,4,1,1], found [2,8,1,1]"),
        "{text}"
    );
}

#[test]
fn integer_dtype_is_rejected() {
    let dir = folder_with(
        |c| c,
        |t| {
            let (_, shape, data) = t["quant_conv.bias"].clone();
            t.insert("quant_conv.bias".into(), (Dtype::I32, shape, data));
        },
    );
    let (_, problems, text) = problems(load(dir.path()));
    assert_eq!(
        problems,
        [WeightProblem::Dtype {
            key: "quant_conv.bias".into(),
            found: "I32".into()
        }]
    );
    assert!(text.contains("found I32"), "{text}");
}

#[test]
fn unknown_block_type_names_the_field() {
    let dir = folder_with(
        |c| c.replacen("\"UpDecoderBlock2D\"", "\"CrossAttnUpBlock2D\"", 1),
        |_| {},
    );
    let err = load(dir.path());
    let text = err.to_string();
    assert!(
        matches!(err, MoVQError::Config(ConfigError::Parse { ref field, .. }) if field == "up_block_types[1]"),
        "{err:?}"
    );
    assert!(
        text.contains("config.json") && text.contains("CrossAttnUpBlock2D"),
        "{text}"
    );
}

#[test]
fn non_numeric_field_names_the_field() {
    let dir = folder_with(
        |c| c.replace("\"layers_per_block\": 2", "\"layers_per_block\": \"two\""),
        |_| {},
    );
    let text = load(dir.path()).to_string();
    assert!(
        text.contains("layers_per_block") && text.contains("config.json"),
        "{text}"
    );
}

#[test]
fn unsupported_values_are_config_errors() {
    for (from, to, field) in [
        (
            "\"norm_type\": \"spatial\"",
            "\"norm_type\": \"group\"",
            "norm_type",
        ),
        (
            "\"norm_num_groups\": 8",
            "\"norm_num_groups\": 0",
            "norm_num_groups",
        ),
        (
            "\"norm_num_groups\": 8",
            "\"norm_num_groups\": 7",
            "block_out_channels[0]",
        ),
        ("\"vq_embed_dim\": 4", "\"vq_embed_dim\": 3", "vq_embed_dim"),
        ("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", "act_fn"),
    ] {
        let dir = folder_with(|c| c.replace(from, to), |_| {});
        match load(dir.path()) {
            MoVQError::Config(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{to}: expected an invalid-config error, got {other:?}"),
        }
    }
    // Lists of unequal length.
    let dir = folder_with(|c| c.replacen("\"UpDecoderBlock2D\",", "", 1), |_| {});
    assert!(matches!(
        load(dir.path()),
        MoVQError::Config(ConfigError::Invalid { .. })
    ));
}

#[test]
fn missing_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path());
    assert!(
        matches!(err, MoVQError::Weights(WeightsError::NotFound { .. })),
        "{err:?}"
    );
    std::fs::write(dir.path().join(WEIGHTS_FP32), b"").unwrap();
    let err = load(dir.path());
    assert!(
        matches!(err, MoVQError::Config(ConfigError::Io { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("config.json"));
}

#[test]
fn wrong_input_shapes_are_errors() {
    let device = test_device();
    let movq = MoVQ::load(&fixture_dir(), &device).unwrap();
    let err = movq
        .decode(Tensor::<4>::zeros([1, 3, 4, 4], &device), true)
        .unwrap_err();
    assert!(err.to_string().contains("decode"), "{err}");
    assert!(
        movq.encode(Tensor::<4>::zeros([1, 4, 8, 8], &device))
            .is_err()
    );
    assert!(
        movq.encode(Tensor::<4>::zeros([1, 3, 0, 8], &device))
            .is_err()
    );
    assert!(
        movq.quantize(Tensor::<4>::zeros([0, 4, 2, 2], &device))
            .is_err()
    );
}
