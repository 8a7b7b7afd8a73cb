//! Shared set-up of the Kandinsky benchmarks: the device is chosen by the crate's features
//! (`flex` by default; `cuda`, `metal`, `vulkan`, `wgpu` take precedence in that order when
//! compiled in), its float dtype by `KANDINSKY_DTYPE` (`f32`, the default, `f16` or `bf16`).
//!
//! ```
//! let device = kandinsky_benches::bench_device();
//! println!("benchmarking on {}", kandinsky_benches::backend_name());
//! # let _ = device;
//! ```

use std::time::Instant;

use burn::tensor::{Device, FloatDType};
use kandinsky_pipeline::device::{Backend, device};

/// Median seconds of `runs` calls of `f` (at least one) after one warm-up call, each ended by
/// a device sync so that queued GPU work is counted.
///
/// # Panics
/// If the device fails to sync.
pub fn median_seconds<T>(device: &Device, runs: usize, mut f: impl FnMut() -> T) -> f64 {
    let _ = f();
    device.sync().expect("sync");
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            let _ = f();
            device.sync().expect("sync");
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The device the benchmarks run on: the best backend compiled in
/// ([`Backend::best`](kandinsky_pipeline::device::Backend::best)), configured to the float dtype
/// `KANDINSKY_DTYPE` names. Denormals are flushed to zero on the calling thread and the compute
/// threads from here on, as every generation of the pipeline does
/// ([`FlushDenormals`](kandinsky_pipeline::denormals::FlushDenormals)), and freed memory is
/// kept for reuse as the `kandinsky` command keeps it
/// ([`retain_freed_memory`](kandinsky_pipeline::allocator::retain_freed_memory)).
///
/// # Panics
/// On an unknown `KANDINSKY_DTYPE`, or one the backend does not compute in.
pub fn bench_device() -> Device {
    let dtype = dtype_name();
    let float = match dtype.as_str() {
        "f32" => FloatDType::F32,
        "f16" => FloatDType::F16,
        "bf16" => FloatDType::BF16,
        other => panic!("KANDINSKY_DTYPE={other}: expected f32, f16 or bf16"),
    };
    std::mem::forget(kandinsky_pipeline::denormals::FlushDenormals::enter());
    kandinsky_pipeline::allocator::retain_freed_memory();
    device(Backend::Auto, float).unwrap_or_else(|e| panic!("{e}"))
}

/// The float dtype the benchmarks run in: `KANDINSKY_DTYPE`, `f32` when unset.
pub fn dtype_name() -> String {
    std::env::var("KANDINSKY_DTYPE").unwrap_or_else(|_| "f32".into())
}

/// The name of the backend [`bench_device`] picks.
pub fn backend_name() -> &'static str {
    Backend::best().name()
}

/// The process's peak resident memory so far in GB (`VmHWM`; Linux only, `None` elsewhere).
pub fn peak_rss_gb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0 / 1e9)
}
