//! A disk cache of the zero-image negative embedding, so that text-to-image runs without a
//! negative prompt need the prior repository's image encoder (7 GB for 2.2) only once.
//!
//! Entries live in `$KANDINSKY_CACHE`, else `$XDG_CACHE_HOME/kandinsky`, else
//! `~/.cache/kandinsky` ([`default_dir`]), one per image encoder and dtype, named by a hash of
//! [`PriorStage::cache_key`](crate::PriorStage::cache_key) (a Hub repository's commit, or a
//! local folder with the size and modification time of each encoder file, so replacing the
//! encoder makes a new entry): `zero-image-embeds/{hash}.bin` holding the magic `KZE1`, the
//! width as a little-endian u32, then the values as little-endian f32.
//!
//! An entry is checked when read ([`ZeroEmbedCache::load`]): a regular file of exactly the
//! size its width needs, that width the prior's, every value finite. Anything else is a
//! [`CacheError`] naming the file; the caller computes the embedding again and overwrites it.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use kandinsky_pipeline::embed_cache::ZeroEmbedCache;
//!
//! let dir = std::env::temp_dir().join(format!("kandinsky-doc-cache-{}", std::process::id()));
//! let device = Device::flex();
//! let cache = ZeroEmbedCache::in_dir(&dir, "local:/models/kandinsky-2-2-prior", "f32");
//! assert!(cache.load(4, &device)?.is_none()); // nothing yet
//! cache.save(Tensor::from_floats([[0.5, -1.0, 2.0, 0.0]], &device))?;
//! let embed = cache.load(4, &device)?.expect("just saved");
//! assert_eq!(embed.dims(), [1, 4]);
//! assert!(cache.load(8, &device).is_err()); // another width: refused, naming the file
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

const MAGIC: &[u8; 4] = b"KZE1";
const HEADER: usize = 8;

/// A cache entry that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file could not be read or written.
    #[error("cannot use the cache file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not an entry for this prior: wrong magic, size, width or values.
    #[error("invalid cache file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Expected versus found.
        message: String,
    },
}

/// The default cache folder: `$KANDINSKY_CACHE`, else `$XDG_CACHE_HOME/kandinsky`, else
/// `~/.cache/kandinsky`; `None` when none of these variables is set.
pub fn default_dir() -> Option<PathBuf> {
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

/// Decodes an entry's bytes, which must hold exactly `width` finite values.
pub fn parse_entry(bytes: &[u8], width: usize) -> Result<Vec<f32>, String> {
    let expected = entry_len(width).ok_or_else(|| format!("width {width} is too large"))?;
    if bytes.len() != expected {
        return Err(format!(
            "expected {expected} bytes (width {width}), found {}",
            bytes.len()
        ));
    }
    let (magic, rest) = bytes.split_at(4);
    if magic != MAGIC {
        return Err(format!("expected the magic {MAGIC:?}, found {magic:?}"));
    }
    let (stored, values) = rest.split_at(4);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    if usize::try_from(stored) != Ok(width) {
        return Err(format!("expected width {width}, found {stored}"));
    }
    let values: Vec<f32> = values
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "value {i} is {}, expected a finite number",
            values[i]
        ));
    }
    Ok(values)
}

/// The size of an entry of `width` values.
fn entry_len(width: usize) -> Option<usize> {
    u32::try_from(width).ok()?;
    width.checked_mul(4)?.checked_add(HEADER)
}

/// The cache entry of one image encoder and dtype.
#[derive(Debug, Clone)]
pub struct ZeroEmbedCache {
    path: PathBuf,
}

impl ZeroEmbedCache {
    /// The entry of `key` (what identifies the prior's image encoder:
    /// [`PriorStage::cache_key`](crate::PriorStage::cache_key)) and `dtype` in the
    /// [`default_dir`], or `None` when there is none.
    pub fn new(key: &str, dtype: &str) -> Option<Self> {
        Some(Self::in_dir(&default_dir()?, key, dtype))
    }

