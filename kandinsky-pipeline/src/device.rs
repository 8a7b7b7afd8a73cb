//! Choosing the compute device among the burn backends compiled in, for programs (the CLI, the
//! benchmarks, a server) that let their user pick one. The backends are this crate's features
//! `flex` (CPU), `wgpu`, `vulkan`, `metal` and `cuda`, which enable burn's: a library that depends
//! on this crate enables none, the binary at the top chooses.

use burn::tensor::{Device, FloatDType};

use crate::error::PipelineError;

/// A burn backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The best compiled in: cuda, metal, vulkan, wgpu, then the CPU.
    Auto,
    /// burn's `flex` CPU backend.
    Cpu,
    /// wgpu (Vulkan, Metal, DirectX 12 or OpenGL, chosen by wgpu).
    Wgpu,
    /// cubecl's own SPIR-V on Vulkan.
    Vulkan,
    /// cubecl's own MSL on Metal.
    Metal,
    /// CUDA.
    Cuda,
}

impl Backend {
    /// The best backend compiled in: cuda, metal, vulkan, wgpu, then the CPU.
    pub fn best() -> Self {
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

    /// Its name, as the features and `BURN_DEVICE` spell it (`Auto` names the backend it
    /// picks).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => Backend::best().name(),
            Backend::Cpu => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether it is compiled into this program.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Auto => true,
            Backend::Cpu => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Metal => cfg!(feature = "metal"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }
}

/// The default device of `backend`, computing in `dtype` (set before any tensor exists on it:
/// a device's float dtype is fixed for the process once used).
pub fn device(backend: Backend, dtype: FloatDType) -> Result<Device, PipelineError> {
    let backend = match backend {
        Backend::Auto => Backend::best(),
        other => other,
    };
    let unavailable = |reason: String| PipelineError::Backend {
        backend: backend.name(),
        reason,
    };
    if !backend.is_compiled() {
        return Err(unavailable(format!(
            "not compiled in (build with --features {})",
            backend.name()
        )));
    }
    let mut device = backend_device(backend);
    if matches!(dtype, FloatDType::F32 | FloatDType::Flex32) {
        return Ok(device);
    }
    if !device.supports_dtype(dtype) {
        return Err(unavailable(format!("does not compute in {dtype:?}")));
    }
    device
        .configure(dtype)
        .map_err(|e| unavailable(format!("cannot use {dtype:?}: {e:?}")))?;
    Ok(device)
}

/// The default device of a compiled-in backend.
fn backend_device(backend: Backend) -> Device {
    match backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda => Device::cuda(0),
        #[cfg(feature = "metal")]
        Backend::Metal => Device::metal(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "flex")]
        Backend::Cpu => Device::flex(),
        // Not compiled in (checked by the caller): burn's default device.
        _ => Device::default(),
    }
}
