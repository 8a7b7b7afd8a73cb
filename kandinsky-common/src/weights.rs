//! Strict loading of a safetensors checkpoint into a burn module.
//!
//! The file is memory-mapped and its header checked against what the module expects (see
//! [`crate::manifest`]) before any tensor is read: a missing key, an unexpected key, a shape
//! mismatch or a non-float dtype is reported with the file, the key and the expected versus
//! found value, all problems at once. Only then are the tensors copied, one at a time, through
//! burn-store: PyTorch layouts are converted (Linear weights transposed, norm `weight`/`bias`
//! renamed) and every float tensor is cast to the device's float dtype, so fp32, fp16 and bf16
//! files load onto f32 or f16 devices alike.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ChainAdapter, FloatCastAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::{DType, Device};
use safetensors::{Dtype, SafeTensors};

use crate::manifest::{expected_tensors, format_shape};

/// Why one key of a checkpoint does not fit the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightProblem {
    /// The module needs this tensor and the file does not have it.
    Missing {
        /// The key.
        key: String,
        /// The shape the module expects.
        expected: Vec<usize>,
    },
    /// The file has a tensor the module has no place for.
    Unexpected {
        /// The key.
        key: String,
        /// Its shape in the file.
        found: Vec<usize>,
    },
    /// Both have the key, with different shapes.
    Shape {
        /// The key.
        key: String,
        /// The shape the module expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The tensor is stored with a dtype that is not a float (F32, F16, BF16 or F64).
    Dtype {
        /// The key.
        key: String,
        /// The dtype in the file.
        found: String,
    },
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key, expected } => {
                write!(
                    f,
                    "missing key `{key}` (expected shape [{}])",
                    format_shape(expected)
                )
            }
            Self::Unexpected { key, found } => {
                write!(
                    f,
                    "unexpected key `{key}` (shape [{}])",
                    format_shape(found)
                )
            }
            Self::Shape {
                key,
                expected,
                found,
            } => write!(
                f,
                "key `{key}`: expected shape [{}], found [{}]",
                format_shape(expected),
                format_shape(found)
            ),
            Self::Dtype { key, found } => write!(
                f,
                "key `{key}`: expected a float dtype (F32, F16, BF16 or F64), found {found}"
            ),
        }
    }
}

/// A checkpoint that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A model folder has none of the weight files looked for.
    #[error("no weights in {dir}: expected {expected}{hint}")]
    NotFound {
        /// The folder searched.
        dir: PathBuf,
        /// The file names tried, in order of preference.
        expected: String,
        /// Extra advice (e.g. a `.bin` file was found), empty or starting with a space.
        hint: String,
    },
    /// The file could not be opened or mapped.
    #[error("cannot read weights {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, bad header, overlapping data).
    #[error("corrupt or truncated safetensors file {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser found.
        message: String,
    },
    /// The file is valid but does not match the model.
    #[error("weights {path} do not match the model ({} problem(s)): {}", problems.len(), summarize(problems))]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Every problem found, sorted by key.
        problems: Vec<WeightProblem>,
    },
    /// burn-store failed while copying tensors that passed the checks.
    #[error("loading {path} failed: {message}")]
    Apply {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The weight file of a diffusers model folder in full precision.
pub const DIFFUSERS_FP32: &str = "diffusion_pytorch_model.safetensors";
/// The weight file of a diffusers model folder's fp16 variant.
pub const DIFFUSERS_FP16: &str = "diffusion_pytorch_model.fp16.safetensors";

/// The weights file of a diffusers model folder: the fp32 file, else the fp16 variant.
///
/// A folder with only a pickled `.bin` checkpoint (which this project does not read) gets an
/// error that says so.
pub fn find_diffusers_weights(dir: &Path) -> Result<PathBuf, WeightsError> {
    let names = [DIFFUSERS_FP32, DIFFUSERS_FP16];
    if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let hint = if dir.join("diffusion_pytorch_model.bin").exists() {
        " (found diffusion_pytorch_model.bin: only safetensors files are read)".to_string()
    } else if !dir.is_dir() {
        " (the folder does not exist)".to_string()
    } else {
        String::new()
    };
    Err(WeightsError::NotFound {
        dir: dir.to_path_buf(),
        expected: names.join(" or "),
        hint,
    })
}

fn summarize(problems: &[WeightProblem]) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = problems.iter().take(SHOWN).map(|p| p.to_string()).collect();
    if problems.len() > SHOWN {
        parts.push(format!("and {} more", problems.len() - SHOWN));
    }
    parts.join("; ")
}

fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// Checks a safetensors file against what `module` expects without reading any tensor data.
///
/// Returns every problem found (empty when the file fits).
pub fn check_safetensors<M: Module>(module: &M, path: &Path) -> Result<(), WeightsError> {
    let file = std::fs::File::open(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the map is read-only and dropped before this function returns; a checkpoint
    // modified by another process while we read its header would at worst give a parse error.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let tensors = SafeTensors::deserialize(&mmap).map_err(|e| WeightsError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;

    let mut in_file: BTreeMap<String, (Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|(name, view)| (name.to_string(), (view.dtype(), view.shape().to_vec())))
        .collect();
    let mut problems = Vec::new();
    for expected in expected_tensors(module) {
        match in_file.remove(&expected.key) {
            None => problems.push(WeightProblem::Missing {
                key: expected.key,
                expected: expected.shape,
            }),
            Some((dtype, _)) if !is_float(dtype) => problems.push(WeightProblem::Dtype {
                key: expected.key,
                found: format!("{dtype:?}"),
            }),
            Some((_, shape)) if shape != expected.shape => problems.push(WeightProblem::Shape {
                key: expected.key,
                expected: expected.shape,
                found: shape,
            }),
            Some(_) => {}
        }
    }
    problems.extend(
        in_file
            .into_iter()
            .map(|(key, (_, found))| WeightProblem::Unexpected { key, found }),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort_by(|a, b| problem_key(a).cmp(problem_key(b)));
        Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn problem_key(p: &WeightProblem) -> &str {
    match p {
        WeightProblem::Missing { key, .. }
        | WeightProblem::Unexpected { key, .. }
        | WeightProblem::Shape { key, .. }
        | WeightProblem::Dtype { key, .. } => key,
    }
}

/// Loads a diffusers/transformers safetensors file into `module`, strictly.
///
/// The file is checked first ([`check_safetensors`]); then each tensor is read from the memory
/// map, converted from the PyTorch layout and cast to `device`'s float dtype. The module's
/// parameters should still be lazily initialised (freshly built from a config) so no random
/// weights are ever allocated.
pub fn load_safetensors<M: Module>(
    mut module: M,
    path: &Path,
    device: &Device,
) -> Result<M, WeightsError> {
    check_safetensors(&module, path)?;
    let target: DType = device.settings().float_dtype.into();
    let adapter = ChainAdapter::new(PyTorchToBurnAdapter, FloatCastAdapter::to(target));
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(adapter)
        .skip_enum_variants(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| WeightsError::Apply {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let mut parts: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        parts.extend(result.missing.iter().map(|(k, _)| format!("missing `{k}`")));
        parts.extend(result.unused.iter().map(|k| format!("unused `{k}`")));
        return Err(WeightsError::Apply {
            path: path.to_path_buf(),
            message: parts.join("; "),
        });
    }
    Ok(module)
}
