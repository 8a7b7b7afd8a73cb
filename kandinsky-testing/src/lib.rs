//! Test helpers of the Kandinsky crates, a dev-dependency only (never shipped in a library):
//! the fixtures folder, the device the parity tests run on, and comparison with reference
//! outputs (panicking asserts).
//!
//! The tests are written once for every backend: [`test_device`] is burn's default device —
//! flex (CPU) when only it is compiled in, as in CI — and `BURN_DEVICE` (`flex`, `wgpu`,
//! `vulkan`, `cuda`, `metal`) picks another backend compiled into the test binaries, e.g.
//! `cargo test --release --features burn/vulkan` then `BURN_DEVICE=vulkan`
//! (`scripts/test-backend.sh` does this).

pub mod corpus;

use burn::tensor::{Device, FloatDType, TensorData};

/// The repository's `fixtures` folder: `$KANDINSKY_FIXTURES` when set (test binaries carried
/// to another machine, see `scripts/gpu-check.sh`), else the folder next to this crate's.
pub fn fixtures_dir() -> std::path::PathBuf {
    match std::env::var_os("KANDINSKY_FIXTURES") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"),
    }
}

/// The device of the parity tests: [`Device::default`], which honours `BURN_DEVICE`.
pub fn test_device() -> Device {
    Device::default()
}

/// The unit roundoff 2^−p of a float dtype with p significant bits: f32 6.0e-8, f16 4.9e-4,
/// bf16 3.9e-3. The reduced-precision tests bound their error by (number of rounding layers
/// on the longest path) × this, relative to `max(1, max |reference|)`.
pub fn unit_roundoff(dtype: FloatDType) -> f32 {
    match dtype {
        FloatDType::F64 => f64::EPSILON as f32 / 2.0,
        FloatDType::F32 | FloatDType::Flex32 => f32::EPSILON / 2.0,
        FloatDType::F16 => 2f32.powi(-11),
        FloatDType::BF16 => 2f32.powi(-8),
    }
}

/// The device of a reduced-precision test: [`test_device`] with `dtype` as its float dtype,
/// or `None` (and a printed note) where the backend does not compute in `dtype`. Call it
/// before any tensor exists: a device's dtype is fixed for the whole process once set, so each
/// dtype has its own test binary.
pub fn half_device(dtype: FloatDType) -> Option<Device> {
    let mut device = test_device();
    if !device.supports_dtype(dtype) {
        println!("{device:?} does not compute in {dtype:?}: skipped");
        return None;
    }
    device
        .configure(dtype)
        .expect("configure the device's float dtype before any tensor exists");
    Some(device)
}

/// How much the f32 bounds of the parity tests widen off the CPU. GPU backends (wgpu, Vulkan,
/// CUDA, Metal, and lavapipe's software Vulkan) reorder sums in fused and tiled kernels and use
/// their own `exp`/`tanh`/`erf` approximations; flex (the bounds' own backend) is 1.
pub fn backend_factor() -> f32 {
    if format!("{:?}", test_device()).contains("Flex") {
        1.0
    } else {
        GPU_FACTOR
    }
}

/// [`backend_factor`] off the CPU: measured on lavapipe, see BENCHMARKS.md.
pub const GPU_FACTOR: f32 = 4.0;

/// Compares `ours` with `reference` and returns `(max |ours − reference|, max(1, max |reference|))`.
///
/// # Panics
/// If the shapes differ, a value is not finite, or the max abs error exceeds
/// `tolerance · backend_factor() · max(1, max |reference|)`; the message names `name`. Prints the error either way,
/// so that `cargo test -- --nocapture` lists the measured figures.
pub fn assert_close(
    name: &str,
    ours: TensorData,
    reference: &TensorData,
    tolerance: f32,
) -> (f32, f32) {
    assert_eq!(
        ours.shape(),
        reference.shape(),
        "{name}: shape differs from the reference"
    );
    let ours = ours
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float data");
    let reference = reference
        .clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float data");
    assert!(
        ours.iter().all(|v| v.is_finite()),
        "{name}: non-finite output"
    );
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let tolerance = tolerance * backend_factor();
    let max_err = ours
        .iter()
        .zip(&reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{name}: max abs error {max_err:.3e} (scale {scale:.3})");
    assert!(
        max_err <= tolerance * scale,
        "{name}: max abs error {max_err:e} exceeds {tolerance:e} x {scale}"
    );
    (max_err, scale)
}
