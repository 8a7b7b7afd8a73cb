//! The crate's error type.

use std::path::PathBuf;

use kandinsky_common::{ConfigError, WeightsError};

/// Everything that can go wrong loading or running the MoVQ.
#[derive(Debug, thiserror::Error)]
pub enum MoVQError {
    /// `config.json` is missing, malformed or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights file is missing keys, has extra keys, wrong shapes or dtypes, or is corrupt.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The folder has no safetensors weights file.
    #[error("no MoVQ weights in {dir}: expected {expected}{hint}")]
    NoWeights {
        /// The folder searched.
        dir: PathBuf,
        /// The file names tried.
        expected: String,
        /// Extra advice (e.g. a `.bin` file was found).
        hint: String,
    },
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
