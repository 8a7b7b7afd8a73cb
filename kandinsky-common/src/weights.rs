//! Strict loading of a safetensors checkpoint into a burn module.
//!
//! The file is memory-mapped and its header checked against what the module expects (see
//! [`crate::manifest`]) before any tensor is read: a missing key, an unexpected key, a shape
//! mismatch or a non-float dtype is reported with the file, the key and the expected versus
//! found value, all problems at once. Only then are the tensors read, one at a time: PyTorch
//! layouts are converted (Linear weights transposed, norm `weight`/`bias` renamed) and every
//! float tensor is cast to the device's float dtype, so fp32, fp16 and bf16 files load onto f32
//! or f16 devices alike.
//!
//! A tensor of at least [`MAPPED_TENSOR_BYTES`] that is used as stored (no transpose, no cast)
//! is memory-mapped and the tensor built on the mapped pages, without a copy (the pages are
//! the operating system's file cache, read-only; a write would copy them first); anything else
//! is read with a positioned read, a transposed weight through one reused scratch buffer. A
//! transposed weight's source pages are therefore never mapped, so they do not count towards
//! the process's resident memory beside the transposed copy. As with any memory-mapped loader
//! (diffusers' too), a weights file must not be truncated or rewritten in place while a model
//! loaded from it is in use (replacing it, as downloads do, is fine).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::manifest::{KeyPath, TorchKey, expected_tensors, format_shape};

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
}

/// The weight file of a diffusers model folder in full precision.
pub const DIFFUSERS_FP32: &str = "diffusion_pytorch_model.safetensors";
/// The weight file of a diffusers model folder's fp16 variant.
pub const DIFFUSERS_FP16: &str = "diffusion_pytorch_model.fp16.safetensors";

/// The weight file of a transformers model folder in full precision.
pub const TRANSFORMERS_FP32: &str = "model.safetensors";
/// The weight file of a transformers model folder's fp16 variant.
pub const TRANSFORMERS_FP16: &str = "model.fp16.safetensors";

/// The weights file of a diffusers model folder: the fp32 file, else the fp16 variant.
///
/// A folder with only a pickled `.bin` checkpoint (which this project does not read) gets an
/// error that says so.
pub fn find_diffusers_weights(dir: &Path) -> Result<PathBuf, WeightsError> {
    find_weights(
        dir,
        &[DIFFUSERS_FP32, DIFFUSERS_FP16],
        "diffusion_pytorch_model.bin",
    )
}

/// The weights file of a transformers model folder (`model.safetensors`, else the fp16 variant).
pub fn find_transformers_weights(dir: &Path) -> Result<PathBuf, WeightsError> {
    find_weights(
        dir,
        &[TRANSFORMERS_FP32, TRANSFORMERS_FP16],
        "pytorch_model.bin",
    )
}

