//! Shared set-up of the Kandinsky benchmarks: the device is chosen by the crate's features
//! (`flex` by default; `cuda`, `metal`, `vulkan`, `wgpu` take precedence in that order when
//! compiled in).
//!
//! ```
//! let device = kandinsky_benches::bench_device();
//! println!("benchmarking on {}", kandinsky_benches::backend_name());
//! # let _ = device;
//! ```

use burn::tensor::Device;

/// The device the benchmarks run on.
pub fn bench_device() -> Device {
    #[cfg(feature = "cuda")]
    return Device::cuda(0);
    #[cfg(all(feature = "metal", not(feature = "cuda")))]
    return Device::metal(burn::tensor::DeviceKind::DefaultDevice);
    #[cfg(all(feature = "vulkan", not(any(feature = "cuda", feature = "metal"))))]
    return Device::vulkan(burn::tensor::DeviceKind::DefaultDevice);
    #[cfg(all(
        feature = "wgpu",
        not(any(feature = "cuda", feature = "metal", feature = "vulkan"))
    ))]
    return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    #[cfg(not(any(
        feature = "cuda",
        feature = "metal",
        feature = "vulkan",
        feature = "wgpu"
    )))]
    Device::flex()
}

/// The name of the backend [`bench_device`] picks.
pub fn backend_name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "metal") {
        "metal"
    } else if cfg!(feature = "vulkan") {
        "vulkan"
    } else if cfg!(feature = "wgpu") {
        "wgpu"
    } else {
        "flex"
    }
}
