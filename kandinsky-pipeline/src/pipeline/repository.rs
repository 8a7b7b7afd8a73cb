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

    /// `spec` as a Hub id (`org/name`, opened at its current commit, `first` fetched now) or
    /// a local folder (an existing path; checked to hold `first`).
    #[cfg(feature = "hub")]
    pub fn open(
        spec: &str,
        first: &[Component],
        options: &crate::hub::HubOptions,
        progress: &mut dyn crate::hub::DownloadProgress,
    ) -> Result<Self, PipelineError> {
        use crate::hub::{HubRepo, Source};
        Ok(match Source::parse(spec) {
            Source::Local(dir) => Repository::local(&dir, first)?,
            Source::Hub(id) => {
                let repo = HubRepo::open(&id, options.offline)?;
                repo.fetch(first, options.prefer_fp16, progress)?;
                Repository::Hub {
                    repo: Box::new(repo),
                    prefer_fp16: options.prefer_fp16,
                }
            }
        })
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

    /// What identifies the contents of `components`, for caches of what they compute: a Hub
    /// repository's id and commit, or a local folder's canonical path with the name, size and
    /// modification time of every file in those components (replacing a file changes the key).
    pub fn key(&self, components: &[Component]) -> String {
        match self {
            Repository::Local(dir) => {
                let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                let mut key = format!("local:{}", dir.display());
                for component in components {
                    key.push_str(&fingerprint(&dir.join(component.folder)));
                }
                key
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

/// One line per file of `dir` (sorted): its name, size, modification time in nanoseconds and
/// inode (links followed); an unreadable folder or file gives a line saying so.
fn fingerprint(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!("\n{}: unreadable", dir.display());
    };
    let mut lines: Vec<String> = entries
        .flatten()
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            match std::fs::metadata(entry.path()) {
                Ok(meta) => {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    // The inode too where there is one: a file replaced within the clock's
                    // resolution still changes the key.
                    #[cfg(unix)]
                    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
                    #[cfg(not(unix))]
                    let inode = 0;
                    format!("\n{name} {} {modified} {inode}", meta.len())
                }
                Err(_) => format!("\n{name} unreadable"),
            }
        })
        .collect();
    lines.sort();
    lines.concat()
}
