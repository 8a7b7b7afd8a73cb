//! Pipeline folders from local paths or from the Hugging Face Hub.
//!
//! Hub repositories go into the cache layout of Python's `huggingface_hub`
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
//! `models--{org}--{name}/snapshots/{commit}/…`), so a cache filled from Python is used as is.
//! Only the files a run needs are fetched: each component's `config.json` and one
//! safetensors file (the fp16 variant when computing in half precision and the repository has
//! one), and every file of the small folders (tokenizer, scheduler).

use std::path::{Path, PathBuf};

use crate::layout::{Component, ComponentKind, MODEL_INDEX};

/// Why a repository could not be opened or fetched.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No cache folder could be found.
    #[error("cannot find the Hugging Face cache: set HF_HOME or HF_HUB_CACHE")]
    NoCache,
    /// Files a run needs are neither in the cache nor downloadable.
    #[error(
        "{message}\nthis run needs from {repo}: {needs}\nto add them by hand: `huggingface-cli \
         download {repo}` (or the files above) fills the cache at {cache}; or download the \
         repository into a folder and pass the folder instead of {repo}",
        needs = .needs.join(", "),
        cache = .cache.display()
    )]
    Unavailable {
        /// The repository id.
        repo: String,
        /// What went wrong.
        message: String,
        /// The files needed, for the message.
        needs: Vec<String>,
        /// The cache folder.
        cache: PathBuf,
    },
}

type Result<T, E = String> = std::result::Result<T, E>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*)) };
}

fn weight_files(component: &Component, prefer_fp16: bool) -> [&'static str; 2] {
    let [full, half] = component.weight_files().unwrap_or(["", ""]);
    if prefer_fp16 {
        [half, full]
    } else {
        [full, half]
    }
}

/// Where a pipeline comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A folder on disk.
    Local(PathBuf),
    /// A Hub repository id (`org/name`).
    Hub(String),
}

impl Source {
    /// An existing path is a folder; otherwise an `org/name` id is a Hub repository.
    pub fn parse(spec: &str) -> Self {
        let path = Path::new(spec);
        if path.exists() || !is_repo_id(spec) {
            Source::Local(path.to_path_buf())
        } else {
            Source::Hub(spec.to_string())
        }
    }
}

fn is_repo_id(spec: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(spec.split('/').collect::<Vec<_>>()[..], [org, name] if ok(org) && ok(name))
}

/// Whether `HF_HUB_OFFLINE` asks for no network access (as huggingface_hub reads it).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The Hub cache folder, as huggingface_hub finds it.
pub fn cache_dir() -> Result<PathBuf, HubError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return Ok(dir.into());
    }
    if let Some(home) = var("HF_HOME") {
        return Ok(PathBuf::from(home).join("hub"));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(xdg).join("huggingface/hub"));
    }
    match var("HOME").or_else(|| var("USERPROFILE")) {
        Some(home) => Ok(PathBuf::from(home).join(".cache/huggingface/hub")),
        None => Err(HubError::NoCache),
    }
}

/// Reports download progress.
pub trait DownloadProgress {
    /// A download of `size` bytes of `file` from `repo` starts.
    fn start(&mut self, repo: &str, file: &str, size: usize);
    /// `bytes` more arrived.
    fn advance(&mut self, bytes: usize);
    /// The download finished.
    fn finish(&mut self);
}

/// How [`Kandinsky::from_pretrained`](crate::Kandinsky::from_pretrained) fetches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubOptions {
    /// Use the cache only (as `HF_HUB_OFFLINE=1`; see [`offline_from_env`]).
    pub offline: bool,
    /// Fetch the fp16 weight files where a repository has them (for f16/bf16 devices).
    pub prefer_fp16: bool,
    /// Fetch the prior's image encoder and image processor now (image inputs, or the
    /// zero-image negative embedding of a request without a negative prompt); otherwise they
    /// are fetched when a request first needs them.
    pub image_encoder: bool,
}

/// Ignores download progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl DownloadProgress for NoProgress {
    fn start(&mut self, _repo: &str, _file: &str, _size: usize) {}
    fn advance(&mut self, _bytes: usize) {}
    fn finish(&mut self) {}
}

/// A Hub repository at one commit, in the local cache.
pub struct HubRepo {
    id: String,
    commit: String,
    snapshot: PathBuf,
    cache: PathBuf,
    /// The repository's files (online), or why only the cache is used.
    listing: std::result::Result<Vec<String>, String>,
    api: Option<hf_hub::api::sync::ApiRepo>,
}

