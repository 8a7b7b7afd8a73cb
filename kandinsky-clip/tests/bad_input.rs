//! Bad folders, configs and inputs give errors that name the file, field or input — never a
//! panic.

use kandinsky_testing::{fixtures_dir, test_device};
use std::path::PathBuf;

use burn::tensor::{Bool, Distribution, Int, Tensor};
use kandinsky_clip::{ClipError, ClipTextModel, ClipVisionModel, MultilingualClip, WEIGHTS_FP32};
use kandinsky_common::{ConfigError, WeightsError};

fn fixtures() -> PathBuf {
    fixtures_dir()
}

#[test]
fn missing_weights_and_bad_configs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClipTextModel::load(dir.path(), &test_device()).unwrap_err();
    assert!(
        matches!(err, ClipError::Weights(WeightsError::NotFound { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let src = fixtures().join("clip_text_l/text_encoder");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["num_attention_heads"] = 5.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join(WEIGHTS_FP32), dir.path().join(WEIGHTS_FP32)).unwrap();
    let err = ClipTextModel::load(dir.path(), &test_device()).unwrap_err();
    match err {
        ClipError::Config(ConfigError::Invalid { field, .. }) => {
            assert_eq!(field, "num_attention_heads")
        }
        other => panic!("expected an invalid field, got {other:?}"),
    }
    config["num_attention_heads"] = 3.into();
    config["hidden_act"] = "relu".into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = ClipTextModel::load(dir.path(), &test_device()).unwrap_err();
    assert!(
        matches!(&err, ClipError::Config(ConfigError::Parse { field, .. }) if field == "hidden_act"),
        "{err:?}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let device = test_device();
    let text = ClipTextModel::load(&fixtures().join("clip_text_l/text_encoder"), &device).unwrap();
    // 12 tokens for a context of 11.
    let ids = Tensor::<2, Int>::zeros([1, 12], &device);
    let err = text.forward(ids).unwrap_err();
    assert!(
        matches!(
            err,
            ClipError::InvalidInput {
                input: "input_ids",
                ..
            }
        ),
        "{err:?}"
    );

    let vision =
        ClipVisionModel::load(&fixtures().join("clip_vision/image_encoder"), &device).unwrap();
    let pixels = Tensor::<4>::random([1, 3, 32, 28], Distribution::Default, &device);
    let err = vision.forward(pixels).unwrap_err();
    assert!(err.to_string().contains("(batch, 3, 28, 28)"), "{err}");

    let mclip = MultilingualClip::load(&fixtures().join("mclip/text_encoder"), &device).unwrap();
    let empty = Tensor::<2, Int>::zeros([0, 6], &device);
    let err = mclip
        .forward(empty, Tensor::<2, Bool>::empty([0, 6], &device))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClipError::InvalidInput {
                input: "input_ids",
                ..
            }
        ),
        "{err:?}"
    );
    let ids = Tensor::<2, Int>::zeros([2, 6], &device);
    let err = mclip
        .forward(ids, Tensor::<2, Bool>::ones([2, 5], &device))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClipError::InvalidInput {
                input: "attention_mask",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Token ids past the encoder's vocabulary (a tokenizer of another model) are an error, not an
/// out-of-bounds lookup (a panic on the CPU, garbage on a GPU; issue 21, item 3).
#[test]
fn token_ids_outside_the_vocabulary_are_errors() {
    let device = test_device();
    let text = ClipTextModel::load(&fixtures().join("clip_text_l/text_encoder"), &device).unwrap();
    for id in [1_000_000i64, -1] {
        let ids = Tensor::<2, Int>::full([1, 4], id, &device);
        let err = text.forward(ids).unwrap_err();
        assert!(
            matches!(err, ClipError::TokenId { found, .. } if found == id),
            "{err:?}"
        );
    }
    let mclip = MultilingualClip::load(&fixtures().join("mclip/text_encoder"), &device).unwrap();
    let ids = Tensor::<2, Int>::full([1, 4], 1_000_000i64, &device);
    let err = mclip
        .forward(ids, Tensor::<2, Bool>::ones([1, 4], &device))
        .unwrap_err();
    assert!(matches!(err, ClipError::TokenId { .. }), "{err:?}");
}

/// A tokenizer whose `model_max_length` leaves no room for the start and end tokens is refused
/// when loaded (it made a tensor concatenation panic; issue 21, item 3).
#[test]
fn a_tokenizer_too_short_for_its_special_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            fixtures().join("tokenizers/xlmr").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let config = dir.path().join("tokenizer_config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["model_max_length"] = serde_json::json!(1);
    std::fs::write(&config, json.to_string()).unwrap();
    let err = kandinsky_clip::TextTokenizer::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, kandinsky_clip::TokenizerError::File { path, .. } if *path == config),
        "{err:?}"
    );
    assert!(err.to_string().contains("model_max_length"), "{err}");
}

/// A `tokenizer.json` whose `decoder` is not JSON made the tokenizers library panic (found by
/// fuzzing): now the file's error.
#[test]
fn a_tokenizer_json_the_tokenizers_parser_panics_on_is_an_error() {
    let json = br#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": x,
        "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}"#;
    let err =
        kandinsky_clip::TextTokenizer::from_bytes(kandinsky_clip::TokenizerFiles::Json(json), None)
            .unwrap_err();
    assert!(
        matches!(err, kandinsky_clip::TokenizerError::File { .. }),
        "{err:?}"
    );
}
