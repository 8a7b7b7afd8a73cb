//! The crate's error type.

use kandinsky_common::{ConfigError, WeightsError};

/// Everything that can go wrong loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// `config.json` is missing, malformed or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights file is absent, missing keys, has extra keys, wrong shapes or dtypes, or is
    /// corrupt.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// An input tensor has the wrong shape.
    #[error("invalid encoder input {input}: expected {expected}, found shape {found:?}")]
    InvalidInput {
        /// Which input.
        input: &'static str,
        /// What the model accepts.
        expected: String,
        /// The shape passed.
        found: Vec<usize>,
    },
    /// A token id the encoder's vocabulary does not have (a tokenizer that does not belong to
    /// the encoder): an out-of-range embedding lookup is garbage on a GPU and a panic on the CPU.
    #[error(
        "token id {found} is outside the encoder's vocabulary of {vocab_size} (the tokenizer does not belong to this encoder?)"
    )]
    TokenId {
        /// The offending id.
        found: i64,
        /// The encoder's vocabulary size.
        vocab_size: usize,
    },
}

/// Checks that every id of `input_ids` is in `0..vocab_size` (one read of the extremes).
pub(crate) fn check_token_ids(
    input_ids: &burn::tensor::Tensor<2, burn::tensor::Int>,
    vocab_size: usize,
) -> Result<(), ClipError> {
    let max = input_ids.clone().max().into_scalar::<i64>();
    let min = input_ids.clone().min().into_scalar::<i64>();
    for id in [min, max] {
        if id < 0 || id as u64 >= vocab_size as u64 {
            return Err(ClipError::TokenId {
                found: id,
                vocab_size,
            });
        }
    }
    Ok(())
}

pub(crate) fn check_shape(
    input: &'static str,
    found: &[usize],
    expected: &[Option<usize>],
    describe: impl FnOnce() -> String,
) -> Result<(), ClipError> {
    let fits = found.len() == expected.len()
        && found
            .iter()
            .zip(expected)
            .all(|(&d, e)| d > 0 && e.is_none_or(|e| e == d));
    if fits {
        Ok(())
    } else {
        Err(ClipError::InvalidInput {
            input,
            expected: describe(),
            found: found.to_vec(),
        })
    }
}
