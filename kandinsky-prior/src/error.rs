//! The crate's error type.

use kandinsky_common::{ConfigError, WeightsError};

/// Everything that can go wrong loading or running the prior.
#[derive(Debug, thiserror::Error)]
pub enum PriorError {
    /// `config.json` is missing, malformed or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights file is absent, missing keys, has extra keys, wrong shapes or dtypes, or is
    /// corrupt.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// An input tensor has the wrong shape.
    #[error("invalid prior input {input}: expected {expected}, found shape {found:?}")]
    InvalidInput {
        /// Which input.
        input: &'static str,
        /// What the model accepts.
        expected: String,
        /// The shape passed.
        found: Vec<usize>,
    },
}