fn find_weights(dir: &Path, names: &[&str], pickled: &str) -> Result<PathBuf, WeightsError> {
    if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.exists()) {
        return Ok(found);
    }
    let hint = if dir.join(pickled).exists() {
        format!(" (found {pickled}: only safetensors files are read)")
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
    let file = crate::files::open_regular(path).map_err(|source| WeightsError::Io {
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
/// The file is checked first ([`check_safetensors`]); then each tensor is mapped or read (see
/// the module's documentation), converted from the PyTorch layout (Linear weights transposed)
/// and cast to `device`'s float dtype. Peak memory is the loaded model plus a few copies of
/// its largest tensor. The module's parameters should still be lazily initialised
/// (freshly built from a config) so no random weights are ever allocated.
pub fn load_safetensors<M: Module>(
    module: M,
    path: &Path,
    device: &Device,
) -> Result<M, WeightsError> {
    load_safetensors_with(module, path, device, LinearLayout::Transposed)
}

/// How [`load_safetensors_with`] lays out the Linear weights, which PyTorch stores as
/// (out, in) and burn's `Linear` uses as (in, out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearLayout {
    /// Transposed into a (in, out) copy: what every backend's matrix multiply reads fastest
    /// when the products have many rows (the UNet's 2,048 tokens).
    Transposed,
    /// On burn's CPU backend (f32 files, weights of at least [`MAPPED_TENSOR_BYTES`]): left as
    /// stored, memory-mapped, and used through a transposed view of logical shape (in, out),
    /// which `kandinsky_common::linear::linear` multiplies with the weight's rows as the
    /// packed operand. Loading then touches no fresh memory (on the development VM each
    /// fresh page costs ~10 µs: the bigG image encoder loaded in ~10 s transposed) and the
    /// file's cached pages are the weights. For models whose products have few rows (the
    /// prior's 6 to 32, where it also multiplies ~3x faster) or whose load dominates their use
    /// (the CLIP vision tower, one 257-row forward per generation); elsewhere (other backends,
    /// dtypes) as `Transposed`. The CLIP text tower's 154-row forward is ~20% slower this way.
    StoredView,
}

/// [`load_safetensors`] with a choice of [`LinearLayout`].
pub fn load_safetensors_with<M: Module>(
    module: M,
    path: &Path,
    device: &Device,
    linear: LinearLayout,
) -> Result<M, WeightsError> {
    check_safetensors(&module, path)?;
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::files::open_regular(path).map_err(io)?;
    let mut mapper = Loader {
        at: KeyPath::default(),
        file,
        header: read_header(path)?,
        target: device.settings().float_dtype.into(),
        device: device.clone(),
        scratch: Vec::new(),
        stored_views: linear == LinearLayout::StoredView && crate::tensors::is_flex(device),
        error: None,
    };
    let module = module.map(&mut mapper);
    match mapper.error {
        Some(source) => Err(io(source)),
        None => Ok(module),
    }
}

/// `module` with its Linear weights laid out as [`load_safetensors_with`] lays them out for
/// `layout`: for modules built in memory (benchmarks with random weights at the real configs)
/// that should compute as a loaded model does. [`LinearLayout::StoredView`] copies each Linear
/// weight (on the CPU backend, f32, of at least [`MAPPED_TENSOR_BYTES`]) into the stored
/// (out, in) order and views it as (in, out); [`LinearLayout::Transposed`] leaves the module.
pub fn with_linear_layout<M: Module>(module: M, layout: LinearLayout) -> M {
    struct Relayout {
        at: KeyPath,
    }
    impl ModuleMapper for Relayout {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(
            &mut self,
            param: Param<burn::tensor::Tensor<D>>,
        ) -> Param<burn::tensor::Tensor<D>> {
            let transposed = self.at.torch_key(param.lazy_shape().to_vec()).transposed;
            let (id, tensor) = (param.id, param.val());
            let device = tensor.device();
            let bytes = tensor.shape().num_elements() * tensor.dtype().size();
            if !transposed
                || D != 2
                || tensor.dtype() != DType::F32
                || bytes < MAPPED_TENSOR_BYTES
                || !crate::tensors::is_flex(&device)
            {
                return param;
            }
            // A contiguous (out, in) copy, seen as (in, out).
            let stored = tensor.swap_dims(0, 1).into_data();
            let stored = burn::tensor::Tensor::<D>::from_data(stored, &device);
            param.transform_for_load(stored.swap_dims(0, 1), id)
        }
    }
    match layout {
        LinearLayout::Transposed => module,
        LinearLayout::StoredView => module.map(&mut Relayout {
            at: KeyPath::default(),
        }),
    }
}

/// Offsets and dtypes of a file's tensors, by key (absolute byte ranges in the file).
type Header = BTreeMap<String, (Dtype, std::ops::Range<u64>)>;

fn read_header(path: &Path) -> Result<Header, WeightsError> {
    let corrupt = |message: String| WeightsError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::files::open_regular(path).map_err(io)?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut len).map_err(io)?;
    let n = u64::from_le_bytes(len);
    let file_len = file.metadata().map_err(io)?.len();
    if n > file_len.saturating_sub(8) {
        return Err(corrupt(format!("header length {n} exceeds the file")));
    }
    let mut buffer = vec![0u8; n as usize];
    std::io::Read::read_exact(&mut file, &mut buffer).map_err(io)?;
    // The whole file was validated by `check_safetensors`; only the offsets are needed here.
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_slice(&buffer).map_err(|e| corrupt(e.to_string()))?;
    let base = 8 + n;
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(key, info)| {
            let (start, end) = info.data_offsets;
            (key, (info.dtype, base + start as u64..base + end as u64))
        })
        .collect())
}

