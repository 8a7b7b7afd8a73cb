//! A sampler written outside the crate: DPM-Solver++ 2M (Lu et al. 2022) in ~80 lines on the
//! public [`Scheduler`] trait, with the history a multistep solver keeps. It is checked against
//! the crate's own `DPMSolverMultistepScheduler` (itself parity-tested against diffusers) on a
//! run of random model outputs.
//!
//! ```text
//! cargo run -p kandinsky-pipeline --example custom_scheduler
//! ```
//!
//! To generate with it, pass it to a run: `pipeline.generate_with(&request,
//! Hooks::default().scheduler(&mut sampler))`.

use burn::tensor::{Device, Distribution, Tensor};
use kandinsky_pipeline::scheduler::schedule::{BetaSchedule, NoiseSchedule};
use kandinsky_pipeline::scheduler::{
    Scheduler, SchedulerConfig, SchedulerError, StepOutput, build_scheduler,
};

/// DPM-Solver++ 2M on linspace timesteps, ending at σ = 0.
struct DpmPlusPlus2M {
    /// ᾱ over the training timesteps.
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<f64>,
    /// σ = √((1 − ᾱ)/ᾱ) at each timestep, then 0.
    sigmas: Vec<f64>,
    /// The previous step's x̂₀.
    previous: Option<Tensor<2>>,
}

impl DpmPlusPlus2M {
    fn new(schedule: NoiseSchedule) -> Self {
        Self {
            alphas_cumprod: schedule.alphas_cumprod,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            previous: None,
        }
    }

    /// α_t, σ_t and λ_t = ln(α_t/σ_t) of a sigma.
    fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        (alpha, sigma * alpha, (1.0 / sigma).ln())
    }
}

impl Scheduler for DpmPlusPlus2M {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        let train = self.alphas_cumprod.len();
        if steps == 0 || steps > train {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!("expected 1 to {train}"),
            });
        }
        // round(linspace(0, T − 1, steps + 1)), reversed, without the last.
        let last = (train - 1) as f64;
        self.timesteps = (1..=steps)
            .rev()
            .map(|i| (i as f64 * last / steps as f64).round_ties_even())
            .collect();
        self.sigmas = self
            .timesteps
            .iter()
            .map(|&t| {
                let a = self.alphas_cumprod[t as usize] as f32;
                (((1.0 - a) / a).sqrt()) as f64
            })
            .chain([0.0])
            .collect();
        self.previous = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn needs_noise(&self, _: usize) -> bool {
        false
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        _: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError> {
        let len = self.timesteps.len();
        if index >= len {
            return Err(SchedulerError::Index { index, len });
        }
        let (alpha_s, sigma_s, lambda_s) = Self::alpha_sigma_lambda(self.sigmas[index]);
        let x0 = (sample.clone() - model_output * sigma_s as f32) / alpha_s as f32;
        let next = self.sigmas[index + 1];
        let prev = if next == 0.0 {
            // The last step lands on x̂₀.
            x0.clone()
        } else {
            let (alpha_t, sigma_t, lambda_t) = Self::alpha_sigma_lambda(next);
            let h = lambda_t - lambda_s;
            // Second order from the previous x̂₀ (first order on the first step).
            let d = match (&self.previous, index) {
                (Some(previous), i) if i > 0 => {
                    let h0 = lambda_s - Self::alpha_sigma_lambda(self.sigmas[i - 1]).2;
                    let r = h0 / h;
                    x0.clone() + (x0.clone() - previous.clone()) * (0.5 / r) as f32
                }
                _ => x0.clone(),
            };
            sample * (sigma_t / sigma_s) as f32 - d * (alpha_t * ((-h).exp() - 1.0)) as f32
        };
        self.previous = Some(x0.clone());
        Ok(StepOutput {
            prev_sample: prev,
            pred_original_sample: x0,
        })
    }

    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError> {
        let (alpha, sigma, _) = Self::alpha_sigma_lambda(self.sigmas[index]);
        Ok(original * alpha as f32 + noise * sigma as f32)
    }

    fn describe(&self) -> String {
        "DpmPlusPlus2M (examples/custom_scheduler.rs)".into()
    }
}

fn main() {
    let device = Device::flex();
    // The 2.2 decoder's training schedule.
    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 0.00085, 0.012);
    let mut ours = DpmPlusPlus2M::new(schedule);
    let mut theirs = build_scheduler(
        SchedulerConfig {
            class_name: "DPMSolverMultistepScheduler".into(),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            // Second order to the end, as the example.
            lower_order_final: Some(false),
            ..SchedulerConfig::default()
        },
        std::path::Path::new("(built in code)"),
    )
    .unwrap();
    let steps = 20;
    ours.set_timesteps(steps).unwrap();
    theirs.set_timesteps(steps).unwrap();
    assert_eq!(ours.timesteps(), theirs.timesteps());
    let normal = Distribution::Normal(0.0, 1.0);
    let mut a = Tensor::<2>::random([2, 64], normal, &device);
    let mut b = a.clone();
    for i in 0..steps {
        let eps = Tensor::<2>::random([2, 64], normal, &device) * 0.5 + a.clone() * 0.1;
        a = ours.step(i, eps.clone(), a, None).unwrap().prev_sample;
        b = theirs.step(i, eps, b, None).unwrap().prev_sample;
    }
    let diff = (a.clone() - b).abs().max().into_scalar::<f32>();
    let scale = a.abs().max().into_scalar::<f32>();
    println!(
        "{} vs {}: max difference {diff:.2e} (scale {scale:.2})",
        ours.describe(),
        theirs.describe()
    );
    assert!(diff <= 1e-4 * scale.max(1.0), "the two agree");
}
