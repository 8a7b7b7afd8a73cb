//! Reading a component's `config.json`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A `config.json` that could not be read or does not describe a supported model.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or a field has the wrong type or an unknown value.
    #[error("invalid config {path}: field `{field}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The path of the offending field inside the JSON document (`.` for the root).
        field: String,
        /// What serde found wrong, with line and column.
        message: String,
    },
    /// The file parses but a value is out of the supported range.
    #[error("unsupported config {path}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// Expected versus found.
        message: String,
    },
}

/// Reads and deserializes a JSON config file; unknown fields are left to the target type
/// (diffusers configs carry bookkeeping such as `_class_name` that models ignore).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = read_config_text(path)?;
    parse_json(&text, path)
}

/// The most bytes a config file may have (real ones have a few KB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file as text: only a regular file (a FIFO would block, a device such as
/// `/dev/zero` never ends), of at most [`MAX_CONFIG_BYTES`].
pub fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    let io = |source: std::io::Error| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = crate::files::read_regular(path, MAX_CONFIG_BYTES).map_err(io)?;
    String::from_utf8(bytes).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

/// Deserializes JSON text, attributing errors to `path` and to the failing field.
pub fn parse_json<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| ConfigError::Parse {
        path: path.to_path_buf(),
        field: err.path().to_string(),
        message: err.inner().to_string(),
    })
}

/// Upper bounds on the sizes a config may declare, checked before any module is built so that
/// a malformed or hostile `config.json` is refused instead of allocating without limit. Each is
/// far above what any published checkpoint needs (in brackets).
pub mod limits {
    /// Layers of a transformer, or resnets per level of a UNet/MoVQ (48: CLIP ViT-bigG).
    pub const LAYERS: usize = 256;
    /// Levels of a UNet or MoVQ (4).
    pub const LEVELS: usize = 16;
    /// A width: channels, hidden or projection sizes, attention heads (8,192: the prior's
    /// feed-forward).
    pub const WIDTH: usize = 1 << 16;
    /// Tokens of a sequence or positions of a position table (514: XLM-R).
    pub const TOKENS: usize = 1 << 13;
    /// Entries of a vocabulary or a codebook (250,002: XLM-R).
    pub const VOCAB: usize = 1 << 21;
    /// The side of an image a model or preprocessor works at, in pixels (224).
    pub const IMAGE_SIDE: usize = 1 << 13;
}

/// Checks that each `(field, value, max)` is in `1..=max`: an error naming the first field
/// that is not, with the bound.
pub fn check_sizes(path: &Path, fields: &[(&str, usize, usize)]) -> Result<(), ConfigError> {
    for &(field, value, max) in fields {
        if value == 0 {
            return Err(ConfigError::invalid(
                path,
                field,
                "expected a positive value, found 0",
            ));
        }
        if value > max {
            return Err(ConfigError::invalid(
                path,
                field,
                format!("expected at most {max}, found {value}"),
            ));
        }
    }
    Ok(())
}

impl ConfigError {
    /// A value that parsed but is not supported, e.g. a channel count not divisible by the
    /// number of groups.
    pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Cfg {
        #[allow(dead_code)]
        sizes: Vec<usize>,
    }

    #[test]
    fn non_numeric_field_names_the_field() {
        let err =
            parse_json::<Cfg>(r#"{"sizes": [1, "two"]}"#, Path::new("x/config.json")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x/config.json"), "{text}");
        assert!(text.contains("sizes[1]"), "{text}");
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = std::env::temp_dir().join(format!("kandinsky-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A folder, a device and a file past the cap: errors, at once.
        for path in [dir.clone(), PathBuf::from("/dev/zero")] {
            let err = read_config_text(&path).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        let big = dir.join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        let err = read_config_text(&big).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_json_is_an_error() {
        let err = parse_json::<Cfg>("{", Path::new("c.json")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }
}
