//! Bad configs, checkpoints and inputs give errors that name the field, key or input and the
//! expected versus found value — never a panic.

use kandinsky_testing::{fixtures_dir, test_device};
use std::path::{Path, PathBuf};

use burn::tensor::{Bool, Distribution, Tensor};
use kandinsky_common::{ConfigError, WeightProblem, WeightsError};
use kandinsky_prior::{PriorConfig, PriorError, PriorTransformer, WEIGHTS_FP32};

fn fixture() -> PathBuf {
    fixtures_dir().join("prior/prior")
}

/// A folder with the fixture's weights and its config edited by `edit`.
fn folder(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(fixture().join(WEIGHTS_FP32), dir.path().join(WEIGHTS_FP32)).unwrap();
    dir
}

fn load(dir: &Path) -> PriorError {
    PriorTransformer::load(dir, &test_device()).expect_err("loading must fail")
}

#[test]
fn unsupported_options_are_rejected_by_name() {
    for (field, value) in [
        ("norm_in_type", serde_json::json!("layer")),
        ("added_emb_type", serde_json::Value::Null),
        ("additional_embeddings", serde_json::json!(5)),
        ("time_embed_act_fn", serde_json::json!("gelu")),
    ] {
        let dir = folder(|c| c[field] = value.clone());
        let err = load(dir.path());
        let text = err.to_string();
        match err {
            PriorError::Config(ConfigError::Invalid { field: named, .. }) => {
                assert_eq!(named, field)
            }
            other => panic!("{field}: expected an invalid value, got {other:?}"),
        }
        assert!(text.contains("config.json"), "{text}");
    }
}

#[test]
fn a_config_that_does_not_fit_the_weights_names_the_keys() {
    let dir = folder(|c| c["clip_embed_dim"] = 30.into());
    let err = load(dir.path());
    let PriorError::Weights(WeightsError::Mismatch { problems, .. }) = err else {
        panic!("expected a mismatch, got {err:?}");
    };
    let keys: Vec<&str> = problems
        .iter()
        .map(|p| match p {
            WeightProblem::Shape { key, .. } => key.as_str(),
            other => panic!("expected shape problems, got {other:?}"),
        })
        .collect();
    assert_eq!(
        keys,
        [
            "clip_mean",
            "clip_std",
            "proj_to_clip_embeddings.bias",
            "proj_to_clip_embeddings.weight"
        ]
    );
}

#[test]
fn bad_forward_inputs_are_errors() {
    let device = test_device();
    let prior = PriorTransformer::load(&fixture(), &device).unwrap();
    let normal = Distribution::Normal(0.0, 1.0);
    let x = |shape: [usize; 2]| Tensor::<2>::random(shape, normal, &device);
    let seq = |shape: [usize; 3]| Tensor::<3>::random(shape, normal, &device);
    let mask = |b: usize, t: usize| Tensor::<2, Bool>::full([b, t], true, &device);
    let ts = |n: usize| Tensor::<1>::ones([n], &device);
    let input = |r: Result<Tensor<2>, PriorError>| match r {
        Err(PriorError::InvalidInput { input, .. }) => input,
        other => panic!("expected an input error, got {other:?}"),
    };
    // A prompt of 8 tokens where the model takes 9.
    let r = prior.forward(x([2, 20]), ts(1), x([2, 18]), seq([2, 8, 20]), mask(2, 9));
    assert_eq!(input(r), "encoder_hidden_states");
    let r = prior.forward(x([2, 20]), ts(1), x([2, 18]), seq([2, 9, 20]), mask(2, 8));
    assert_eq!(input(r), "attention_mask");
    let r = prior.forward(x([2, 20]), ts(1), x([2, 20]), seq([2, 9, 20]), mask(2, 9));
    assert_eq!(input(r), "proj_embedding");
    let r = prior.forward(x([2, 20]), ts(3), x([2, 18]), seq([2, 9, 20]), mask(2, 9));
    assert_eq!(input(r), "timesteps");
    let r = prior.forward(x([2, 20]), ts(2), x([2, 18]), seq([2, 9, 20]), mask(2, 9));
    assert!(r.is_ok());

    // The same checks for a prompt encoded once and its steps.
    let r = prior.encode_prompt(x([2, 18]), seq([2, 9, 20]), mask(1, 9));
    assert!(matches!(
        r,
        Err(PriorError::InvalidInput {
            input: "attention_mask",
            ..
        })
    ));
    let r = prior.encode_prompt(x([0, 18]), seq([0, 9, 20]), mask(0, 9));
    assert!(matches!(
        r,
        Err(PriorError::InvalidInput {
            input: "proj_embedding",
            ..
        })
    ));
    let prompt = prior
        .encode_prompt(x([2, 18]), seq([2, 9, 20]), mask(2, 9))
        .unwrap();
    let r = prior.forward_with_prompt(&prompt, x([3, 20]), ts(1));
    assert_eq!(input(r), "hidden_states");
    let r = prior.forward_with_prompt(&prompt, x([2, 20]), ts(3));
    assert_eq!(input(r), "timesteps");
    let r = prior.forward_with_prompt(&prompt, x([2, 20]), ts(2));
    assert!(r.is_ok());
    // A prompt encoded by a prior with one block less.
    let shallower = PriorConfig {
        num_layers: prior.config().num_layers - 1,
        ..prior.config().clone()
    }
    .init(&device);
    let other = shallower
        .encode_prompt(x([2, 18]), seq([2, 9, 20]), mask(2, 9))
        .unwrap();
    let r = prior.forward_with_prompt(&other, x([2, 20]), ts(2));
    assert_eq!(input(r), "prompt");
}
