//! diffusers `HeunDiscreteScheduler`: Heun's second-order method on the probability-flow ODE
//! in σ (Karras et al. 2022, Algorithm 1): two model evaluations per step, except the last.

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::check_index;
use super::karras::{
    KOptions, KRun, add_noise, denoised, init_noise_sigma, interleave, scale_input,
};
use super::schedule::NoiseSchedule;
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// Heun sampling. `timesteps()` lists every evaluation: t₀, then t₁, t₁, t₂, t₂, …; the odd
/// indices are the corrector evaluations of the step begun at the index before.
#[derive(Debug, Clone)]
pub struct HeunDiscreteScheduler {
    schedule: NoiseSchedule,
    options: KOptions,
    prediction: PredictionType,
    clip: Option<f64>,
    timesteps: Vec<f64>,
    /// σ per evaluation, and the level after the last.
    sigmas: Vec<f32>,
    /// The first evaluation's sample and derivative, awaiting the corrector.
    pending: Option<(Tensor<2>, Tensor<2>)>,
    cursor: Cursor,
}

impl HeunDiscreteScheduler {
    /// Builds it from a config (defaults as diffusers: linear betas, ε-prediction, linspace,
    /// no clipping).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options: KOptions::of(&c, path)?,
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            clip: c
                .clip_sample
                .unwrap_or(false)
                .then_some(c.clip_sample_range.unwrap_or(1.0)),
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            pending: None,
            cursor: Cursor::default(),
        })
    }
}

impl Scheduler for HeunDiscreteScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        let run = KRun::new(&self.schedule, &self.options, steps)?;
        let n = run.timesteps.len();
        self.sigmas = interleave(&run.sigmas, 1..n);
        self.timesteps = std::iter::once(run.timesteps[0])
            .chain(run.timesteps[1..].iter().flat_map(|&t| [t, t]))
            .collect();
        self.pending = None;
        self.cursor.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn order(&self) -> usize {
        2
    }

    fn init_noise_sigma(&self) -> f64 {
        init_noise_sigma(&self.sigmas, self.options.spacing)
    }

    fn preserves_variance(&self) -> bool {
        false
    }

    fn scale_model_input(
        &self,
        index: usize,
        sample: Tensor<2>,
    ) -> Result<Tensor<2>, SchedulerError> {
        let len = self.timesteps.len();
        check_index(index, len)?;
        Ok(scale_input(sample, self.sigmas[index]))
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
        let len = self.timesteps.len();
        let taken = self.cursor.advance(index, len)?;
        if taken == 0 {
            self.pending = None;
        }
        let clip = |x0: Tensor<2>| match self.clip {
            Some(r) => x0.clamp(-r, r),
            None => x0,
        };
        if index.is_multiple_of(2) {
            // A first-order (Euler) evaluation at σ_i towards σ_{i+1}.
            let (sigma, next) = (self.sigmas[index], self.sigmas[index + 1]);
            let x0 = clip(denoised(
                self.prediction,
                model_output,
                sample.clone(),
                sigma,
            ));
            let derivative = (sample.clone() - x0.clone()) / sigma;
            let dt = next - sigma;
            let prev = sample.clone() + derivative.clone() * dt;
            self.pending = Some((sample, derivative));
            Ok(StepOutput {
                prev_sample: prev,
                pred_original_sample: x0,
            })
        } else {
            // The corrector at σ_next: the mean of both derivatives from the step's start.
            let (sigma, next) = (self.sigmas[index - 1], self.sigmas[index]);
            let (start, first) = self.pending.take().ok_or(SchedulerError::Order {
                expected: index - 1,
                found: index,
            })?;
            let x0 = clip(denoised(
                self.prediction,
                model_output,
                sample.clone(),
                next,
            ));
            let derivative = (sample - x0.clone()) / next;
            let derivative = (first + derivative) / 2.0;
            let prev = start + derivative * (next - sigma);
            Ok(StepOutput {
                prev_sample: prev,
                pred_original_sample: x0,
            })
        }
    }

    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError> {
        add_noise(&self.sigmas, self.timesteps.len(), original, noise, index)
    }

    fn describe(&self) -> String {
        match self.options.sigma_spacing.label() {
            Some(label) => format!("HeunDiscreteScheduler({label})"),
            None => "HeunDiscreteScheduler".into(),
        }
    }
}
