//! The tensors a module expects, named and shaped as in the PyTorch checkpoint.
//!
//! burn stores a `Linear` weight as `[in, out]` and names norm parameters `gamma`/`beta`; the
//! diffusers checkpoints store `[out, in]` and `weight`/`bias`. [`expected_tensors`] walks a
//! module and reports every parameter in the checkpoint's convention, reading the shapes of
//! lazily initialised parameters without allocating them, so a 1.2B-parameter model can be
//! checked against a manifest in milliseconds.

use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Int, Tensor};

/// One tensor of a checkpoint: its key and its shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedTensor {
    /// The key in the checkpoint, e.g. `encoder.down_blocks.0.resnets.1.conv1.weight`.
    pub key: String,
    /// The shape in the checkpoint's layout.
    pub shape: Vec<usize>,
}

impl fmt::Display for ExpectedTensor {
    /// The manifest line: `key d0,d1,...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, format_shape(&self.shape))
    }
}

/// Formats a shape as the manifests do: comma-separated, no spaces (`[]` for a scalar).
pub fn format_shape(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "[]".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Module types whose PyTorch parameters are `weight`/`bias` but burn's are `gamma`/`beta`.
const NORM_TYPES: [&str; 4] = [
    "Struct:GroupNorm",
    "Struct:LayerNorm",
    "Struct:BatchNorm",
    "Struct:RmsNorm",
];

/// Every parameter of `module`, with the key and shape the PyTorch checkpoint uses for it.
///
/// Parameters that are not yet initialised are not allocated. Enum variant names are not part
/// of the keys, and a field name's trailing underscore is dropped (`self_` stands for
/// PyTorch's `self`, a Rust keyword).
pub fn expected_tensors<M: Module>(module: &M) -> Vec<ExpectedTensor> {
    let mut visitor = ExpectedVisitor::default();
    module.visit(&mut visitor);
    visitor.tensors
}

/// Where a module visitor or mapper is in the module tree, and the PyTorch key of a parameter
/// found there.
#[derive(Default)]
pub(crate) struct KeyPath {
    path: Vec<String>,
    /// The container each path element was entered from (`Struct:Linear`, `Vec`, ...).
    containers: Vec<String>,
}

/// A parameter's checkpoint key and PyTorch shape.
pub(crate) struct TorchKey {
    pub key: String,
    pub shape: Vec<usize>,
    /// Whether burn's layout is the transpose of PyTorch's (a `Linear` weight).
    pub transposed: bool,
}

impl KeyPath {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        if !container_type.starts_with("Enum:") {
            // A trailing underscore marks a field named after a Rust keyword: `self_` is
            // PyTorch's `attention.self`.
            self.path
                .push(name.strip_suffix('_').unwrap_or(name).to_string());
        }
    }

    pub(crate) fn exit(&mut self, container_type: &str) {
        self.containers.pop();
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    /// The key and PyTorch shape of the parameter at the current path, of burn shape `shape`.
    pub(crate) fn torch_key(&self, mut shape: Vec<usize>) -> TorchKey {
        let module_type = self
            .containers
            .iter()
            .rev()
            .find(|c| c.starts_with("Struct:") || c.starts_with("Enum:"))
            .map(String::as_str);
        let mut path = self.path.clone();
        let leaf = path.last().map(String::as_str);
        let mut transposed = false;
        match (module_type, leaf) {
            (Some("Struct:Linear"), Some("weight")) if shape.len() == 2 => {
                shape.swap(0, 1);
                transposed = true;
            }
            (Some(t), Some("gamma")) if NORM_TYPES.contains(&t) => {
                *path.last_mut().expect("leaf exists") = "weight".into()
            }
            (Some(t), Some("beta")) if NORM_TYPES.contains(&t) => {
                *path.last_mut().expect("leaf exists") = "bias".into()
            }
            _ => {}
        }
        TorchKey {
            key: path.join("."),
            shape,
            transposed,
        }
    }
}

#[derive(Default)]
struct ExpectedVisitor {
    at: KeyPath,
    tensors: Vec<ExpectedTensor>,
}

impl ExpectedVisitor {
    fn record(&mut self, shape: Vec<usize>) {
        let TorchKey { key, shape, .. } = self.at.torch_key(shape);
        self.tensors.push(ExpectedTensor { key, shape });
    }
}

impl ModuleVisitor for ExpectedVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.record(param.lazy_shape().to_vec());
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.record(param.lazy_shape().to_vec());
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.record(param.lazy_shape().to_vec());
    }
}