impl std::fmt::Debug for HubRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubRepo")
            .field("id", &self.id)
            .field("commit", &self.commit)
            .field("snapshot", &self.snapshot)
            .field("online", &self.listing.is_ok())
            .finish()
    }
}

impl HubRepo {
    /// Opens `id`: asks the Hub for its current commit and files; with `offline`, or when the
    /// Hub cannot be reached, uses the commit that the cache's `refs/main` names (as
    /// huggingface_hub does), and [`fetch`](Self::fetch) then only checks the cache.
    pub fn open(id: &str, offline: bool) -> Result<Self, HubError> {
        let cache = cache_dir()?;
        let repo_dir = cache.join(format!("models--{}", id.replace('/', "--")));
        let cached = |why: String| {
            let commit = std::fs::read_to_string(repo_dir.join("refs/main"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            Self {
                id: id.to_string(),
                snapshot: repo_dir.join("snapshots").join(&commit),
                commit,
                cache: cache.clone(),
                listing: Err(why),
                api: None,
            }
        };
        if offline {
            return Ok(cached(
                "downloads are off (--offline or HF_HUB_OFFLINE)".to_string(),
            ));
        }
        Ok(Self::open_online(id, &cache, &repo_dir).unwrap_or_else(|e| cached(e.to_string())))
    }

    fn open_online(id: &str, cache: &Path, repo_dir: &Path) -> Result<Self> {
        let mut builder =
            hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
                .with_progress(false)
                .with_retries(2);
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            builder = builder.with_token(Some(token));
        }
        let api = builder
            .build()
            .map_err(|e| e.to_string())?
            .model(id.to_string());
        let info = api
            .info()
            .map_err(|e| format!("the Hub could not be reached for {id}: {e}"))?;
        Ok(Self {
            id: id.to_string(),
            snapshot: repo_dir.join("snapshots").join(&info.sha),
            commit: info.sha,
            cache: cache.to_path_buf(),
            listing: Ok(info.siblings.into_iter().map(|s| s.rfilename).collect()),
            api: Some(api),
        })
    }

    /// The repository id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The snapshot folder of its commit in the cache.
    pub fn snapshot(&self) -> &Path {
        &self.snapshot
    }

    /// The repository id and commit, which identify its contents.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.commit)
    }

    /// Makes sure the snapshot folder holds what `components` need and returns it.
    pub fn fetch(
        &self,
        components: &[Component],
        prefer_fp16: bool,
        progress: &mut dyn DownloadProgress,
    ) -> Result<PathBuf, HubError> {
        let result = match &self.listing {
            Err(why) => self.check_cached(components, prefer_fp16, why),
            Ok(listing) => self.download(listing, components, prefer_fp16, progress),
        };
        result.map_err(|message| HubError::Unavailable {
            repo: self.id.clone(),
            message,
            needs: std::iter::once(MODEL_INDEX.to_string())
                .chain(components.iter().map(Component::describe))
                .collect(),
            cache: self.cache.clone(),
        })?;
        Ok(self.snapshot.clone())
    }

    fn check_cached(&self, components: &[Component], prefer_fp16: bool, why: &str) -> Result<()> {
        let has = |file: &str| self.snapshot.join(file).is_file();
        let mut missing = Vec::new();
        if !has(MODEL_INDEX) {
            missing.push(MODEL_INDEX.to_string());
        }
        for component in components {
            let folder = component.folder;
            match component.kind {
                ComponentKind::Files => {
                    if !self.snapshot.join(folder).is_dir() {
                        missing.push(format!("{folder}/"));
                    }
                }
                _ => {
                    if !has(&format!("{folder}/config.json")) {
                        missing.push(format!("{folder}/config.json"));
                    }
                    let weights = weight_files(component, prefer_fp16);
                    if !weights.iter().any(|w| has(&format!("{folder}/{w}"))) {
                        missing.push(format!("{folder}/{}", weights[0]));
                    }
                }
            }
        }
        if self.commit.is_empty() {
            bail!("{} is not in the Hugging Face cache and {why}", self.id);
        }
        if !missing.is_empty() {
            bail!(
                "the cached snapshot {} of {} lacks {} and {why}",
                self.snapshot.display(),
                self.id,
                missing.join(", ")
            );
        }
        Ok(())
    }

