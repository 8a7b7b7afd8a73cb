//! How many steps each deterministic sampler needs: the distance of its final latents from a
//! 1000-step DDIM (η = 0) solution of the same probability-flow ODE, on the small 2.2 decoder
//! fixture (random weights, 64×64, guidance 4, the same initial noise), at 5, 10, 20 and 50
//! steps. Prints the BENCHMARKS.md table.
//!
//! ```text
//! cargo run --release -p kandinsky-pipeline --example convergence
//! ```
//!
//! The distance is ‖x − x*‖ / ‖x*‖ over the final latents. Each sampler is built as the CLI
//! builds it, on the decoder's own scheduler config; the reference DDIM ends exactly at σ = 0
//! (`set_alpha_to_one`) and visits every training timestep (`trailing`).

use std::path::PathBuf;

use burn::tensor::Tensor;
use kandinsky_common::tensors::ToHost;
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::{Sampler, Scheduler, SchedulerConfig, build_scheduler};
use kandinsky_pipeline::{DecoderOptions, Rng, decode_v22};
use kandinsky_unet::UNet;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The final latents of one run, and the number of model evaluations.
fn run(
    unet: &UNet,
    movq: &MoVQ,
    scheduler: &mut dyn Scheduler,
    steps: usize,
    embeds: &(Tensor<2>, Tensor<2>),
    latents: &Tensor<4>,
) -> (Vec<f32>, usize) {
    let options = DecoderOptions {
        height: 64,
        width: 64,
        steps,
        guidance_scale: 4.0,
    };
    let mut last = None;
    let mut evaluations = 0;
    let mut noise = Rng::new(1);
    decode_v22(
        unet,
        movq,
        scheduler,
        embeds.0.clone(),
        embeds.1.clone(),
        Some(latents.clone()).into(),
        &options,
        &mut noise,
        &mut |_, l| {
            evaluations += 1;
            last = Some(l.clone());
        },
    )
    .expect("a run on the fixtures");
    let last = last.expect("at least one step").to_host();
    (
        last.convert::<f32>().try_into_vec::<f32>().unwrap(),
        evaluations,
    )
}

fn distance(x: &[f32], reference: &[f32]) -> f64 {
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (a, b) in x.iter().zip(reference) {
        d += ((a - b) as f64).powi(2);
        n += (*b as f64).powi(2);
    }
    (d / n).sqrt()
}

fn main() {
    let device = burn::tensor::Device::flex();
    let dir = fixtures();
    let unet = UNet::load(&dir.join("unet_22/unet"), &device).unwrap();
    let movq = MoVQ::load(&dir.join("movq/movq"), &device).unwrap();
    let base_path = dir.join("schedulers/ddpm/scheduler_config.json");
    let base = SchedulerConfig::from_file(&base_path).unwrap();
    let mut rng = Rng::new(2026);
    let embeds = (
        rng.normal_tensor([1, 28], &device),
        rng.normal_tensor([1, 28], &device),
    );
    let latents = rng.normal_tensor([1, 4, 8, 8], &device);

    // The reference: DDIM, η = 0, every training timestep, down to σ = 0.
    let mut exact = SchedulerConfig {
        class_name: "DDIMScheduler".into(),
        set_alpha_to_one: Some(true),
        timestep_spacing: Some(kandinsky_pipeline::scheduler::schedule::TimestepSpacing::Trailing),
        ..base.clone()
    };
    exact.steps_offset = Some(0);
    let mut ddim = build_scheduler(exact, &base_path).unwrap();
    let (reference, _) = run(&unet, &movq, ddim.as_mut(), 1000, &embeds, &latents);

    let steps = [5, 10, 20, 50];
    println!(
        "| sampler | {} |",
        steps.map(|s| format!("{s} steps")).join(" | ")
    );
    println!("| --- |{}", " ---: |".repeat(steps.len()));
    let deterministic = [
        ("ddim", false),
        ("dpm++2m", false),
        ("dpm++2m", true),
        ("dpm++3m", false),
        ("dpm++3m", true),
        ("dpm++2s", false),
        ("unipc", false),
        ("unipc", true),
        ("deis", false),
        ("pndm", false),
        ("euler", false),
        ("euler", true),
        ("heun", false),
        ("heun", true),
        ("dpm2", false),
        ("dpm2", true),
        ("lms", false),
        ("lms", true),
    ];
    for (name, karras) in deterministic {
        let sampler = Sampler::find(name).unwrap();
        let mut cells = Vec::new();
        for n in steps {
            let mut scheduler = sampler.build(&base, karras, &base_path).unwrap();
            let (x, evaluations) = run(&unet, &movq, scheduler.as_mut(), n, &embeds, &latents);
            let d = distance(&x, &reference);
            cells.push(if evaluations == n {
                format!("{d:.1e}")
            } else {
                format!("{d:.1e} ({evaluations} evals)")
            });
        }
        let label = if karras {
            format!("{name} + karras")
        } else {
            name.to_string()
        };
        println!("| {label} | {} |", cells.join(" | "));
    }
    // The reference pipelines' defaults, for comparison: DDIM at 100 steps is the deterministic
    // counterpart of the 2.2 default (DDPM, 100 steps), whose own sample is a different draw
    // of a stochastic process (its distance says how far the noise takes it, not an error).
    for (name, n) in [("ddim", 100), ("ddpm", 100)] {
        let mut scheduler = Sampler::find(name)
            .unwrap()
            .build(&base, false, &base_path)
            .unwrap();
        let (x, _) = run(&unet, &movq, scheduler.as_mut(), n, &embeds, &latents);
        println!("{name} at {n} steps: {:.1e}", distance(&x, &reference));
    }
}
