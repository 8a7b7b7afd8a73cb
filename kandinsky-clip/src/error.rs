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