/// A difference between a module and a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestDifference {
    /// The manifest lists a tensor the module does not have.
    NotInModule(ExpectedTensor),
    /// The module has a tensor the manifest does not list.
    NotInManifest(ExpectedTensor),
    /// Both have the key, with different shapes.
    Shape {
        /// The key.
        key: String,
        /// The manifest's shape.
        manifest: Vec<usize>,
        /// The module's shape.
        module: Vec<usize>,
    },
}

impl fmt::Display for ManifestDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInModule(t) => write!(f, "missing from the module: {t}"),
            Self::NotInManifest(t) => write!(f, "not in the manifest: {t}"),
            Self::Shape {
                key,
                manifest,
                module,
            } => write!(
                f,
                "{key}: manifest shape [{}], module shape [{}]",
                format_shape(manifest),
                format_shape(module)
            ),
        }
    }
}

/// Parses a manifest (one `key d0,d1,...` per line; blank lines ignored).
pub fn parse_manifest(text: &str) -> Result<Vec<ExpectedTensor>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let (key, dims) = line
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("line {}: expected `key shape`, found {line:?}", i + 1))?;
            let shape = if dims == "[]" || dims.is_empty() {
                Vec::new()
            } else {
                dims.split(',')
                    .map(|d| d.parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("line {}: bad shape {dims:?}: {e}", i + 1))?
            };
            Ok(ExpectedTensor {
                key: key.to_string(),
                shape,
            })
        })
        .collect()
}

/// Compares what a module expects with a manifest; an empty result means they are equal
/// (same keys, same shapes; order does not matter).
pub fn compare(module: &[ExpectedTensor], manifest: &[ExpectedTensor]) -> Vec<ManifestDifference> {
    use std::collections::BTreeMap;
    let ours: BTreeMap<&str, &ExpectedTensor> =
        module.iter().map(|t| (t.key.as_str(), t)).collect();
    let theirs: BTreeMap<&str, &ExpectedTensor> =
        manifest.iter().map(|t| (t.key.as_str(), t)).collect();
    let mut diffs = Vec::new();
    for (key, t) in &theirs {
        match ours.get(key) {
            None => diffs.push(ManifestDifference::NotInModule((*t).clone())),
            Some(o) if o.shape != t.shape => diffs.push(ManifestDifference::Shape {
                key: key.to_string(),
                manifest: t.shape.clone(),
                module: o.shape.clone(),
            }),
            Some(_) => {}
        }
    }
    for (key, o) in &ours {
        if !theirs.contains_key(key) {
            diffs.push(ManifestDifference::NotInManifest((*o).clone()));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Block {
        norm: GroupNorm,
        to_out: Vec<Linear>,
    }

    #[test]
    fn pytorch_names_and_shapes_without_allocation() {
        let device = Device::flex();
        let block = Block {
            norm: GroupNormConfig::new(2, 4).init(&device),
            to_out: vec![LinearConfig::new(4, 6).init(&device)],
        };
        let got: Vec<String> = expected_tensors(&block)
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "norm.weight 4",
                "norm.bias 4",
                "to_out.0.weight 6,4",
                "to_out.0.bias 6"
            ]
        );
    }

    #[test]
    fn manifest_round_trip_and_differences() {
        let manifest = parse_manifest("a.weight 6,4\nb 3\n\nc []\n").unwrap();
        assert_eq!(manifest[2].shape, Vec::<usize>::new());
        let module = vec![
            ExpectedTensor {
                key: "a.weight".into(),
                shape: vec![4, 6],
            },
            ExpectedTensor {
                key: "d".into(),
                shape: vec![1],
            },
        ];
        let diffs = compare(&module, &manifest);
        assert_eq!(diffs.len(), 4, "{diffs:?}");
        assert!(parse_manifest("bad-line").is_err());
        assert!(parse_manifest("k 1,x").is_err());
    }
}
