//! diffusers `EulerAncestralDiscreteScheduler`: an Euler step down to σ_down, then fresh noise
//! of σ_up (σ_down² + σ_up² = σ_next²).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::check_index;
use super::karras::{KOptions, KRun, denoised, init_noise_sigma};
use super::schedule::NoiseSchedule;
use super::sigmas::SigmaSpacing;
use super::{PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same};

/// Euler ancestral sampling: stochastic, one evaluation per step.
#[derive(Debug, Clone)]
pub struct EulerAncestralDiscreteScheduler {
    schedule: NoiseSchedule,
    options: KOptions,
    prediction: PredictionType,
    run: KRun,
}

impl EulerAncestralDiscreteScheduler {
    /// Builds it from a config (defaults as diffusers; no respaced sigmas: the class has none).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let mut options = KOptions::of(&c, path)?;
        options.sigma_spacing = SigmaSpacing::Timesteps;
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options,
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            run: KRun::default(),
        })
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.run = KRun::new(&self.schedule, &self.options, steps)?;
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

    fn needs_noise(&self, index: usize) -> bool {
        index < self.run.timesteps.len()
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError> {
        check_same("model output", &model_output, &sample)?;
        let len = self.run.timesteps.len();
        check_index(index, len)?;
        let noise = noise.ok_or(SchedulerError::MissingNoise {
            index,
            timestep: self.run.timesteps[index],
        })?;
        check_same("noise", &noise, &sample)?;
        let (sigma, next) = (self.run.sigmas[index], self.run.sigmas[index + 1]);
        // The reference's f32 arithmetic.
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        let down = (next * next - up * up).sqrt();
        let x0 = denoised(self.prediction, model_output, sample.clone(), sigma);
        let derivative = (sample.clone() - x0.clone()) / sigma;
        let prev = sample + derivative * (down - sigma) + noise * up;
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
        "EulerAncestralDiscreteScheduler".into()
    }
}
