//! What the published pipeline repositories hold, in one place: which component folders each
//! stage reads, which files make up each component, which repositories are the defaults, and
//! which model a decoder folder is. Folder checks, the Hub download and the docs all read it.
//!
//! | repository (`kandinsky-community/…`) | model | components read |
//! | --- | --- | --- |
//! | `kandinsky-2-2-prior`, `kandinsky-2-1-prior` | prior | `prior`, `text_encoder`, `tokenizer`, `scheduler`; `image_encoder` (zero-image negative, image inputs), `image_processor` (image inputs) |
//! | `kandinsky-2-2-decoder`, `-2-2-decoder-inpaint`, `-2-2-controlnet-depth` | 2.2 decoder | `unet`, `movq`, `scheduler` |
//! | `kandinsky-2-1`, `kandinsky-2-1-inpaint` | 2.1 decoder | `text_encoder` (MultilingualCLIP), `tokenizer` (XLM-R), `unet`, `movq`, `scheduler` |

use std::path::Path;

use kandinsky_common::weights::{
    DIFFUSERS_FP16, DIFFUSERS_FP32, TRANSFORMERS_FP16, TRANSFORMERS_FP32,
};
use kandinsky_unet::config::{AdditionEmbedType, UNetConfig};

use crate::error::PipelineError;

/// The Kandinsky model a decoder belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Kandinsky 2.1: the decoder also reads the prompt (MultilingualCLIP).
    V21,
    /// Kandinsky 2.2: the decoder reads only the image embedding.
    V22,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V21 => "2.1",
            Version::V22 => "2.2",
        })
    }
}

/// Which published decoder UNet a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecoderKind {
    /// Text-to-image (and image-to-image, fusion, variations, emb2emb).
    Plain,
    /// Inpainting (9 input channels): inpainting and outpainting.
    Inpaint,
    /// ControlNet-depth (2.2): follows a depth hint.
    ControlNetDepth,
}

/// What a decoder folder is, read from its UNet's `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecoderLayout {
    /// 2.1 or 2.2.
    pub version: Version,
    /// Plain, inpainting or ControlNet.
    pub kind: DecoderKind,
}

impl DecoderLayout {
    /// The layout a UNet config describes.
    pub fn of_unet(config: &UNetConfig) -> Self {
        let version = match config.addition_embed_type {
            AdditionEmbedType::TextImage => Version::V21,
            AdditionEmbedType::Image | AdditionEmbedType::ImageHint => Version::V22,
        };
        let kind = if config.addition_embed_type == AdditionEmbedType::ImageHint {
            DecoderKind::ControlNetDepth
        } else if config.in_channels > config.out_channels / 2 {
            DecoderKind::Inpaint
        } else {
            DecoderKind::Plain
        };
        Self { version, kind }
    }

    /// The layout of the decoder folder `dir` (reads `unet/config.json` only).
    pub fn of_folder(dir: &Path) -> Result<Self, PipelineError> {
        Ok(Self::of_unet(&UNetConfig::from_file(
            &dir.join("unet/config.json"),
        )?))
    }

    /// The components the decoder stage reads.
    pub fn components(&self) -> &'static [Component] {
        match self.version {
            Version::V21 => DECODER_21,
            Version::V22 => DECODER_22,
        }
    }
}

/// The width of the image embeddings a decoder UNet takes.
pub fn unet_embedding_width(config: &UNetConfig) -> usize {
    match config.addition_embed_type {
        AdditionEmbedType::TextImage => config.cross_attention_dim,
        _ => config.encoder_hid_dim,
    }
}

/// What a component folder holds, which decides its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// A diffusers model: `config.json` and `diffusion_pytorch_model[.fp16].safetensors`.
    Diffusers,
    /// A transformers model: `config.json` and `model[.fp16].safetensors`.
    Transformers,
    /// Small files (tokenizer, scheduler, image processor): all of them.
    Files,
}

/// A component folder of a pipeline repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Component {
    /// Its folder name (`prior`, `unet`, `tokenizer`, …).
    pub folder: &'static str,
    /// What it holds.
    pub kind: ComponentKind,
}

impl Component {
    const fn new(folder: &'static str, kind: ComponentKind) -> Self {
        Self { folder, kind }
    }

    /// The weight file names (full precision, fp16 variant), or `None` for a folder of small
    /// files.
    pub fn weight_files(&self) -> Option<[&'static str; 2]> {
        match self.kind {
            ComponentKind::Diffusers => Some([DIFFUSERS_FP32, DIFFUSERS_FP16]),
            ComponentKind::Transformers => Some([TRANSFORMERS_FP32, TRANSFORMERS_FP16]),
            ComponentKind::Files => None,
        }
    }