    /// The files of `listing` that `components` need.
    fn select(
        &self,
        listing: &[String],
        components: &[Component],
        prefer_fp16: bool,
    ) -> Result<Vec<String>> {
        let listed = |file: &str| listing.iter().any(|f| f == file);
        let mut files = vec![MODEL_INDEX.to_string()];
        for component in components {
            let folder = component.folder;
            if component.kind == ComponentKind::Files {
                let prefix = format!("{folder}/");
                let all: Vec<String> = listing
                    .iter()
                    .filter(|f| f.starts_with(&prefix))
                    .cloned()
                    .collect();
                if all.is_empty() {
                    bail!("{} has no {folder}/ folder", self.id);
                }
                files.extend(all);
                continue;
            }
            let config = format!("{folder}/config.json");
            let weights = weight_files(component, prefer_fp16)
                .iter()
                .map(|w| format!("{folder}/{w}"))
                .find(|w| listed(w));
            match (listed(&config), weights) {
                (true, Some(weights)) => files.extend([config, weights]),
                (false, _) => bail!("{} has no {config}", self.id),
                (true, None) => {
                    let found: Vec<&String> = listing
                        .iter()
                        .filter(|f| f.starts_with(&format!("{folder}/")))
                        .collect();
                    bail!(
                        "{} has no single-file safetensors weights in {folder}/ (found: {found:?}); \
                         this program reads `{}` or `{}`",
                        self.id,
                        weight_files(component, false)[0],
                        weight_files(component, false)[1]
                    )
                }
            }
        }
        Ok(files)
    }

    fn download(
        &self,
        listing: &[String],
        components: &[Component],
        prefer_fp16: bool,
        progress: &mut dyn DownloadProgress,
    ) -> Result<()> {
        let Some(api) = self.api.as_ref() else {
            bail!("{} has no Hub client", self.id);
        };
        for file in self.select(listing, components, prefer_fp16)? {
            if self.snapshot.join(&file).is_file() {
                continue;
            }
            let bridge = Bridge {
                repo: &self.id,
                progress: &mut *progress,
            };
            api.download_with_progress(&file, bridge)
                .map_err(|e| format!("downloading {file} of {} failed: {e}", self.id))?;
            if !self.snapshot.join(&file).is_file() {
                bail!(
                    "{} changed on the Hub while downloading (now past commit {}); run again",
                    self.id,
                    self.commit
                );
            }
        }
        Ok(())
    }
}

/// Passes hf-hub's download progress on.
struct Bridge<'a> {
    repo: &'a str,
    progress: &'a mut dyn DownloadProgress,
}

impl hf_hub::api::Progress for Bridge<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.progress.start(self.repo, filename, size);
    }

    fn update(&mut self, size: usize) {
        self.progress.advance(size);
    }

    fn finish(&mut self) {
        self.progress.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_paths() {
        assert_eq!(
            Source::parse("kandinsky-community/kandinsky-2-2-prior"),
            Source::Hub("kandinsky-community/kandinsky-2-2-prior".into())
        );
        for local in ["./x/y", "/abs/path", "a/b/c", "../up", "single"] {
            assert_eq!(Source::parse(local), Source::Local(local.into()), "{local}");
        }
    }

    #[test]
    fn selects_only_needed_files() {
        let repo = HubRepo {
            id: "org/prior".into(),
            commit: "abc".into(),
            snapshot: "/nowhere".into(),
            cache: "/cache".into(),
            listing: Err(String::new()),
            api: None,
        };
        let listing: Vec<String> = [
            "model_index.json",
            "prior/config.json",
            "prior/diffusion_pytorch_model.safetensors",
            "prior/diffusion_pytorch_model.fp16.safetensors",
            "image_encoder/config.json",
            "image_encoder/model.safetensors",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "scheduler/scheduler_config.json",
            "README.md",
        ]
        .map(String::from)
        .into();
        let components = [crate::layout::PRIOR, crate::layout::TOKENIZER];
        assert_eq!(
            repo.select(&listing, &components, true).unwrap(),
            [
                "model_index.json",
                "prior/config.json",
                "prior/diffusion_pytorch_model.fp16.safetensors",
                "tokenizer/vocab.json",
                "tokenizer/merges.txt"
            ]
        );
        let full = repo.select(&listing, &components[..1], false).unwrap();
        assert_eq!(full[2], "prior/diffusion_pytorch_model.safetensors");
        let err = repo
            .select(&listing, &[crate::layout::TEXT_ENCODER], false)
            .unwrap_err();
        assert!(err.contains("no text_encoder/config.json"), "{err}");
    }
}
