//! diffusers `DDIMScheduler`: deterministic (η = 0) implicit sampling (the 2.1 decoder's
//! default).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::ddpm::add_noise;
use super::schedule::{NoiseSchedule, TimestepSpacing};
use super::{
    PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, begin_step,
    checked_timesteps,
};

/// Denoising diffusion implicit sampling. Each step goes from t to t − T div N (whatever the
/// spacing, as the reference does); before timestep 0, ᾱ is 1 with `set_alpha_to_one`, else ᾱ_0.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    schedule: NoiseSchedule,
    train_steps: usize,
    prediction: PredictionType,
    clip: Option<f64>,
    final_alpha_cumprod: f64,
    spacing: TimestepSpacing,
    offset: i64,
    eta: f64,
    timesteps: Vec<i64>,
    timesteps_f: Vec<f64>,
}

impl DdimScheduler {
    /// Builds it from a config. Defaults as diffusers: linear betas 1e-4…0.02 over 1000 steps,
    /// ε-prediction, clip at ±1, `set_alpha_to_one`, leading, offset 0; η = 0.
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let train_steps = c.num_train_timesteps.unwrap_or(1000);
        let schedule = c.noise_schedule(path)?;
        let final_alpha_cumprod = if c.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Ok(Self {
            schedule,
            train_steps,
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            clip: c
                .clip_sample
                .unwrap_or(true)
                .then_some(c.clip_sample_range.unwrap_or(1.0)),
            final_alpha_cumprod,
            spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Leading),
            offset: c.steps_offset.unwrap_or(0),
            eta: 0.0,
            timesteps: Vec::new(),
            timesteps_f: Vec::new(),
        })
    }

    /// Sets η, the weight of the stochastic part of each step (0, the pipelines' default, makes
    /// sampling deterministic; η > 0 steps need noise).
    pub fn with_eta(mut self, eta: f64) -> Self {
        self.eta = eta.max(0.0);
        self
    }

    /// The noise schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Noises a clean sample to training timestep `timestep`: √ᾱ·x₀ + √(1 − ᾱ)·ε.
    pub fn add_noise_at(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        timestep: i64,
    ) -> Result<Tensor<2>, SchedulerError> {
        add_noise(&self.schedule, original, noise, timestep)
    }
}

const DESCRIBE: &str = "DDIMScheduler";

impl Scheduler for DdimScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.timesteps = checked_timesteps(self.spacing, self.train_steps, steps, self.offset)?;
        self.timesteps_f = self.timesteps.iter().map(|&t| t as f64).collect();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f
    }

    fn needs_noise(&self, index: usize) -> bool {
        self.eta > 0.0 && index < self.timesteps.len()
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError> {
        let len = self.timesteps.len();
        let (t, model_output, _) = begin_step(
            &self.timesteps,
            index,
            model_output,
            &sample,
            noise.as_ref(),
            false,
        )?;
        let prev_t = t - (self.train_steps / len) as i64;
        // Scalars in f32, in the reference's order (see the DDPM scheduler's docs).
        let final_alpha = self.final_alpha_cumprod;
        let alpha_prod_t = self.schedule.alpha_cumprod(t, final_alpha) as f32;
        let alpha_prod_t_prev = self.schedule.alpha_cumprod(prev_t, final_alpha) as f32;
        let beta_prod_t = 1.0 - alpha_prod_t;
        let (x0, eps) = match self.prediction {
            PredictionType::Epsilon => (
                (sample.clone() - model_output.clone() * beta_prod_t.sqrt()) / alpha_prod_t.sqrt(),
                model_output,
            ),
            PredictionType::Sample => (
                model_output.clone(),
                (sample.clone() - model_output * alpha_prod_t.sqrt()) / beta_prod_t.sqrt(),
            ),
            PredictionType::VPrediction => (
                sample.clone() * alpha_prod_t.sqrt() - model_output.clone() * beta_prod_t.sqrt(),
                model_output * alpha_prod_t.sqrt() + sample.clone() * beta_prod_t.sqrt(),
            ),
        };
        let x0 = match self.clip {
            Some(range) => x0.clamp(-range, range),
            None => x0,
        };
        let variance =
            (1.0 - alpha_prod_t_prev) / beta_prod_t * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev = self.eta as f32 * variance.sqrt();
        let direction = eps * (1.0 - alpha_prod_t_prev - std_dev * std_dev).sqrt();
        let mut prev = x0.clone() * alpha_prod_t_prev.sqrt() + direction;
        if self.eta > 0.0 {
            let noise = noise.ok_or(SchedulerError::MissingNoise {
                index,
                timestep: t as f64,
            })?;
            prev = prev + noise * std_dev;
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
        let len = self.timesteps.len();
        let &t = self
            .timesteps
            .get(index)
            .ok_or(SchedulerError::Index { index, len })?;
        add_noise(&self.schedule, original, noise, t)
    }

    fn describe(&self) -> String {
        DESCRIBE.into()
    }
}
