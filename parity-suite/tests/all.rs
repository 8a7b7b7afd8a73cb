//! Every parity test of the component crates in one binary (`--features suite`), so that a
//! GPU machine without a Rust toolchain gets one file to run: `scripts/gpu-check.sh` builds it
//! for CUDA and Vulkan, and runs it with `BURN_DEVICE`. The f16 and bf16 tests each need a
//! process of their own (a device's float dtype is fixed once set): run them one at a time
//! with `--exact`, the others with `--skip f16_device --skip bf16_device`. Image-file decoding
//! (`kandinsky-pipeline/tests/image_input.rs`) runs on the host only and stays out.
#![allow(dead_code, unused_imports, clippy::duplicate_mod)]

#[path = "../../benches/examples/gpu_timings.rs"]
mod gpu_timings;

/// The GPU check's timings (`benches/examples/gpu_timings.rs`, on the backend of the
/// `kandinsky-benches` feature enabled through this crate's), in this binary so that one file
/// per backend travels: `KANDINSKY_TIMINGS="RUNS [PRIOR_DIR DECODER_DIR]" all --ignored --exact
/// gpu_timings_run --nocapture`.
#[test]
#[ignore = "timings, not a test: scripts/gpu-check.sh runs it"]
fn gpu_timings_run() {
    let args: Vec<String> = std::env::var("KANDINSKY_TIMINGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    gpu_timings::run(&args);
}

#[path = "../../kandinsky-clip/tests/bad_input.rs"]
mod clip_bad_input;
#[path = "../../kandinsky-clip/tests/bf16_device.rs"]
mod clip_bf16_device;
#[path = "../../kandinsky-clip/tests/f16_device.rs"]
mod clip_f16_device;
#[path = "../../kandinsky-clip/tests/parity.rs"]
mod clip_parity;
#[path = "../../kandinsky-clip/tests/preprocessing.rs"]
mod clip_preprocessing;
#[path = "../../kandinsky-clip/tests/tokenizers.rs"]
mod clip_tokenizers;
#[path = "../../kandinsky-common/tests/read_back.rs"]
mod common_read_back;
#[path = "../../kandinsky-movq/tests/bad_input.rs"]
mod movq_bad_input;
#[path = "../../kandinsky-movq/tests/bf16_device.rs"]
mod movq_bf16_device;
#[path = "../../kandinsky-movq/tests/f16_device.rs"]
mod movq_f16_device;
#[path = "../../kandinsky-movq/tests/parity.rs"]
mod movq_parity;
#[path = "../../kandinsky-pipeline/tests/kandinsky.rs"]
mod pipeline_kandinsky;
#[path = "../../kandinsky-pipeline/tests/modes.rs"]
mod pipeline_modes;
#[path = "../../kandinsky-pipeline/tests/pipeline21.rs"]
mod pipeline_pipeline21;
#[path = "../../kandinsky-pipeline/tests/pipeline22.rs"]
mod pipeline_pipeline22;
#[path = "../../kandinsky-pipeline/tests/prior_modes.rs"]
mod pipeline_prior_modes;
#[path = "../../kandinsky-pipeline/tests/prior_pipelines.rs"]
mod pipeline_prior_pipelines;
#[path = "../../kandinsky-pipeline/tests/replay.rs"]
mod pipeline_replay;
#[path = "../../kandinsky-pipeline/tests/sampler_pipelines.rs"]
mod pipeline_sampler_pipelines;
#[path = "../../kandinsky-pipeline/tests/samplers.rs"]
mod pipeline_samplers;
#[path = "../../kandinsky-pipeline/tests/schedulers.rs"]
mod pipeline_schedulers;
#[path = "../../kandinsky-prior/tests/bad_input.rs"]
mod prior_bad_input;
#[path = "../../kandinsky-prior/tests/bf16_device.rs"]
mod prior_bf16_device;
#[path = "../../kandinsky-prior/tests/f16_device.rs"]
mod prior_f16_device;
#[path = "../../kandinsky-prior/tests/parity.rs"]
mod prior_parity;
#[path = "../../kandinsky-unet/tests/bad_input.rs"]
mod unet_bad_input;
#[path = "../../kandinsky-unet/tests/bf16_device.rs"]
mod unet_bf16_device;
#[path = "../../kandinsky-unet/tests/f16_device.rs"]
mod unet_f16_device;
#[path = "../../kandinsky-unet/tests/parity.rs"]
mod unet_parity;
