//! The crate's error type.

use kandinsky_common::{ConfigError, WeightsError};

/// Everything that can go wrong loading or running the UNet.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    /// `config.json` is missing, malformed or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights file is absent, missing keys, has extra keys, wrong shapes or dtypes, or is
    /// corrupt.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// An input tensor has the wrong shape.
    #[error("invalid UNet input {input}: expected {expected}, found shape {found:?}")]
    InvalidInput {
        /// Which input.
        input: &'static str,
        /// What the model accepts.
        expected: String,
        /// The shape passed.
        found: Vec<usize>,
    },
    /// The conditioning passed is not the kind this checkpoint takes (e.g. 2.1 text and image
    /// conditioning to a 2.2 UNet).
    #[error("this UNet takes {expected} conditioning, found {found}")]
    WrongConditioning {
        /// What the config's `addition_embed_type` requires.
        expected: &'static str,
        /// What was passed.
        found: &'static str,
    },
}
