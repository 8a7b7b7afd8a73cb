//! diffusers `LMSDiscreteScheduler`: linear multistep (Adams–Bashforth in σ) of order up to 4.
//!
//! The coefficients are integrals over [σ_i, σ_{i+1}] of Lagrange basis polynomials of degree
//! ≤ 3 in σ. The reference integrates them with SciPy's `quad` (adaptive Gauss–Kronrod, exact
//! for such polynomials up to rounding); a 3-point Gauss–Legendre rule is exact for degree ≤ 5,
//! so no SciPy-level code is needed.

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::karras::{KOptions, KRun, denoised, init_noise_sigma};
use super::schedule::NoiseSchedule;
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// The largest order (diffusers' `step(order=4)` default).
const ORDER: usize = 4;

/// Linear multistep sampling: deterministic, one evaluation per step, history of 4
/// derivatives.
#[derive(Debug, Clone)]
pub struct LmsDiscreteScheduler {
    schedule: NoiseSchedule,
    options: KOptions,
    prediction: PredictionType,
    run: KRun,
    /// The last derivatives, oldest first.
    derivatives: Vec<Tensor<2>>,
    cursor: Cursor,
}

impl LmsDiscreteScheduler {
    /// Builds it from a config (defaults as diffusers: linear betas, ε-prediction, linspace).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options: KOptions::of(&c, path)?,
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            run: KRun::default(),
            derivatives: Vec::new(),
            cursor: Cursor::default(),
        })
    }

    /// ∫_{σ_t}^{σ_{t+1}} ∏_{k ≠ current, k < order} (τ − σ_{t−k}) / (σ_{t−current} − σ_{t−k}) dτ.
    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let s = |i: usize| self.run.sigmas[i] as f64;
        let basis = |tau: f64| {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - s(t - k)) / (s(t - current) - s(t - k)))
                .product::<f64>()
        };
        let (a, b) = (s(t), s(t + 1));
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        let x = (3.0f64 / 5.0).sqrt();
        half * (5.0 / 9.0 * basis(mid - half * x)
            + 8.0 / 9.0 * basis(mid)
            + 5.0 / 9.0 * basis(mid + half * x))
    }
}

impl Scheduler for LmsDiscreteScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.run = KRun::new(&self.schedule, &self.options, steps)?;
        self.derivatives.clear();
        self.cursor.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.run.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        init_noise_sigma(&self.run.sigmas, self.options.spacing)
    }

    fn preserves_variance(&self) -> bool {
        false
    }

    fn scale_model_input(
        &self,
        index: usize,
        sample: Tensor<2>,
    ) -> Result<Tensor<2>, SchedulerError> {
        self.run.scale(index, sample)
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
        check_same("model output", &model_output, &sample)?;
        let len = self.run.timesteps.len();
        let taken = self.cursor.advance(index, len)?;
        if taken == 0 {
            self.derivatives.clear();
        }
        let sigma = self.run.sigmas[index];
        let x0 = denoised(self.prediction, model_output, sample.clone(), sigma);
        self.derivatives.push((sample.clone() - x0.clone()) / sigma);
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        // As the reference: the order counts from index 0, not from the run's first index;
        // the newest derivatives pair with the first coefficients.
        let order = (index + 1).min(ORDER);
        let mut prev = sample;
        for (current, derivative) in (0..order).zip(self.derivatives.iter().rev()) {
            let c = self.coefficient(order, index, current);
            prev = prev + derivative.clone() * c as f32;
        }
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
        self.run.add_noise(original, noise, index)
    }

    fn describe(&self) -> String {
        match self.options.sigma_spacing.label() {
            Some(label) => format!("LMSDiscreteScheduler({label})"),
            None => "LMSDiscreteScheduler".into(),
        }
    }
}
