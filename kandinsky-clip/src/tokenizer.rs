//! Tokenizers of the text encoders, through the `tokenizers` crate (pure Rust build):
//!
//! - a folder with `tokenizer.json` (e.g. kandinsky-2-1's XLM-RoBERTa `tokenizer/`) is loaded
//!   from it;
//! - a CLIP folder with only `vocab.json` + `merges.txt` (as the prior repos may ship) is built
//!   the way transformers' `CLIPTokenizer` builds it: NFC, whitespace runs to one space,
//!   lowercase; CLIP's split pattern, byte-level BPE with the `</w>` word suffix; SOT/EOT
//!   around the text.
//!
//! The special tokens (`bos`, `eos`, `unk`, `pad`, …) come from `tokenizer_config.json` and are
//! added as special tokens, as transformers does: the 2.1 prior's pad token is `!`, so a `!`
//! typed in a prompt becomes that token too, exactly as in the reference. Every prompt is
//! truncated to `max_length` tokens (specials included) and padded to it; the attention mask
//! marks the real tokens.

use std::path::{Path, PathBuf};

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::Deserialize;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, SplitDelimiterBehavior,
    Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// CLIP's pre-tokenization pattern (transformers `CLIPTokenizer`).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Why a tokenizer folder could not be used or a prompt could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The folder lacks the files of either supported layout.
    #[error("no tokenizer in {dir}: expected tokenizer.json, or vocab.json and merges.txt")]
    NotFound {
        /// The folder searched.
        dir: PathBuf,
    },
    /// A file could not be read or parsed.
    #[error("cannot read tokenizer file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A special token named in the config is not in the vocabulary.
    #[error("tokenizer {dir}: the {role} token {token:?} is not in the vocabulary")]
    UnknownToken {
        /// The folder.
        dir: PathBuf,
        /// `pad`, `bos`, …
        role: &'static str,
        /// The token text.
        token: String,
    },
    /// A padded length that cannot hold the start and end tokens.
    #[error("invalid tokenizer length {0}: expected at least 2 tokens")]
    MaxLength(usize),
    /// Encoding failed inside the tokenizers library.
    #[error("tokenization failed: {0}")]
    Encode(String),
}

/// A special token as `tokenizer_config.json` writes it: a string or an object with `content`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Text(String),
    Object { content: String },
}

impl SpecialToken {
    fn text(&self) -> &str {
        match self {
            Self::Text(t) | Self::Object { content: t } => t,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
    bos_token: Option<SpecialToken>,
    eos_token: Option<SpecialToken>,
    unk_token: Option<SpecialToken>,
    pad_token: Option<SpecialToken>,
}

/// Token ids and attention mask of a batch of prompts, each `max_length` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, one row per prompt.
    pub ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<Vec<u32>>,
}

impl Tokens {
    fn tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
        let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
        let flat: Vec<i64> = rows.iter().flatten().map(|&v| v as i64).collect();
        Tensor::from_data(TensorData::new(flat, shape), device)
    }

    /// The ids as a (B, L) tensor.
    pub fn ids_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Self::tensor(&self.ids, device)
    }

    /// The mask as a (B, L) tensor: true for real tokens (the mask type the text encoders and
    /// the prior take).
    pub fn mask_tensor(&self, device: &Device) -> Tensor<2, Bool> {
        Self::tensor(&self.mask, device).equal_elem(1)
    }
}

/// A text tokenizer with the padding and truncation the Kandinsky pipelines use.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A tokenizer's files, in memory (see [`TextTokenizer::from_bytes`]).
#[derive(Debug, Clone, Copy)]
pub enum TokenizerFiles<'a> {
    /// A `tokenizer.json` (e.g. kandinsky-2-1's XLM-RoBERTa tokenizer).
    Json(&'a [u8]),
    /// CLIP's `vocab.json` and `merges.txt`.
    ClipBpe {
        /// `vocab.json`.
        vocab: &'a [u8],
        /// `merges.txt`.
        merges: &'a [u8],
    },
}

/// The most bytes a tokenizer file may have (XLM-R's `tokenizer.json` has 17 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// What an in-memory tokenizer's errors name as its file.
const IN_MEMORY: &str = "(tokenizer in memory)";

