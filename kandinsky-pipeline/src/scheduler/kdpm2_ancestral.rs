//! diffusers `KDPM2AncestralDiscreteScheduler`: DPM2 towards σ_down with the midpoint in log σ,
//! then fresh noise of σ_up (σ_down² + σ_up² = σ_next²).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::check_index;
use super::karras::{KOptions, KRun, add_noise, denoised, init_noise_sigma, scale_input};
use super::kdpm2::{check_prediction, log_midpoint};
use super::schedule::NoiseSchedule;
use super::sigmas::{SigmaSpacing, sigma_to_t};
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// DPM2 ancestral sampling: stochastic, two evaluations per step (t_k, then the midpoint
/// t_mid_k) except the last, noise after each midpoint.
#[derive(Debug, Clone)]
pub struct KDpm2AncestralDiscreteScheduler {
    schedule: NoiseSchedule,
    options: KOptions,
    prediction: PredictionType,
    timesteps: Vec<f64>,
    /// Per step k: σ_k, the midpoint, σ_up, σ_down.
    sigmas: Vec<f32>,
    mid: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    /// σ per evaluation (for `add_noise`).
    per_evaluation: Vec<f32>,
    pending: Option<Tensor<2>>,
    cursor: Cursor,
}

impl KDpm2AncestralDiscreteScheduler {
    /// Builds it from a config (defaults as diffusers: linear betas, ε-prediction, linspace).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let mut options = KOptions::of(&c, path)?;
        options.round_respaced = options.sigma_spacing == SigmaSpacing::Karras;
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options,
            prediction: check_prediction(
                c.prediction_type.unwrap_or(PredictionType::Epsilon),
                path,
            )?,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            mid: Vec::new(),
            up: Vec::new(),
            down: Vec::new(),
            per_evaluation: Vec::new(),
            pending: None,
            cursor: Cursor::default(),
        })
    }

    /// The step an evaluation index belongs to, and whether it is the midpoint evaluation.
    fn step_of(index: usize) -> (usize, bool) {
        (index.div_ceil(2), index % 2 == 1)
    }
}

impl Scheduler for KDpm2AncestralDiscreteScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        let run = KRun::new(&self.schedule, &self.options, steps)?;
        let n = run.timesteps.len();
        let s = &run.sigmas;
        let next = |k: usize| if k < n { s[k + 1] } else { 0.0 };
        self.up = (0..n)
            .map(|k| {
                let (a, b) = (s[k], next(k));
                (b * b * (a * a - b * b) / (a * a)).sqrt()
            })
            .collect();
        self.down = (0..n)
            .map(|k| {
                let b = next(k);
                let up = self.up[k];
                (b * b - up * up).sqrt()
            })
            .collect();
        self.mid = (0..n)
            .map(|k| {
                if k + 1 >= n {
                    0.0
                } else {
                    log_midpoint(s[k], self.down[k])
                }
            })
            .collect();
        self.sigmas = s[..n].to_vec();
        let t_mid: Vec<f64> = self
            .mid
            .iter()
            .map(|&m| sigma_to_t(m as f64, &run.log_sigmas))
            .collect();
        let mut timesteps = vec![run.timesteps[0]];
        let mut per_evaluation = vec![s[0]];
        for k in 1..n {
            timesteps.push(t_mid[k - 1]);
            timesteps.push(run.timesteps[k]);
            per_evaluation.push(s[k]);
            per_evaluation.push(s[k]);
        }
        self.timesteps = timesteps;
        self.per_evaluation = per_evaluation;
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
        let sigma = match Self::step_of(index) {
            (k, false) => self.sigmas[k],
            (k, true) => self.mid[k - 1],
        };
        Ok(scale_input(sample, sigma))
    }

    fn needs_noise(&self, index: usize) -> bool {
        index < self.timesteps.len() && index % 2 == 1
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError> {
        check_same("model output", &model_output, &sample)?;
        let len = self.timesteps.len();
        let taken = self.cursor.advance(index, len)?;
        if taken == 0 {
            self.pending = None;
        }
        match Self::step_of(index) {
            (k, false) => {
                let (sigma, mid) = (self.sigmas[k], self.mid[k]);
                let x0 = denoised(self.prediction, model_output, sample.clone(), sigma);
                let derivative = (sample.clone() - x0.clone()) / sigma;
                let prev = sample.clone() + derivative * (mid - sigma);
                self.pending = Some(sample);
                Ok(StepOutput {
                    prev_sample: prev,
                    pred_original_sample: x0,
                })
            }
            (k, true) => {
                let k = k - 1;
                let noise = noise.ok_or(SchedulerError::MissingNoise {
                    index,
                    timestep: self.timesteps[index],
                })?;
                check_same("noise", &noise, &sample)?;
                let start = self.pending.take().ok_or(SchedulerError::Order {
                    expected: index - 1,
                    found: index,
                })?;
                let (sigma, mid) = (self.sigmas[k], self.mid[k]);
                let x0 = denoised(self.prediction, model_output, sample.clone(), mid);
                let derivative = (sample - x0.clone()) / mid;
                let prev = start + derivative * (self.down[k] - sigma) + noise * self.up[k];
                Ok(StepOutput {
                    prev_sample: prev,
                    pred_original_sample: x0,
                })
            }
        }
    }

    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError> {
        add_noise(
            &self.per_evaluation,
            self.timesteps.len(),
            original,
            noise,
            index,
        )
    }

    fn describe(&self) -> String {
        match self.options.sigma_spacing.label() {
            Some(label) => format!("KDPM2AncestralDiscreteScheduler({label})"),
            None => "KDPM2AncestralDiscreteScheduler".into(),
        }
    }
}
