//! Reading whole tensors from a safetensors file into host memory, e.g. latents or noise saved
//! by another program, or reference outputs in tests.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors};

use crate::WeightsError;

/// Reads every tensor of a safetensors file as [`TensorData`] (F32, F16, BF16, F64, I64, I32,
/// U8 and BOOL are supported; other dtypes are an error naming the key).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, TensorData>, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| WeightsError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    tensors
        .iter()
        .map(|(name, view)| {
            let dtype = match view.dtype() {
                Dtype::F32 => burn::tensor::DType::F32,
                Dtype::F16 => burn::tensor::DType::F16,
                Dtype::BF16 => burn::tensor::DType::BF16,
                Dtype::F64 => burn::tensor::DType::F64,
                Dtype::I64 => burn::tensor::DType::I64,
                Dtype::I32 => burn::tensor::DType::I32,
                Dtype::U8 => burn::tensor::DType::U8,
                Dtype::BOOL => burn::tensor::DType::Bool(burn::tensor::BoolStore::Native),
                other => {
                    return Err(WeightsError::Mismatch {
                        path: path.to_path_buf(),
                        problems: vec![crate::WeightProblem::Dtype {
                            key: name.to_string(),
                            found: format!("{other:?}"),
                        }],
                    });
                }
            };
            let data =
                TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
            Ok((name.to_string(), data))
        })
        .collect()
}
