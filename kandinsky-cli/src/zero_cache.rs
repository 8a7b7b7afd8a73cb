//! A disk cache of the zero-image negative embedding, so that text-to-image runs without a
//! negative prompt need the prior repository's image encoder (7 GB for 2.2) only once.
//!
//! Files live in `$KANDINSKY_CACHE`, else `$XDG_CACHE_HOME/kandinsky`, else
//! `~/.cache/kandinsky`, one per prior (a Hub repository at a commit, or a local folder's
//! canonical path) and dtype: `zero-image-embeds/{hash}.bin` holding the magic `KZE1`, the
//! width as a little-endian u32, then the values as little-endian f32.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

const MAGIC: &[u8; 4] = b"KZE1";

/// The cache file of one prior and dtype.
pub struct ZeroEmbedCache {
    path: PathBuf,
}

fn cache_root() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("KANDINSKY_CACHE")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kandinsky")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache/kandinsky")))
}

/// FNV-1a, 64 bits: a stable file name for a key.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ZeroEmbedCache {
    /// The cache entry of `key` (what identifies the prior's image encoder) and `dtype`, or
    /// `None` when no cache folder can be found.
    pub fn new(key: &str, dtype: &str) -> Option<Self> {
        let name = format!("{:016x}.bin", fnv1a(&format!("{key}\n{dtype}")));
        Some(Self {
            path: cache_root()?.join("zero-image-embeds").join(name),
        })
    }

    /// The cached embedding (1, E), or `None` when absent or unreadable.
    pub fn load(&self, device: &Device) -> Option<Tensor<2>> {
        let bytes = std::fs::read(&self.path).ok()?;
        let (magic, rest) = bytes.split_first_chunk::<4>()?;
        let (width, values) = rest.split_first_chunk::<4>()?;
        let width = u32::from_le_bytes(*width) as usize;
        if magic != MAGIC || width == 0 || values.len() != 4 * width {
            return None;
        }
        let values: Vec<f32> = values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some(Tensor::from_data(
            TensorData::new(values, [1, width]),
            device,
        ))
    }

    /// Writes `embed` (1, E) through a temporary file renamed into place.
    pub fn save(&self, embed: Tensor<2>) -> std::io::Result<()> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let values = embed
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| invalid(format!("{e:?}")))?;
        let mut bytes = Vec::with_capacity(8 + 4 * values.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(values.len() as u32).to_le_bytes());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let dir = self.path.parent().expect("the cache file has a folder");
        std::fs::create_dir_all(dir)?;
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