/// Replaces each parameter by the tensor read from the file.
struct Loader {
    at: KeyPath,
    file: std::fs::File,
    header: Header,
    target: DType,
    device: Device,
    /// Holds a tensor to be transposed (reused: the largest one's size).
    scratch: Vec<u8>,
    /// [`LinearLayout::StoredView`] on a CPU device.
    stored_views: bool,
    error: Option<std::io::Error>,
}

impl Loader {
    fn read<const D: usize>(&mut self, shape: Vec<usize>) -> Option<burn::tensor::Tensor<D>> {
        if self.error.is_some() {
            return None;
        }
        let TorchKey {
            key,
            shape,
            transposed,
        } = self.at.torch_key(shape);
        // check_safetensors has matched every key, shape and dtype.
        let (dtype, range) = self.header.get(&key).expect("checked key").clone();
        let dtype = match dtype {
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            _ => DType::F32,
        };
        let len = (range.end - range.start) as usize;
        if transposed
            && self.stored_views
            && D == 2
            && dtype == self.target
            && len >= MAPPED_TENSOR_BYTES
            && range.start.is_multiple_of(dtype.size() as u64)
            && let Some(bytes) = map_range(&self.file, &range)
        {
            // The (out, in) weight as stored, seen as (in, out).
            let data = TensorData::from_bytes(bytes, shape, dtype);
            let stored = burn::tensor::Tensor::<D>::from_data(data, (&self.device, dtype));
            return Some(stored.swap_dims(0, 1));
        }
        match self.tensor_data(dtype, range, shape, transposed) {
            Ok(data) => Some(
                burn::tensor::Tensor::<D>::from_data(data, (&self.device, dtype)).cast(self.target),
            ),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// The tensor at `range` of the file, `shape` as stored, in the module's layout.
    fn tensor_data(
        &mut self,
        dtype: DType,
        range: std::ops::Range<u64>,
        shape: Vec<usize>,
        transposed: bool,
    ) -> std::io::Result<TensorData> {
        let len = (range.end - range.start) as usize;
        let size = dtype.size();
        if transposed {
            self.scratch.resize(len, 0);
            read_at(&self.file, &mut self.scratch, range.start)?;
            let [rows, cols] = [shape[0], shape[1]];
            let mut out = ElementBuffer::zeroed(size, len / size);
            transpose_bytes(&self.scratch, out.bytes_mut(), rows, cols, size);
            return Ok(TensorData::from_bytes(
                out.into_bytes(),
                vec![cols, rows],
                dtype,
            ));
        }
        if len >= MAPPED_TENSOR_BYTES
            && range.start.is_multiple_of(size as u64)
            && dtype == self.target
            && let Some(bytes) = map_range(&self.file, &range)
        {
            return Ok(TensorData::from_bytes(bytes, shape, dtype));
        }
        let mut out = ElementBuffer::zeroed(size, len / size);
        read_at(&self.file, out.bytes_mut(), range.start)?;
        Ok(TensorData::from_bytes(out.into_bytes(), shape, dtype))
    }
}

/// Tensors of at least this many bytes, used as stored, are memory-mapped rather than read
/// (1 MiB: smaller ones are not worth a mapping each).
pub const MAPPED_TENSOR_BYTES: usize = 1 << 20;

/// The bytes at `range` of `file`, memory-mapped (read-only, private, pages populated on
/// Linux), or `None` when the mapping fails (the caller then reads them).
fn map_range(file: &std::fs::File, range: &std::ops::Range<u64>) -> Option<burn::tensor::Bytes> {
    let mut options = memmap2::MmapOptions::new();
    options
        .offset(range.start)
        .len((range.end - range.start) as usize)
        .populate();
    // SAFETY: the mapping is read-only; the module documents that a weights file must not be
    // truncated or rewritten in place while a model loaded from it is in use.
    let map = unsafe { options.map(file) }.ok()?;
    let shared = bytes::Bytes::from_owner(map);
    Some(burn::tensor::Bytes::from_shared(
        shared,
        burn::tensor::AllocationProperty::File,
    ))
}

/// A zeroed buffer of elements of 2, 4 or 8 bytes, allocated with the element's alignment (so
/// the tensor built on it is not copied to align it).
enum ElementBuffer {
    B2(Vec<u16>),
    B4(Vec<u32>),
    B8(Vec<u64>),
}

impl ElementBuffer {
    fn zeroed(size: usize, n: usize) -> Self {
        match size {
            2 => Self::B2(vec![0; n]),
            4 => Self::B4(vec![0; n]),
            8 => Self::B8(vec![0; n]),
            _ => unreachable!("float elements are 2, 4 or 8 bytes"),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Self::B2(v) => bytemuck::cast_slice_mut(v),
            Self::B4(v) => bytemuck::cast_slice_mut(v),
            Self::B8(v) => bytemuck::cast_slice_mut(v),
        }
    }

    fn into_bytes(self) -> burn::tensor::Bytes {
        match self {
            Self::B2(v) => burn::tensor::Bytes::from_elems(v),
            Self::B4(v) => burn::tensor::Bytes::from_elems(v),
            Self::B8(v) => burn::tensor::Bytes::from_elems(v),
        }
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Writes into `dst` the row-major (cols, rows) transpose of the row-major (rows, cols) matrix
/// `src` of `size`-byte elements. Done once per Linear weight at load time, in cache-friendly
/// tiles, in parallel over bands of output rows.
fn transpose_bytes(src: &[u8], dst: &mut [u8], rows: usize, cols: usize, size: usize) {
    match size {
        2 => transpose_elements::<2>(src, dst, rows, cols),
        4 => transpose_elements::<4>(src, dst, rows, cols),
        8 => transpose_elements::<8>(src, dst, rows, cols),
        _ => unreachable!("float elements are 2, 4 or 8 bytes"),
    }
}

fn transpose_elements<const N: usize>(src: &[u8], dst: &mut [u8], rows: usize, cols: usize) {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let (src, _) = src.as_chunks::<N>();
    let (out, _) = dst.as_chunks_mut::<N>();
    // Band b holds output rows (source columns) b·TILE … b·TILE + TILE.
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(band, out)| {
            let c0 = band * TILE;
            let width = out.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    let from = &src[r * cols + c0..][..width];
                    for (c, value) in from.iter().enumerate() {
                        out[c * rows + r] = *value;
                    }
                }
            }
        });
}

impl ModuleMapper for Loader {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(
        &mut self,
        param: Param<burn::tensor::Tensor<D>>,
    ) -> Param<burn::tensor::Tensor<D>> {
        match self.read::<D>(param.lazy_shape().to_vec()) {
            Some(tensor) => {
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            None => param,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Tensor, TensorData};

    use super::{
        LinearLayout, MAPPED_TENSOR_BYTES, load_safetensors, load_safetensors_with, transpose_bytes,
    };

    #[derive(Module, Debug)]
    struct Tiny {
        proj: Linear,
        table: Param<Tensor<2>>,
    }

    /// A tensor over [`MAPPED_TENSOR_BYTES`] used as stored (mapped, no copy), a Linear weight
    /// (read and transposed) and a small bias (read) all load with the file's values, and the
    /// mapped one survives the loader, the file's handle and an in-place edit of a clone.
    #[test]
    fn mapped_read_and_transposed_tensors_load_the_files_values() {
        let device = Device::flex();
        let (rows, cols, out, inp) = (600, 512, 48, 40);
        assert!(rows * cols * 4 >= MAPPED_TENSOR_BYTES);
        let table: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let weight: Vec<f32> = (0..out * inp).map(|i| -(i as f32)).collect();
        let bias: Vec<f32> = (0..out).map(|i| i as f32 * 0.5).collect();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (tb, wb, bb) = (bytes(&table), bytes(&weight), bytes(&bias));
        fn view(data: &[u8], shape: Vec<usize>) -> safetensors::tensor::TensorView<'_> {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, data).unwrap()
        }
        let views = vec![
            ("table", view(&tb, vec![rows, cols])),
            ("proj.weight", view(&wb, vec![out, inp])),
            ("proj.bias", view(&bb, vec![out])),
        ];
        let path =
            std::env::temp_dir().join(format!("kandinsky-weights-{}.st", std::process::id()));
        safetensors::serialize_to_file(views, None, &path).unwrap();

        let module = Tiny {
            proj: LinearConfig::new(inp, out).init(&device),
            table: Param::from_tensor(Tensor::zeros([rows, cols], &device)),
        };
        let loaded = load_safetensors(module, &path, &device).unwrap();
        std::fs::remove_file(&path).unwrap();
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let table_tensor = loaded.table.val();
        // An in-place edit of a clone copies first: the loaded values stay.
        let edited = values(table_tensor.clone() + 1.0);
        assert_eq!(edited[7], 8.0);
        assert_eq!(values(table_tensor), table);
        let w = values(loaded.proj.weight.val());
        for o in 0..out {
            for i in 0..inp {
                assert_eq!(w[i * out + o], weight[o * inp + i]);
            }
        }
        let b = loaded.proj.bias.as_ref().unwrap().val().into_data();
        assert_eq!(b, TensorData::new(bias, [out]));
    }

    /// A Linear weight loaded as a stored view (`LinearLayout::StoredView`) has the values of
    /// the transposed copy, and the layer computes the same output with it (the host path reads
    /// the view in place). Bound 1e-5 relative: sums of 600 products in another order.
    #[test]
    fn a_stored_view_weight_loads_and_computes_as_the_transposed_copy() {
        #[derive(Module, Debug)]
        struct Layer {
            proj: Linear,
        }
        let device = Device::flex();
        let (out, inp) = (512, 600);
        assert!(out * inp * 4 >= MAPPED_TENSOR_BYTES);
        let weight: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let bias: Vec<f32> = (0..out).map(|i| i as f32 * 0.01).collect();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (wb, bb) = (bytes(&weight), bytes(&bias));
        let view = |data, shape| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, data).unwrap()
        };
        let views = vec![
            ("proj.weight", view(&wb, vec![out, inp])),
            ("proj.bias", view(&bb, vec![out])),
        ];
        let path = std::env::temp_dir().join(format!("kandinsky-view-{}.st", std::process::id()));
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let fresh = || Layer {
            proj: LinearConfig::new(inp, out).init(&device),
        };
        let copied = load_safetensors(fresh(), &path, &device).unwrap();
        let viewed =
            load_safetensors_with(fresh(), &path, &device, LinearLayout::StoredView).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (a, b) = (copied.proj.weight.val(), viewed.proj.weight.val());
        assert_eq!(b.dims(), [inp, out]);
        #[cfg(feature = "flex")]
        {
            let host = crate::host::HostF32::new(b.clone()).unwrap();
            let matrix = host.matrix().unwrap();
            assert_eq!(
                (matrix.row_stride, matrix.col_stride),
                (1, inp),
                "not a view"
            );
        }
        assert_eq!(a.clone().into_data(), b.into_data());
        let x = Tensor::<3>::random([2, 77, inp], burn::tensor::Distribution::Default, &device);
        let reference = copied.proj.forward(x.clone());
        let ours = crate::linear::linear(&viewed.proj, x);
        let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
        let err = (ours - reference).abs().max().into_scalar::<f32>();
        assert!(err <= 1e-5 * scale, "error {err} (scale {scale})");
    }

    /// Every element lands at its transposed place, for each element size, on shapes that are
    /// and are not multiples of the tile (and wider than one band).
    #[test]
    fn transposes_every_element_size() {
        for size in [2usize, 4, 8] {
            for (rows, cols) in [(1, 1), (3, 5), (70, 33), (33, 70)] {
                let src: Vec<u8> = (0..rows * cols * size)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect();
                let mut dst = vec![0u8; src.len()];
                transpose_bytes(&src, &mut dst, rows, cols, size);
                for r in 0..rows {
                    for c in 0..cols {
                        let from = &src[(r * cols + c) * size..][..size];
                        let to = &dst[(c * rows + r) * size..][..size];
                        assert_eq!(from, to, "size {size}, {rows}x{cols}, ({r}, {c})");
                    }
                }
            }
        }
    }
}
