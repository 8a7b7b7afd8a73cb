//! Where a stage's component folders are: a local pipeline folder, or a Hugging Face Hub
//! repository whose components are fetched into the cache when first needed.

use std::path::{Path, PathBuf};

use crate::error::PipelineError;
use crate::layout::{Component, check_folder};

/// A pipeline repository a stage reads.
#[derive(Debug)]
pub(crate) enum Repository {
    /// A folder on disk, in diffusers layout.
    Local(PathBuf),
    /// A Hub repository at one commit; components not yet in the cache are downloaded when a
    /// stage first needs them.
    #[cfg(feature = "hub")]
    Hub {
        repo: Box<crate::hub::HubRepo>,
        prefer_fp16: bool,
    },
}

impl Repository {
    /// A local folder, checked to hold `model_index.json` and `components`.
    pub fn local(dir: &Path, components: &[Component]) -> Result<Self, PipelineError> {
        check_folder(dir, components)?;
        Ok(Repository::Local(dir.to_path_buf()))
    }

    /// The folder the components are in.
    pub fn dir(&self) -> &Path {
        match self {
            Repository::Local(dir) => dir,
            #[cfg(feature = "hub")]
            Repository::Hub { repo, .. } => repo.snapshot(),
        }
    }

    /// What the repository is, for messages: a path or a Hub id.
    pub fn name(&self) -> String {
        match self {
            Repository::Local(dir) => dir.display().to_string(),
            #[cfg(feature = "hub")]
            Repository::Hub { repo, .. } => repo.id().to_string(),
        }
    }

    /// What identifies the contents, for caches kept beside the pipeline: a local folder's
    /// canonical path, or a Hub repository's id and commit.
    pub fn key(&self) -> String {
        match self {
            Repository::Local(dir) => {
                let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                format!("local:{}", dir.display())
            }
            #[cfg(feature = "hub")]
            Repository::Hub { repo, .. } => repo.key(),
        }
    }

    /// The folder of `component`, fetched first from the Hub if needed; a local folder
    /// without it is a [`PipelineError::MissingComponent`].
    pub fn component(&self, component: Component) -> Result<PathBuf, PipelineError> {
        match self {
            Repository::Local(dir) => {
                check_folder(dir, &[component])?;
            }
            #[cfg(feature = "hub")]
            Repository::Hub { repo, prefer_fp16 } => {
                repo.fetch(&[component], *prefer_fp16, &mut crate::hub::NoProgress)?;
            }
        }
        Ok(self.dir().join(component.folder))
    }
}
