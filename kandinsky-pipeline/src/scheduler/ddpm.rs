//! diffusers `DDPMScheduler`: ancestral sampling (the 2.2 decoder's default).
//!
//! The per-step scalars (ᾱ ratios, coefficients, variances) are computed in f32 in the
//! reference's order, as the reference does: with the cosine schedule near t = 999,
//! 1 − ᾱ_t/ᾱ_prev rounds to exactly 1 in f32, which removes x_t's term from the step; f64 would
//! keep a 1e-4 contribution and differ from the reference by that much.

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::schedule::{NoiseSchedule, TimestepSpacing};
use super::{
    PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, VarianceType,
    begin_step, checked_timesteps, learned_range_noise,
};

/// Denoising diffusion probabilistic sampling.
#[derive(Debug, Clone)]
pub struct DdpmScheduler {
    schedule: NoiseSchedule,
    train_steps: usize,
    prediction: PredictionType,
    variance: VarianceType,
    clip: Option<f64>,
    spacing: TimestepSpacing,
    offset: i64,
    timesteps: Vec<i64>,
    timesteps_f: Vec<f64>,
}

impl DdpmScheduler {
    /// Builds it from a config (`path` names the file in errors). Defaults as diffusers: linear
    /// betas 1e-4…0.02 over 1000 steps, ε-prediction, `fixed_small`, clip at ±1, leading, offset 0.
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let train_steps = c.num_train_timesteps.unwrap_or(1000);
        let schedule = c.noise_schedule(path)?;
        Ok(Self {
            schedule,
            train_steps,
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            variance: c.variance_type.unwrap_or(VarianceType::FixedSmall),
            clip: c
                .clip_sample
                .unwrap_or(true)
                .then_some(c.clip_sample_range.unwrap_or(1.0)),
            spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Leading),
            offset: c.steps_offset.unwrap_or(0),
            timesteps: Vec::new(),
            timesteps_f: Vec::new(),
        })
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

/// x̂₀ from the model output, then clamped (shared by DDPM and UnCLIP).
pub(crate) fn predict_original(
    prediction: PredictionType,
    model_output: Tensor<2>,
    sample: Tensor<2>,
    alpha_prod_t: f32,
    clip: Option<f64>,
) -> Tensor<2> {
    let beta_prod_t = 1.0 - alpha_prod_t;
    let x0 = match prediction {
        PredictionType::Epsilon => {
            (sample - model_output * beta_prod_t.sqrt()) / alpha_prod_t.sqrt()
        }
        PredictionType::Sample => model_output,
        PredictionType::VPrediction => {
            sample * alpha_prod_t.sqrt() - model_output * beta_prod_t.sqrt()
        }
    };
    match clip {
        Some(range) => x0.clamp(-range, range),
        None => x0,
    }
}

const DESCRIBE: &str = "DDPMScheduler";

impl Scheduler for DdpmScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.timesteps = checked_timesteps(self.spacing, self.train_steps, steps, self.offset)?;
        self.timesteps_f = self.timesteps.iter().map(|&t| t as f64).collect();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f
    }

    fn needs_noise(&self, index: usize) -> bool {
        self.timesteps.get(index).is_some_and(|&t| t > 0)
    }

    fn uses_model_variance(&self) -> bool {
        matches!(
            self.variance,
            VarianceType::Learned | VarianceType::LearnedRange
        )
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError> {
        let model_variance = self.uses_model_variance();
        let (t, model_output, predicted_variance) = begin_step(
            &self.timesteps,
            index,
            model_output,
            &sample,
            noise.as_ref(),
            model_variance,
        )?;
        let n = sample.dims()[1];
        let prev_t = self.timesteps.get(index + 1).copied().unwrap_or(-1);
        // The step's scalars in f32, in the reference's order: its f32 rounding is part of the
        // result (see the module docs).
        let alpha_prod_t = self.schedule.alpha_cumprod(t, 1.0) as f32;
        let alpha_prod_t_prev = self.schedule.alpha_cumprod(prev_t, 1.0) as f32;
        let (beta_prod_t, beta_prod_t_prev) = (1.0 - alpha_prod_t, 1.0 - alpha_prod_t_prev);
        let current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
        let current_beta_t = 1.0 - current_alpha_t;

        let x0 = predict_original(
            self.prediction,
            model_output,
            sample.clone(),
            alpha_prod_t,
            self.clip,
        );
        let x0_coeff = alpha_prod_t_prev.sqrt() * current_beta_t / beta_prod_t;
        let sample_coeff = current_alpha_t.sqrt() * beta_prod_t_prev / beta_prod_t;
        let mut prev = x0.clone() * x0_coeff + sample * sample_coeff;
        if t > 0 {
            let noise = noise.ok_or(SchedulerError::MissingNoise {
                index,
                timestep: t as f64,
            })?;
            let variance = (beta_prod_t_prev / beta_prod_t * current_beta_t).max(1e-20);
            let scaled = match (self.variance, predicted_variance) {
                (VarianceType::FixedSmall, _) => noise * variance.sqrt(),
                (VarianceType::FixedSmallLog, _) => noise * (0.5 * variance.ln()).exp(),
                (VarianceType::FixedLarge, _) => noise * current_beta_t.sqrt(),
                (VarianceType::Learned, Some(v)) => v.sqrt() * noise,
                (VarianceType::LearnedRange, Some(v)) => {
                    learned_range_noise(v, current_beta_t, variance, noise)
                }
                (VarianceType::Learned | VarianceType::LearnedRange, None) => {
                    return Err(SchedulerError::Shape(format!(
                        "a learned variance needs the model's variance channels: model output of width {}, expected {}",
                        n,
                        2 * n
                    )));
                }
            };
            prev = prev + scaled;
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

/// √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε (shared by the schedulers).
pub(crate) fn add_noise(
    schedule: &NoiseSchedule,
    original: Tensor<2>,
    noise: Tensor<2>,
    timestep: i64,
) -> Result<Tensor<2>, SchedulerError> {
    let len = schedule.alphas_cumprod.len();
    if timestep < 0 || timestep as usize >= len {
        return Err(SchedulerError::Steps {
            steps: timestep.max(0) as usize,
            reason: format!("add_noise needs a timestep in 0..{len}, found {timestep}"),
        });
    }
    if original.dims() != noise.dims() {
        return Err(SchedulerError::Shape(format!(
            "noise {:?} for a sample {:?}",
            noise.dims(),
            original.dims()
        )));
    }
    let alpha = schedule.alphas_cumprod[timestep as usize] as f32;
    Ok(original * alpha.sqrt() + noise * (1.0 - alpha).sqrt())
}
