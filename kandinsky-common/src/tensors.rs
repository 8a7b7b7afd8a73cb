//! Reading tensors into host memory: whole safetensors files (latents or noise saved by another
//! program, reference outputs in tests) and device tensors ([`to_host`]).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::kind::Basic;
use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::WeightsError;

/// Reads every tensor of a safetensors file as [`TensorData`] (F32, F16, BF16, F64, I64, I32,
/// U8 and BOOL are supported; other dtypes are an error naming the key).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, TensorData>, WeightsError> {
    let bytes = crate::files::read_regular(path, u64::MAX).map_err(|source| WeightsError::Io {
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

/// Reads a device tensor into host memory that the returned [`TensorData`] owns.
///
/// Prefer this to `Tensor::into_data` for values that are kept while the device goes on
/// working. With burn 0.22.1 on wgpu (cubecl-wgpu 0.11.3), `into_data` hands back bytes that
/// still view a pooled staging buffer, and a later read can reuse that buffer: a `TensorData`
/// kept across another read then silently shows the newer values (measured on Mesa's lavapipe;
/// `tests/read_back.rs` checks it). Copying the bytes out at once costs one host copy.
pub fn to_host<const D: usize, K: Basic>(tensor: Tensor<D, K>) -> TensorData {
    let data = tensor.into_data();
    TensorData::from_bytes_vec(data.as_bytes().to_vec(), data.shape().clone(), data.dtype())
}

/// [`to_host`] as a method: `tensor.to_host()`.
pub trait ToHost {
    /// Reads the tensor into host memory that the returned [`TensorData`] owns.
    fn to_host(self) -> TensorData;
}

impl<const D: usize, K: Basic> ToHost for Tensor<D, K> {
    fn to_host(self) -> TensorData {
        to_host(self)
    }
}

/// A float tensor stored in f32 whatever the device's default float dtype: for values that
/// an f16 or bf16 default would round, such as diffusion timesteps (bf16 stores 999 as 1000)
/// or 8-bit pixel levels under fixed-point resampling weights.
pub fn f32_tensor<const D: usize>(data: TensorData, device: &Device) -> Tensor<D> {
    Tensor::from_data(data.convert::<f32>(), (device, DType::F32))
}

/// The device's default float dtype (f32 unless the device was configured otherwise): the
/// dtype of tensors created on it without one.
pub fn default_float(device: &Device) -> DType {
    device.settings().float_dtype.into()
}

/// Whether `device` is burn's `flex` CPU backend, whose tensors live in host memory (so host
/// loops can read and write them without a transfer: [`crate::conv`]).
pub fn is_flex(device: &Device) -> bool {
    // The backend's variant exists only when burn's `flex` feature is on, which this library
    // does not enable itself; the device's debug form names it either way.
    format!("{device:?}").contains("Flex")
}
