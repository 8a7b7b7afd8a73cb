//! The crate's error type.

use kandinsky_common::{ConfigError, WeightsError};

/// Everything that can go wrong loading or running the MoVQ.
#[derive(Debug, thiserror::Error)]
pub enum MoVQError {
    /// `config.json` is missing, malformed or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights file is absent, missing keys, has extra keys, wrong shapes or dtypes, or is
    /// corrupt.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A tensor passed to `encode`/`decode` has the wrong shape.
    #[error("invalid input to {op}: expected {expected}, found shape {found:?}")]
    InvalidInput {
        /// The method called.
        op: &'static str,
        /// What it accepts.
        expected: String,
        /// The shape passed.
        found: Vec<usize>,
    },
}