impl TextTokenizer {
    /// Loads a tokenizer folder (see the module docs). The length is the config's
    /// `model_max_length` when it is at most 77, else 77 (what every Kandinsky pipeline pads to);
    /// change it with [`with_max_length`](Self::with_max_length).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let read = |path: &Path| {
            kandinsky_common::files::read_regular(path, MAX_TOKENIZER_BYTES)
                .map_err(|e| file_error(path, e))
        };
        let config_path = dir.join("tokenizer_config.json");
        let config = match config_path.exists() {
            true => Some(read(&config_path)?),
            false => None,
        };
        let json = dir.join("tokenizer.json");
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if json.exists() {
            Self::build(
                TokenizerFiles::Json(&read(&json)?),
                config.as_deref(),
                &json,
            )
        } else if vocab.exists() && merges.exists() {
            let (v, m) = (read(&vocab)?, read(&merges)?);
            let files = TokenizerFiles::ClipBpe {
                vocab: &v,
                merges: &m,
            };
            Self::build(files, config.as_deref(), &vocab)
        } else {
            Err(TokenizerError::NotFound {
                dir: dir.to_path_buf(),
            })
        }
    }

    /// Loads a `tokenizer.json` file, with the `tokenizer_config.json` beside it if there is
    /// one (special tokens, `model_max_length`).
    pub fn from_file(tokenizer_json: &Path) -> Result<Self, TokenizerError> {
        let read = |path: &Path| {
            kandinsky_common::files::read_regular(path, MAX_TOKENIZER_BYTES)
                .map_err(|e| file_error(path, e))
        };
        let config_path = tokenizer_json.with_file_name("tokenizer_config.json");
        let config = match config_path.exists() {
            true => Some(read(&config_path)?),
            false => None,
        };
        let json = read(tokenizer_json)?;
        Self::build(
            TokenizerFiles::Json(&json),
            config.as_deref(),
            tokenizer_json,
        )
    }

    /// A tokenizer from its files in memory (e.g. embedded with `include_bytes!`) and the
    /// optional `tokenizer_config.json`, as [`from_dir`](Self::from_dir) reads them.
    pub fn from_bytes(
        files: TokenizerFiles<'_>,
        config: Option<&[u8]>,
    ) -> Result<Self, TokenizerError> {
        Self::build(files, config, Path::new(IN_MEMORY))
    }

    /// Builds the tokenizer; `origin` names the files in errors.
    fn build(
        files: TokenizerFiles<'_>,
        config: Option<&[u8]>,
        origin: &Path,
    ) -> Result<Self, TokenizerError> {
        let dir = origin.parent().unwrap_or(origin);
        let config: TokenizerConfig = match config {
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| file_error(&dir.join("tokenizer_config.json"), e))?,
            None => TokenizerConfig::default(),
        };
        let mut inner = match files {
            TokenizerFiles::Json(json) => {
                // tokenizers 0.22 panics on some malformed files (an `expect` in its decoder
                // deserializer, found by fuzzing): such a panic is this file's error.
                std::panic::catch_unwind(|| Tokenizer::from_bytes(json))
                    .map_err(|_| file_error(origin, "malformed (the tokenizers parser panicked)"))?
                    .map_err(|e| file_error(origin, e))?
            }
            TokenizerFiles::ClipBpe { vocab, merges } => clip_bpe(vocab, merges, &config, dir)?,
        };
        // The config's special tokens, as transformers registers them.
        let specials: Vec<AddedToken> = [
            &config.bos_token,
            &config.eos_token,
            &config.unk_token,
            &config.pad_token,
        ]
        .into_iter()
        .flatten()
        .map(|t| AddedToken::from(t.text().to_string(), true))
        .collect();
        inner.add_special_tokens(&specials);
        let pad = config
            .pad_token
            .as_ref()
            .map(|t| t.text().to_string())
            .or_else(|| inner.get_padding().map(|p| p.pad_token.clone()))
            .unwrap_or_else(|| "<pad>".into());
        let pad_id = inner
            .token_to_id(&pad)
            .ok_or_else(|| TokenizerError::UnknownToken {
                dir: dir.to_path_buf(),
                role: "pad",
                token: pad.clone(),
            })?;
        // Above 77 (XLM-R's 512, transformers' "very large" sentinel) or absent: 77, what the
        // Kandinsky pipelines pad to; below 2 no start and end token fit.
        let max_length = match config.model_max_length {
            Some(n) if n < 2.0 => {
                return Err(TokenizerError::File {
                    path: dir.join("tokenizer_config.json"),
                    message: format!(
                        "model_max_length: expected at least 2 (the start and end tokens), found {n}"
                    ),
                });
            }
            Some(n) if n <= 77.0 => n as usize,
            _ => 77,
        };
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: pad,
        }));
        let mut tokenizer = Self { inner, max_length };
        tokenizer.set_truncation()?;
        Ok(tokenizer)
    }

    fn set_truncation(&mut self) -> Result<(), TokenizerError> {
        let params = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: self.max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        self.inner
            .with_truncation(Some(params))
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(())
    }

    /// Pads and truncates to `max_length` tokens instead (at least 2: the start and end
    /// tokens). The text encoders take at most their `max_position_embeddings` (77 for CLIP).
    pub fn with_max_length(mut self, max_length: usize) -> Result<Self, TokenizerError> {
        if max_length < 2 {
            return Err(TokenizerError::MaxLength(max_length));
        }
        self.max_length = max_length;
        if let Some(padding) = self.inner.get_padding_mut() {
            padding.strategy = PaddingStrategy::Fixed(max_length);
        }
        self.set_truncation()?;
        Ok(self)
    }

    /// The padded length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes prompts with their special tokens, truncated and padded to `max_length`.
    pub fn encode(&self, prompts: &[&str]) -> Result<Tokens, TokenizerError> {
        let encodings = self
            .inner
            .encode_batch(prompts.to_vec(), true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(Tokens {
            ids: encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
            mask: encodings
                .iter()
                .map(|e| e.get_attention_mask().to_vec())
                .collect(),
        })
    }
}

