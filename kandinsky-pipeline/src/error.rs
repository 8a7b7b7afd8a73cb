//! The crate's error type: one variant per kind of failure a caller may want to tell apart
//! (an invalid option is the caller's to fix, an incompatible component is the folders', a
//! failed load or device is the environment's).

use std::path::PathBuf;

use crate::scheduler::SchedulerError;

/// The two stages of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The prior: prompts or images → CLIP image embeddings.
    Prior,
    /// The decoder: image embeddings → latents → pixels.
    Decoder,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Prior => "prior",
            Stage::Decoder => "decoder",
        })
    }
}

/// Everything that can go wrong in a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An option of a request or a call is out of range (a size, a step count, a strength, a
    /// guidance scale, a fusion weight…): the caller's to fix.
    #[error("invalid {option} {found}: expected {expected}")]
    InvalidOption {
        /// The option (named as in [`Request`](crate::Request)).
        option: &'static str,
        /// The value given.
        found: String,
        /// What is accepted.
        expected: String,
    },
    /// A tensor handed in (latents, embeddings, a hint, noise) has the wrong shape.
    #[error("{what} of shape {found:?}: expected {expected:?}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// The shape it has.
        found: Vec<usize>,
        /// The shape it needs.
        expected: Vec<usize>,
    },
    /// Two lists that go together differ in length (prompts and negative prompts, prompts and
    /// embeddings).
    #[error("{found} {what}: expected {expected}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// How many were given.
        found: usize,
        /// How many were needed.
        expected: usize,
    },
    /// The prior makes image embeddings of another width than the decoder takes.
    #[error(
        "the prior makes image embeddings of width {prior_width}, the decoder UNet takes \
         {decoder_width}: {prior} and {decoder} are not a matching prior and decoder"
    )]
    EmbeddingWidth {
        /// The prior's output width.
        prior_width: usize,
        /// The decoder UNet's image-embedding width.
        decoder_width: usize,
        /// Where the prior came from.
        prior: String,
        /// Where the decoder came from.
        decoder: String,
    },
    /// The request needs a decoder of another kind than the one loaded (inpainting needs an
    /// inpainting UNet, a hint needs the ControlNet-depth UNet, …).
    #[error("{mode} needs {needs}; {found}")]
    UnsupportedMode {
        /// The mode asked for.
        mode: &'static str,
        /// What it needs.
        needs: String,
        /// What the pipeline has.
        found: String,
    },
    /// The request needs a stage the pipeline was built without.
    #[error("this pipeline has no {0} stage")]
    MissingStage(Stage),
    /// A pipeline folder that does not exist (or is not a folder).
    #[error("{0} is not a folder: no such folder, or a file")]
    NoFolder(PathBuf),
    /// A pipeline folder lacks a component.
    #[error("{dir} is not a complete pipeline folder: {component} is missing")]
    MissingComponent {
        /// The pipeline folder.
        dir: PathBuf,
        /// The missing file or folder.
        component: String,
    },
    /// The step callback asked to stop.
    #[error("cancelled after {stage} step {step}")]
    Cancelled {
        /// The stage that was running.
        stage: Stage,
        /// Steps of that stage done (counted from 1).
        step: usize,
    },
    /// The latents stopped being finite numbers (non-finite weights or embeddings, or a
    /// guidance scale so large that the prediction overflows).
    #[error(
        "the {stage} latents became non-finite (NaN or infinity) at step {step} (timestep {timestep}): check the weights and the guidance scale"
    )]
    NonFinite {
        /// The stage that was running.
        stage: Stage,
        /// The step (counted from 1) after which they were found.
        step: usize,
        /// Its timestep.
        timestep: f64,
    },
    /// The MoVQ decoder turned finite latents into non-finite pixels (NaN or infinity): its
    /// weights are broken. Raised instead of writing a black image.
    #[error(
        "the MoVQ decoder produced non-finite pixels (NaN or infinity) from finite latents: check the MoVQ weights"
    )]
    NonFiniteImage,
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
    /// A component's `config.json` (or `model_index.json`) is missing or malformed.
    #[error(transparent)]
    Config(#[from] kandinsky_common::ConfigError),
    /// An input image could not be read or decoded.
    #[error("cannot read the image {path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: image::ImageError,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A pipeline repository could not be fetched from the Hugging Face Hub or its cache.
    #[cfg(feature = "hub")]
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    /// A burn backend cannot be used: not compiled in, or not computing in the asked dtype.
    #[error("the {backend} backend is unavailable: {reason}")]
    Backend {
        /// The backend (`flex`, `wgpu`, `vulkan`, `metal`, `cuda`).
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The device failed to run the queued work or to read a result back (a GPU error, a lost
    /// device).
    #[error("the device failed: {0}")]
    Device(String),
}

impl PipelineError {
    /// An [`InvalidOption`](Self::InvalidOption) error.
    pub(crate) fn invalid(
        option: &'static str,
        found: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self::InvalidOption {
            option,
            found: found.to_string(),
            expected: expected.into(),
        }
    }

    /// A [`Shape`](Self::Shape) error.
    pub(crate) fn shape(what: &'static str, found: &[usize], expected: &[usize]) -> Self {
        Self::Shape {
            what,
            found: found.to_vec(),
            expected: expected.to_vec(),
        }
    }

    /// Whether the caller's input is at fault (an option, a shape, a count, a mode the
    /// pipeline cannot run), as opposed to the folders, the weights or the device.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidOption { .. } | Self::Shape { .. } | Self::Count { .. }
        )
    }
}
