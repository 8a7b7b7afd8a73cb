//! Golden tests of the tokenizers against the reference (transformers 5.24 `CLIPTokenizer` and
//! `XLMRobertaTokenizer`, padding "max_length" to 77 with truncation), on 14 prompts: plain
//! English, capitals and "!!", accents, Cyrillic, CJK, emoji, whitespace runs with tabs and a
//! newline, the empty prompt, contractions, digits, fullwidth letters and case-folding edge
//! cases, a decomposed accent with a hand-typed `<|endoftext|>`, and one longer than 77 tokens.
//!
//! CLIP: the full 49408-token vocabulary built by the reference script from OpenAI's BPE merges
//! (shipped by open-clip-torch), in the two prior configurations (2.1 pads with "!", 2.2 with
//! the end-of-text token), loaded from `vocab.json` + `merges.txt`. XLM-R: a small
//! sentencepiece model trained by the script, converted by transformers, loaded from its
//! `tokenizer.json`. Ids and masks must be identical.

use kandinsky_testing::fixtures_dir;
use std::path::{Path, PathBuf};

use kandinsky_clip::TextTokenizer;
use kandinsky_common::tensors::read_safetensors;

fn fixtures() -> PathBuf {
    fixtures_dir().join("tokenizers")
}

fn prompts() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("prompts.json")).unwrap())
        .unwrap()
}

fn expected(key: &str) -> Vec<Vec<u32>> {
    let r = read_safetensors(&fixtures().join("reference.safetensors")).unwrap();
    let data = &r[key];
    let width = data.shape()[1];
    let flat = data.clone().convert::<i64>().try_to_vec::<i64>().unwrap();
    flat.chunks(width)
        .map(|row| row.iter().map(|&v| v as u32).collect())
        .collect()
}

fn check(name: &str, dir: &Path) {
    let tokenizer = TextTokenizer::from_dir(dir).unwrap();
    assert_eq!(tokenizer.max_length(), 77);
    let prompts = prompts();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let tokens = tokenizer.encode(&refs).unwrap();
    let (ids, mask) = (
        expected(&format!("{name}.input_ids")),
        expected(&format!("{name}.attention_mask")),
    );
    let mut agree = 0;
    for (i, prompt) in prompts.iter().enumerate() {
        assert_eq!(
            tokens.ids[i], ids[i],
            "{name}: ids of prompt {i} {prompt:?}"
        );
        assert_eq!(
            tokens.mask[i], mask[i],
            "{name}: mask of prompt {i} {prompt:?}"
        );
        agree += 1;
    }
    println!(
        "{name}: {agree}/{} prompts identical (ids and masks)",
        prompts.len()
    );
}

/// A CLIP prior tokenizer folder as published: vocab.json, merges.txt, tokenizer_config.json.
fn clip_folder(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(fixtures().join("clip_bpe").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        fixtures().join(config).join("tokenizer_config.json"),
        dir.path().join("tokenizer_config.json"),
    )
    .unwrap();
    dir
}

#[test]
fn clip_21_tokenizer_pads_with_bang_like_the_reference() {
    let dir = clip_folder("clip_21");
    check("clip_21", dir.path());
}

#[test]
fn clip_22_tokenizer_pads_with_eot_like_the_reference() {
    let dir = clip_folder("clip_22");
    check("clip_22", dir.path());
}

#[test]
fn xlm_roberta_tokenizer_json_matches_the_reference() {
    check("xlmr", &fixtures().join("xlmr"));
}

#[test]
fn a_folder_without_tokenizer_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = TextTokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}
