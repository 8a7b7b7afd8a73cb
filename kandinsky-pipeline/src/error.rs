//! The crate's error type.

use crate::scheduler::SchedulerError;

/// Everything that can go wrong in a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A scheduler could not be built or stepped.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The UNet failed (bad weights, inputs of the wrong size, ...).
    #[error(transparent)]
    UNet(#[from] kandinsky_unet::UNetError),
    /// The prior failed.
    #[error(transparent)]
    Prior(#[from] kandinsky_prior::PriorError),
    /// A text or image encoder failed.
    #[error(transparent)]
    Encoder(#[from] kandinsky_clip::ClipError),
    /// A prompt could not be tokenized.
    #[error(transparent)]
    Tokenizer(#[from] kandinsky_clip::TokenizerError),
    /// The MoVQ failed.
    #[error(transparent)]
    MoVQ(#[from] kandinsky_movq::MoVQError),
    /// A pipeline folder lacks a component.
    #[error("{dir} is not a complete pipeline folder: {component} is missing")]
    MissingComponent {
        /// The pipeline folder.
        dir: std::path::PathBuf,
        /// The missing file or folder.
        component: String,
    },
    /// An input image could not be read.
    #[error("cannot read the image {path}: {message}")]
    Image {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {message}")]
    Output {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
    /// The device failed to run the queued work (a GPU error, a lost device).
    #[error("the device failed: {0}")]
    Device(String),
    /// Inputs or components that do not fit together (embedding widths, batch sizes, ...).
    #[error("{0}")]
    Mismatch(String),
}