fn special(config: &Option<SpecialToken>, default: &str) -> String {
    config.as_ref().map_or(default, |t| t.text()).to_string()
}

/// transformers' `CLIPTokenizer` pipeline over `vocab.json` + `merges.txt` (read as the
/// tokenizers library reads those files: the merges' `#version` line skipped, one pair a line).
fn clip_bpe(
    vocab: &[u8],
    merges: &[u8],
    config: &TokenizerConfig,
    dir: &Path,
) -> Result<Tokenizer, TokenizerError> {
    let unk = special(&config.unk_token, "<|endoftext|>");
    let bos = special(&config.bos_token, "<|startoftext|>");
    let eos = special(&config.eos_token, "<|endoftext|>");
    let (vocab_path, merges_path) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let vocab: std::collections::HashMap<String, u32> =
        serde_json::from_slice(vocab).map_err(|e| file_error(&vocab_path, e))?;
    let merges = std::str::from_utf8(merges).map_err(|e| file_error(&merges_path, e))?;
    let merges = merges
        .lines()
        .filter(|l| !l.starts_with("#version"))
        .enumerate()
        .map(
            |(rank, line)| match line.split(' ').collect::<Vec<_>>()[..] {
                [a, b] => Ok((a.to_string(), b.to_string())),
                _ => Err(file_error(
                    &merges_path,
                    format!("line {} is not a pair of tokens", rank + 1),
                )),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let model = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".into())
        .fuse_unk(false)
        .unk_token(unk)
        .build()
        .map_err(|e| file_error(&vocab_path, e))?;
    let mut tokenizer = Tokenizer::new(model);
    let whitespace = Replace::new(
        tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
        " ",
    )
    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
    tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
        NFC.into(),
        whitespace.into(),
        Lowercase.into(),
    ])));
    let split = Split::new(
        SplitPattern::Regex(CLIP_PATTERN.into()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| TokenizerError::UnknownToken {
                dir: dir.to_path_buf(),
                role: if t == bos { "bos" } else { "eos" },
                token: t.to_string(),
            })
    };
    let (bos_id, eos_id) = (id(&bos)?, id(&eos)?);
    tokenizer.with_post_processor(Some(
        RobertaProcessing::new((eos, eos_id), (bos, bos_id))
            .trim_offsets(false)
            .add_prefix_space(false),
    ));
    Ok(tokenizer)
}
