//! The timings of the GPU check (`scripts/gpu-check.sh`, which runs them inside the parity-suite
//! binary as its ignored test `gpu_timings_run`; this example runs them alone): a UNet step at the
//! real Kandinsky 2.2 config (random weights, batch 2, 64×64 latent, as the decoder loop calls
//! it), a MoVQ decode of a 64×64 latent to 512×512, and, given prior and decoder folders, a
//! whole 2.2 generation. Medians of several runs after a warm-up (kernel compilation and
//! autotuning happen there), each ended by a device sync. The float dtype is `KANDINSKY_DTYPE`.
//!
//! ```text
//! KANDINSKY_DTYPE=f16 cargo run --release -p kandinsky-benches --no-default-features \
//!     --features cuda --example gpu_timings -- [RUNS [PRIOR_DIR DECODER_DIR]]
//! ```

#[path = "../glibc_compat.rs"]
mod glibc_compat;

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device, dtype_name, median_seconds};
use kandinsky_common::tensors::f32_tensor;
use kandinsky_movq::MoVQConfig;
use kandinsky_pipeline::{Kandinsky, Request};
use kandinsky_unet::{Conditioning, UNetConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&args);
}

/// The timings, with the command line's arguments: `[RUNS [PRIOR_DIR DECODER_DIR]]`. Also
/// called by the parity suite's `gpu_timings_run`, which carries it to the GPU machine.
pub fn run(args: &[String]) {
    let runs = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let device = bench_device();
    let tag = format!("ours {} {}", backend_name(), dtype_name());
    let normal = Distribution::Normal(0.0, 1.0);

    let unet = UNetConfig::kandinsky_2_2(4).init(&device);
    let latents = Tensor::<4>::random([2, 4, 64, 64], normal, &device);
    let image_embeds = Tensor::<2>::random([2, 1280], normal, &device);
    let timestep = f32_tensor::<1>([999.0f32].into(), &device);
    let step = median_seconds(&device, runs, || {
        let conditioning = Conditioning::Image {
            image_embeds: image_embeds.clone(),
        };
        let _ = unet
            .forward(latents.clone(), timestep.clone(), conditioning)
            .expect("UNet forward");
    });
    println!("{tag}: UNet step (batch 2, 64x64): {step:.4} s");
    drop(unet);

    let movq = MoVQConfig::kandinsky().init(&device);
    let latent = Tensor::<4>::random([1, 4, 64, 64], normal, &device);
    let decode = median_seconds(&device, runs, || {
        let _ = movq.decode(latent.clone(), true).expect("MoVQ decode");
    });
    println!("{tag}: MoVQ decode to 512x512: {decode:.4} s");
    drop(movq);

    if let [_, prior, decoder, ..] = args {
        let mut pipeline = Kandinsky::from_folders(prior.as_ref(), decoder.as_ref(), &device)
            .expect("open the pipeline folders");
        let request = Request::text_to_image("a red cat sitting on a windowsill")
            .with_prior_steps(25)
            .with_steps(50)
            .with_size(512, 512);
        for run in 0..2 {
            let start = Instant::now();
            let images = pipeline
                .generate(&request)
                .and_then(|out| out.images())
                .expect("generate");
            device.sync().expect("sync");
            println!(
                "{tag}: whole 2.2 generation 512x512, 25 prior + 50 decoder steps (run {run}): \
                 {:.2} s ({}x{})",
                start.elapsed().as_secs_f64(),
                images[0].width,
                images[0].height
            );
        }
    }
}
