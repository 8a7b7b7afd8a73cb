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
//!
//! A random-weight UNet makes a rough ODE (its prediction is not smooth in t, and drives the
//! latents to ~100), on which no solver shows its order. So a second table solves the same
//! schedule's ODE for Gaussian data x₀ ~ N(μ, s²I), whose ideal (guided) noise prediction and
//! exact ODE solution are known in closed form — smooth like a trained model's, with the exact
//! answer instead of DDIM-1000's.

use std::path::PathBuf;

use burn::tensor::Tensor;
use kandinsky_common::tensors::ToHost;
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::{Sampler, Scheduler, SchedulerConfig, build_scheduler};
use kandinsky_pipeline::{DecoderOptions, Rng, decode_v22};
use kandinsky_unet::UNet;

/// The deterministic samplers of the tables.
const DETERMINISTIC: [(&str, bool); 18] = [
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

/// σ(t) of the training schedule at a fractional timestep (linear in log σ between training
/// timesteps, as the samplers map sigmas to timesteps).
fn sigma_at(t: f64, log_sigmas: &[f64]) -> f64 {
    let t = t.clamp(0.0, (log_sigmas.len() - 1) as f64);
    let i = (t.floor() as usize).min(log_sigmas.len() - 2);
    let w = t - i as f64;
    ((1.0 - w) * log_sigmas[i] + w * log_sigmas[i + 1]).exp()
}

/// One run on Gaussian data with the ideal guided prediction; returns the relative distance of
/// the final sample from the exact ODE solution from the same start, and the evaluations.
fn gaussian_run(
    scheduler: &mut dyn Scheduler,
    steps: usize,
    (mu, s): (&Tensor<2>, f64),
    z: &Tensor<2>,
    log_sigmas: &[f64],
) -> (f64, usize) {
    scheduler.set_timesteps(steps).unwrap();
    let timesteps = scheduler.timesteps().to_vec();
    let mut x = z.clone() * scheduler.init_noise_sigma();
    // The exact solution from this start: (x_ve − μ)/√(s² + σ²) is constant along the ODE.
    let sigma0 = sigma_at(timesteps[0], log_sigmas);
    let x_ve = match scheduler.preserves_variance() {
        true => x.clone() * (1.0 + sigma0 * sigma0).sqrt(),
        false => x.clone(),
    };
    let exact = mu.clone() + (x_ve - mu.clone()) * (s / (s * s + sigma0 * sigma0).sqrt());
    let mut noise = Rng::new(5);
    for (i, &t) in timesteps.iter().enumerate() {
        let input = scheduler.scale_model_input(i, x.clone()).unwrap();
        let sigma = sigma_at(t, log_sigmas);
        let alpha = 1.0 / (1.0 + sigma * sigma).sqrt();
        let sigma_vp = sigma * alpha;
        let eps = (input - mu.clone() * alpha)
            * (sigma_vp / (alpha * alpha * s * s + sigma_vp * sigma_vp));
        let step_noise = scheduler
            .needs_noise(i)
            .then(|| noise.normal_tensor(x.dims(), &x.device()));
        x = scheduler.step(i, eps, x, step_noise).unwrap().prev_sample;
    }
    let d = (x - exact.clone())
        .powf_scalar(2.0)
        .sum()
        .into_scalar::<f32>() as f64;
    let n = exact.powf_scalar(2.0).sum().into_scalar::<f32>() as f64;
    ((d / n).sqrt(), timesteps.len())
}

/// The second table: Gaussian data, exact solution.
fn gaussian_table(base: &SchedulerConfig, base_path: &std::path::Path, samplers: &[(&str, bool)]) {
    let device = burn::tensor::Device::flex();
    let mut rng = Rng::new(7);
    let (mu_pos, mu_neg) = (
        rng.normal_tensor([1, 256], &device) * 0.5,
        rng.normal_tensor([1, 256], &device) * 0.5,
    );
    // Guidance 4 of two Gaussians' ideal predictions is the ideal prediction of N(μ_g, s²).
    let mu = mu_neg.clone() + (mu_pos - mu_neg) * 4.0;
    let s = 0.5;
    let z = rng.normal_tensor([1, 256], &device);
    let schedule = kandinsky_pipeline::scheduler::DdpmScheduler::new(base.clone(), base_path)
        .unwrap()
        .schedule()
        .clone();
    let log_sigmas: Vec<f64> = schedule
        .alphas_cumprod
        .iter()
        .map(|&a| ((1.0 - a) / a).sqrt().ln())
        .collect();
    let steps = [5, 10, 20, 50];
    println!();
    println!(
        "| sampler (Gaussian data, exact solution) | {} |",
        steps.map(|s| format!("{s} steps")).join(" | ")
    );
    println!("| --- |{}", " ---: |".repeat(steps.len()));
    for &(name, karras) in samplers {
        let sampler = Sampler::find(name).unwrap();
        let cells: Vec<String> = steps
            .iter()
            .map(|&n| {
                let mut scheduler = sampler.build(base, karras, base_path).unwrap();
                let (d, evaluations) =
                    gaussian_run(scheduler.as_mut(), n, (&mu, s), &z, &log_sigmas);
                match evaluations == n {
                    true => format!("{d:.1e}"),
                    false => format!("{d:.1e} ({evaluations} evals)"),
                }
            })
            .collect();
        let label = if karras {
            format!("{name} + karras")
        } else {
            name.to_string()
        };
        println!("| {label} | {} |", cells.join(" | "));
    }
    for (name, n) in [("ddim", 100), ("ddpm", 100)] {
        let mut scheduler = Sampler::find(name)
            .unwrap()
            .build(base, false, base_path)
            .unwrap();
        let (d, _) = gaussian_run(scheduler.as_mut(), n, (&mu, s), &z, &log_sigmas);
        println!("{name} at {n} steps: {d:.1e}");
    }
}

fn main() {
    let device = burn::tensor::Device::flex();
    let dir = fixtures();
    let base_path = dir.join("schedulers/ddpm/scheduler_config.json");
    let base = SchedulerConfig::from_file(&base_path).unwrap();
    if std::env::args().any(|a| a == "--gaussian") {
        gaussian_table(&base, &base_path, &DETERMINISTIC);
        return;
    }
    let unet = UNet::load(&dir.join("unet_22/unet"), &device).unwrap();
    let movq = MoVQ::load(&dir.join("movq/movq"), &device).unwrap();
    let mut rng = Rng::new(2026);
    let embeds = (
        rng.normal_tensor([1, 28], &device),
        rng.normal_tensor([1, 28], &device),
    );
    let latents = rng.normal_tensor([1, 4, 8, 8], &device);

    // The reference: DDIM, η = 0, every training timestep, down to σ = 0.
    let exact = SchedulerConfig {
        class_name: "DDIMScheduler".into(),
        set_alpha_to_one: Some(true),
        timestep_spacing: Some(kandinsky_pipeline::scheduler::schedule::TimestepSpacing::Trailing),
        steps_offset: Some(0),
        ..base.clone()
    };
    let mut ddim = build_scheduler(exact, &base_path).unwrap();
    let (reference, _) = run(&unet, &movq, ddim.as_mut(), 1000, &embeds, &latents);

    let steps = [5, 10, 20, 50];
    println!(
        "| sampler | {} |",
        steps.map(|s| format!("{s} steps")).join(" | ")
    );
    println!("| --- |{}", " ---: |".repeat(steps.len()));
    for (name, karras) in DETERMINISTIC {
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
    gaussian_table(&base, &base_path, &DETERMINISTIC);
}
