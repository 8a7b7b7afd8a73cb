//! diffusers `UnCLIPScheduler`: the prior's sampler (x₀-prediction, clamped, `fixed_small_log`).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::ddpm::{add_noise, predict_original};
use super::schedule::{BetaSchedule, NoiseSchedule};
use super::{
    PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, VarianceType,
    begin_step, learned_range_noise,
};

/// The unCLIP prior sampler. Timesteps are `round(i · (T−1)/(N−1))` reversed, so 999 … 0; each
/// step goes to the next listed timestep, the last one to −1 (ᾱ = 1).
#[derive(Debug, Clone)]
pub struct UnclipScheduler {
    schedule: NoiseSchedule,
    train_steps: usize,
    prediction: PredictionType,
    variance: VarianceType,
    clip: Option<f64>,
    timesteps: Vec<i64>,
    timesteps_f: Vec<f64>,
}

impl UnclipScheduler {
    /// Builds it from a config. Defaults as diffusers: the cosine (`squaredcos_cap_v2`)
    /// schedule over 1000 steps, `fixed_small_log`, clip at ±1, ε-prediction (the Kandinsky
    /// configs say `sample` and ±10).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        c.validate(path)?;
        let train_steps = c.num_train_timesteps.unwrap_or(1000);
        let kind = c.beta_schedule.unwrap_or(BetaSchedule::SquaredcosCapV2);
        if kind != BetaSchedule::SquaredcosCapV2 {
            return Err(ConfigError::invalid(
                path,
                "beta_schedule",
                "UnCLIPScheduler supports only squaredcos_cap_v2",
            ));
        }
        let variance = c.variance_type.unwrap_or(VarianceType::FixedSmallLog);
        if !matches!(
            variance,
            VarianceType::FixedSmallLog | VarianceType::LearnedRange
        ) {
            return Err(ConfigError::invalid(
                path,
                "variance_type",
                format!(
                    "UnCLIPScheduler supports fixed_small_log and learned_range, found {variance:?}"
                ),
            ));
        }
        let prediction = c.prediction_type.unwrap_or(PredictionType::Epsilon);
        if prediction == PredictionType::VPrediction {
            return Err(ConfigError::invalid(
                path,
                "prediction_type",
                "UnCLIPScheduler supports epsilon and sample",
            ));
        }
        Ok(Self {
            schedule: NoiseSchedule::new(kind, train_steps, 0.0, 0.0),
            train_steps,
            prediction,
            variance,
            clip: c
                .clip_sample
                .unwrap_or(true)
                .then_some(c.clip_sample_range.unwrap_or(1.0)),
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

const DESCRIBE: &str = "UnCLIPScheduler";

impl Scheduler for UnclipScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        if steps < 2 || steps > self.train_steps {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!(
                    "expected 2 to {} (the reference divides by steps − 1)",
                    self.train_steps
                ),
            });
        }
        let ratio = (self.train_steps - 1) as f64 / (steps - 1) as f64;
        self.timesteps = (0..steps)
            .rev()
            .map(|i| (i as f64 * ratio).round_ties_even() as i64)
            .collect();
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
        self.variance == VarianceType::LearnedRange
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
        // The pipeline passes the next listed timestep; after the last, t − 1.
        let prev_t = self.timesteps.get(index + 1).copied().unwrap_or(t - 1);
        // Scalars in f32, in the reference's order (see the DDPM scheduler's docs).
        let alpha_prod_t = self.schedule.alpha_cumprod(t, 1.0) as f32;
        let alpha_prod_t_prev = self.schedule.alpha_cumprod(prev_t, 1.0) as f32;
        let (beta_prod_t, beta_prod_t_prev) = (1.0 - alpha_prod_t, 1.0 - alpha_prod_t_prev);
        let (beta, alpha) = if prev_t == t - 1 {
            let beta = self.schedule.betas[t as usize] as f32;
            (beta, 1.0 - beta)
        } else {
            let beta = 1.0 - alpha_prod_t / alpha_prod_t_prev;
            (beta, 1.0 - beta)
        };

        let x0 = predict_original(
            self.prediction,
            model_output,
            sample.clone(),
            alpha_prod_t,
            self.clip,
        );
        let x0_coeff = alpha_prod_t_prev.sqrt() * beta / beta_prod_t;
        let sample_coeff = alpha.sqrt() * beta_prod_t_prev / beta_prod_t;
        let mut prev = x0.clone() * x0_coeff + sample * sample_coeff;
        if t > 0 {
            let noise = noise.ok_or(SchedulerError::MissingNoise {
                index,
                timestep: t as f64,
            })?;
            let variance = beta_prod_t_prev / beta_prod_t * beta;
            let scaled = match predicted_variance {
                Some(v) if self.variance == VarianceType::LearnedRange => {
                    learned_range_noise(v, beta, variance, noise)
                }
                _ => noise * (0.5 * variance.max(1e-20).ln()).exp(),
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
