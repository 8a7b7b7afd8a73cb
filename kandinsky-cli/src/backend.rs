//! The compute device: a backend compiled into this binary, with a float precision.

use anyhow::{Result, bail};
use burn::tensor::Device;

use crate::args::{Backend, Dtype};

/// The best backend compiled into this binary.
pub fn best_backend() -> Backend {
    if cfg!(feature = "cuda") {
        Backend::Cuda
    } else if cfg!(feature = "metal") {
        Backend::Metal
    } else if cfg!(feature = "vulkan") {
        Backend::Vulkan
    } else if cfg!(feature = "wgpu") {
        Backend::Wgpu
    } else {
        Backend::Cpu
    }
}

pub fn device(backend: Backend, dtype: Dtype) -> Result<Device> {
    let mut device = backend_device(backend)?;
    let float = match dtype {
        Dtype::F32 => return Ok(device),
        Dtype::F16 => burn::tensor::FloatDType::F16,
        Dtype::Bf16 => burn::tensor::FloatDType::BF16,
    };
    if !device.supports_dtype(float) {
        bail!("the {backend:?} backend does not compute in {dtype:?}");
    }
    device
        .configure(float)
        .map_err(|e| anyhow::anyhow!("cannot use {dtype:?} on {backend:?}: {e:?}"))?;
    Ok(device)
}

fn backend_device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Auto => backend_device(best_backend()),
        Backend::Cpu => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[cfg(not(feature = "flex"))]
            bail!("the cpu backend is not compiled in (build with --features flex)")
        }
        Backend::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(0));
            #[cfg(not(feature = "cuda"))]
            bail!("the cuda backend is not compiled in (build with --features cuda)")
        }
        Backend::Vulkan => {
            #[cfg(feature = "vulkan")]
            return Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "vulkan"))]
            bail!("the vulkan backend is not compiled in (build with --features vulkan)")
        }
        Backend::Metal => {
            #[cfg(feature = "metal")]
            return Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "metal"))]
            bail!("the metal backend is not compiled in (build with --features metal)")
        }
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "wgpu"))]
            bail!("the wgpu backend is not compiled in (build with --features wgpu)")
        }
    }
}