    /// The files needed, for messages: `unet/config.json, unet/diffusion_pytorch_model.safetensors
    /// (or …fp16…)`, or `tokenizer/*`.
    pub fn describe(&self) -> String {
        match self.weight_files() {
            None => format!("{}/*", self.folder),
            Some([full, half]) => {
                format!("{0}/config.json, {0}/{full} (or {0}/{half})", self.folder)
            }
        }
    }
}

/// The pipeline folder's index file, which every repository has.
pub const MODEL_INDEX: &str = "model_index.json";

/// The prior: diffusers `PriorTransformer`.
pub const PRIOR: Component = Component::new("prior", ComponentKind::Diffusers);
/// The prior's CLIP text encoder (or the 2.1 decoder's MultilingualCLIP).
pub const TEXT_ENCODER: Component = Component::new("text_encoder", ComponentKind::Transformers);
/// A tokenizer folder.
pub const TOKENIZER: Component = Component::new("tokenizer", ComponentKind::Files);
/// A scheduler folder (`scheduler_config.json`).
pub const SCHEDULER: Component = Component::new("scheduler", ComponentKind::Files);
/// The prior repository's CLIP image encoder.
pub const IMAGE_ENCODER: Component = Component::new("image_encoder", ComponentKind::Transformers);
/// The prior repository's CLIP image preprocessing.
pub const IMAGE_PROCESSOR: Component = Component::new("image_processor", ComponentKind::Files);
/// The decoder UNet.
pub const UNET: Component = Component::new("unet", ComponentKind::Diffusers);
/// The MoVQ autoencoder.
pub const MOVQ: Component = Component::new("movq", ComponentKind::Diffusers);

/// What the prior stage always reads.
pub const PRIOR_CORE: &[Component] = &[PRIOR, TEXT_ENCODER, TOKENIZER, SCHEDULER];
/// What the prior stage reads for image inputs (fusion, variations, emb2emb).
pub const PRIOR_IMAGES: &[Component] = &[IMAGE_ENCODER, IMAGE_PROCESSOR];
const DECODER_22: &[Component] = &[UNET, MOVQ, SCHEDULER];
const DECODER_21: &[Component] = &[TEXT_ENCODER, TOKENIZER, UNET, MOVQ, SCHEDULER];

/// The scheduler config inside a repository.
pub(crate) const SCHEDULER_CONFIG: &str = "scheduler/scheduler_config.json";

/// The published repositories: (prior, decoder) for a version and decoder kind. 2.1 has no
/// ControlNet; asking for it gives `None`.
pub fn default_repos(version: Version, kind: DecoderKind) -> Option<(&'static str, &'static str)> {
    const P21: &str = "kandinsky-community/kandinsky-2-1-prior";
    const P22: &str = "kandinsky-community/kandinsky-2-2-prior";
    Some(match (version, kind) {
        (Version::V21, DecoderKind::Plain) => (P21, "kandinsky-community/kandinsky-2-1"),
        (Version::V21, DecoderKind::Inpaint) => (P21, "kandinsky-community/kandinsky-2-1-inpaint"),
        (Version::V21, DecoderKind::ControlNetDepth) => return None,
        (Version::V22, DecoderKind::Plain) => (P22, "kandinsky-community/kandinsky-2-2-decoder"),
        (Version::V22, DecoderKind::Inpaint) => {
            (P22, "kandinsky-community/kandinsky-2-2-decoder-inpaint")
        }
        (Version::V22, DecoderKind::ControlNetDepth) => {
            (P22, "kandinsky-community/kandinsky-2-2-controlnet-depth")
        }
    })
}

/// Checks that `dir` is a pipeline folder with `model_index.json` and `components`.
pub(crate) fn check_folder(dir: &Path, components: &[Component]) -> Result<(), PipelineError> {
    let missing = |component: &str| PipelineError::MissingComponent {
        dir: dir.to_path_buf(),
        component: component.into(),
    };
    if !dir.is_dir() {
        return Err(PipelineError::NoFolder(dir.to_path_buf()));
    }
    if !dir.join(MODEL_INDEX).is_file() {
        return Err(missing(MODEL_INDEX));
    }
    match components.iter().find(|c| !dir.join(c.folder).is_dir()) {
        Some(c) => Err(missing(c.folder)),
        None => Ok(()),
    }
}