    /// The entry of `key` and `dtype` under the cache folder `dir`.
    pub fn in_dir(dir: &Path, key: &str, dtype: &str) -> Self {
        let name = format!("{:016x}.bin", fnv1a(&format!("{key}\n{dtype}")));
        Self {
            path: dir.join("zero-image-embeds").join(name),
        }
    }

    /// The cached embedding (1, `width`): `Ok(None)` when there is no entry, an error when
    /// the entry is not a regular file of `width` finite values. Reads at most the size such
    /// an entry has.
    pub fn load(&self, width: usize, device: &Device) -> Result<Option<Tensor<2>>, CacheError> {
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let invalid = |message: String| CacheError::Invalid {
            path: self.path.clone(),
            message,
        };
        let meta = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(io)?,
        };
        if !meta.is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let expected = entry_len(width).ok_or_else(|| invalid(format!("width {width}")))?;
        if meta.len() != expected as u64 {
            return Err(invalid(format!(
                "expected {expected} bytes (width {width}), found {}",
                meta.len()
            )));
        }
        let mut bytes = Vec::with_capacity(expected);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::fs::File::open(&self.path).map_err(io)?,
                expected as u64 + 1,
            ),
            &mut bytes,
        )
        .map_err(io)?;
        let values = parse_entry(&bytes, width).map_err(invalid)?;
        Ok(Some(Tensor::from_data(
            TensorData::new(values, [1, width]),
            device,
        )))
    }

    /// Writes `embed` (1, E) through a temporary file renamed into place (a concurrent reader
    /// sees the old entry or the new one, never a part).
    pub fn save(&self, embed: Tensor<2>) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let values = embed
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| io(std::io::Error::other(format!("{e:?}"))))?;
        let width = u32::try_from(values.len())
            .map_err(|_| io(std::io::Error::other("the embedding is too wide")))?;
        let mut bytes = Vec::with_capacity(HEADER + 4 * values.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&width.to_le_bytes());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let dir = self.path.parent().expect("the entry is inside a folder");
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = crate::image::temporary_path(&self.path, std::process::id());
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// The entry's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(width: u32, values: &[f32]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&width.to_le_bytes());
        values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        bytes
    }

    #[test]
    fn entries_are_checked() {
        assert_eq!(parse_entry(&entry(2, &[1.0, -2.0]), 2), Ok(vec![1.0, -2.0]));
        let errors = [
            (entry(2, &[1.0, -2.0]), 3, "expected 20 bytes"),
            (entry(3, &[1.0, -2.0]), 2, "expected width 2, found 3"),
            (entry(2, &[1.0, f32::NAN]), 2, "value 1 is NaN"),
            (entry(1, &[f32::INFINITY]), 1, "value 0 is inf"),
            (b"KZE2\x01\0\0\0\0\0\0\0".to_vec(), 1, "magic"),
            (Vec::new(), 1, "found 0"),
        ];
        for (bytes, width, message) in errors {
            let err = parse_entry(&bytes, width).unwrap_err();
            assert!(err.contains(message), "{err} lacks {message}");
        }
        assert!(parse_entry(&[], usize::MAX).is_err());
    }

    #[test]
    fn a_wrong_entry_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("kandinsky-cache-test-{}", std::process::id()));
        let device = Device::flex();
        let cache = ZeroEmbedCache::in_dir(&dir, "key", "f32");
        std::fs::create_dir_all(cache.path().parent().unwrap()).unwrap();
        std::fs::write(cache.path(), entry(2, &[f32::NAN, 0.0])).unwrap();
        let err = cache.load(2, &device).unwrap_err().to_string();
        assert!(err.contains(&cache.path().display().to_string()), "{err}");
        // A folder in its place.
        std::fs::remove_file(cache.path()).unwrap();
        std::fs::create_dir(cache.path()).unwrap();
        let err = cache.load(2, &device).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
