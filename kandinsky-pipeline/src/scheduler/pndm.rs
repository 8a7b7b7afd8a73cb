//! diffusers `PNDMScheduler` (Liu et al. 2022): pseudo numerical methods — three pseudo
//! Runge–Kutta warm-up steps (4 evaluations each) then pseudo linear multistep, or with
//! `skip_prk_steps` a pseudo-Heun first step then linear multistep.

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::ddpm::add_noise;
use super::schedule::{NoiseSchedule, TimestepSpacing, linspace, trailing};
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// PNDM sampling: deterministic; `timesteps()` lists every evaluation (n + 9 with the
/// Runge–Kutta warm-up, n + 1 without).
#[derive(Debug, Clone)]
pub struct PndmScheduler {
    schedule: NoiseSchedule,
    train_steps: usize,
    prediction: PredictionType,
    spacing: TimestepSpacing,
    offset: i64,
    skip_prk: bool,
    final_alpha_cumprod: f64,
    steps: usize,
    prk_timesteps: Vec<i64>,
    timesteps: Vec<i64>,
    timesteps_f: Vec<f64>,
    /// The model outputs of the linear multistep, oldest first.
    ets: Vec<Tensor<2>>,
    /// The Runge–Kutta accumulation and the sample a step started from.
    accumulated: Option<Tensor<2>>,
    cur_sample: Option<Tensor<2>>,
    cursor: Cursor,
}

impl PndmScheduler {
    /// Builds it from a config. Defaults as diffusers: linear betas, ε-prediction, leading
    /// spacing, Runge–Kutta warm-up (`skip_prk_steps` false), ᾱ before t = 0 is ᾱ_0.
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let train_steps = c.num_train_timesteps.unwrap_or(1000);
        let schedule = c.noise_schedule(path)?;
        let prediction = c.prediction_type.unwrap_or(PredictionType::Epsilon);
        if prediction == PredictionType::Sample {
            return Err(ConfigError::invalid(
                path,
                "prediction_type",
                "expected epsilon or v_prediction for PNDM, found sample",
            ));
        }
        let final_alpha_cumprod = if c.set_alpha_to_one.unwrap_or(false) {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Ok(Self {
            schedule,
            train_steps,
            prediction,
            spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Leading),
            offset: c.steps_offset.unwrap_or(0),
            skip_prk: c.skip_prk_steps.unwrap_or(false),
            final_alpha_cumprod,
            steps: 0,
            prk_timesteps: Vec::new(),
            timesteps: Vec::new(),
            timesteps_f: Vec::new(),
            ets: Vec::new(),
            accumulated: None,
            cur_sample: None,
            cursor: Cursor::default(),
        })
    }

    /// The sample at `prev` from `sample` at `t` with noise prediction `eps` (the PNDM
    /// transfer, in the reference's f32 arithmetic). Returns it and the x̂₀ of the same ε.
    fn transfer(
        &self,
        sample: Tensor<2>,
        t: i64,
        prev: i64,
        model_output: Tensor<2>,
    ) -> Result<(Tensor<2>, Tensor<2>), SchedulerError> {
        let train = self.train_steps as i64;
        if t < 0 || t >= train || prev >= train {
            return Err(SchedulerError::Steps {
                steps: self.steps,
                reason: format!("timestep {t} falls outside the {train} training timesteps"),
            });
        }
        let alpha_t = self.schedule.alphas_cumprod[t as usize] as f32;
        let alpha_prev = self.schedule.alpha_cumprod(prev, self.final_alpha_cumprod) as f32;
        let (beta_t, beta_prev) = (1.0 - alpha_t, 1.0 - alpha_prev);
        let eps = match self.prediction {
            PredictionType::VPrediction => {
                model_output * alpha_t.sqrt() + sample.clone() * beta_t.sqrt()
            }
            _ => model_output,
        };
        let sample_coeff = (alpha_prev / alpha_t).sqrt();
        let denom = alpha_t * beta_prev.sqrt() + (alpha_t * beta_t * alpha_prev).sqrt();
        let x0 = (sample.clone() - eps.clone() * beta_t.sqrt()) / alpha_t.sqrt();
        let prev = sample * sample_coeff - eps * ((alpha_prev - alpha_t) / denom);
        Ok((prev, x0))
    }
}

/// The Adams–Bashforth combination of the last (up to 4) model outputs, oldest first.
fn adams_bashforth(e: &[Tensor<2>]) -> Tensor<2> {
    let n = e.len();
    match n {
        1 => e[0].clone(),
        2 => (e[1].clone() * 3.0 - e[0].clone()) / 2.0,
        3 => (e[2].clone() * 23.0 - e[1].clone() * 16.0 + e[0].clone() * 5.0) / 12.0,
        _ => {
            (e[n - 1].clone() * 55.0 - e[n - 2].clone() * 59.0 + e[n - 3].clone() * 37.0
                - e[n - 4].clone() * 9.0)
                * (1.0 / 24.0)
        }
    }
}

impl Scheduler for PndmScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        let train = self.train_steps;
        if steps == 0 || steps > train || (!self.skip_prk && steps < 4) {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!("expected {} to {train}", if self.skip_prk { 1 } else { 4 }),
            });
        }
        // The inference timesteps, ascending (the reference's `_timesteps`).
        let base: Vec<i64> = match self.spacing {
            TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .map(|t| t.round_ties_even() as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (train / steps) as i64;
                (0..steps as i64).map(|i| i * ratio + self.offset).collect()
            }
            TimestepSpacing::Trailing => trailing(train as f64, train as f64 / steps as f64)
                .into_iter()
                .rev()
                .map(|t| t as i64)
                .collect(),
        };
        let n = base.len();
        let (prk, plms): (Vec<i64>, Vec<i64>) = if self.skip_prk {
            let mut plms: Vec<i64> = base[..n - 1].to_vec();
            if n >= 2 {
                plms.push(base[n - 2]);
            }
            plms.push(base[n - 1]);
            plms.reverse();
            (Vec::new(), plms)
        } else {
            let half = (train / steps / 2) as i64;
            let last4 = &base[n - 4..];
            let pairs: Vec<i64> = last4.iter().flat_map(|&t| [t, t + half]).collect();
            let doubled: Vec<i64> = pairs[..pairs.len() - 1]
                .iter()
                .flat_map(|&t| [t, t])
                .collect();
            let mut prk = doubled[1..doubled.len() - 1].to_vec();
            prk.reverse();
            let mut plms = base[..n - 3].to_vec();
            plms.reverse();
            (prk, plms)
        };
        self.steps = steps;
        self.timesteps = prk.iter().chain(&plms).copied().collect();
        if let Some(&bad) = self
            .timesteps
            .iter()
            .find(|&&t| t < 0 || t as usize >= train)
        {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!(
                    "timestep {bad} falls outside the {train} training timesteps (check steps_offset)"
                ),
            });
        }
        self.prk_timesteps = prk;
        self.timesteps_f = self.timesteps.iter().map(|&t| t as f64).collect();
        self.ets.clear();
        self.accumulated = None;
        self.cur_sample = None;
        self.cursor.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f
    }

    /// Runge–Kutta steps take 4 evaluations; without them the first step takes 2.
    fn first_index(&self, skipped: usize) -> usize {
        match (self.skip_prk, skipped) {
            (_, 0) => 0,
            (true, s) => s + 1,
            (false, s) if s < 3 => 4 * s,
            (false, s) => s + 9,
        }
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
        let counter = self.cursor.advance(index, len)?;
        if counter == 0 {
            self.ets.clear();
            self.accumulated = None;
            self.cur_sample = None;
        }
        let timestep = self.timesteps[index];
        let ratio = (self.train_steps / self.steps) as i64;
        if index < self.prk_timesteps.len() {
            // Pseudo Runge–Kutta: 4 evaluations per step, weights 1/6, 1/3, 1/3, 1/6. (By
            // index, which is the reference's counter for a run from the start; a run that
            // starts later starts at a step's first evaluation.)
            let diff = if index % 2 == 1 { 0 } else { ratio / 2 };
            let prev_t = timestep - diff;
            let t = self.prk_timesteps[index / 4 * 4];
            let output = match index % 4 {
                0 => {
                    self.accumulated = Some(model_output.clone() / 6.0);
                    self.ets.push(model_output.clone());
                    self.cur_sample = Some(sample.clone());
                    model_output
                }
                1 | 2 => {
                    let acc = self.accumulated.take().expect("set at the step's start");
                    self.accumulated = Some(acc + model_output.clone() / 3.0);
                    model_output
                }
                _ => {
                    let acc = self.accumulated.take().expect("set at the step's start");
                    acc + model_output / 6.0
                }
            };
            let from = self.cur_sample.clone().unwrap_or(sample);
            let (prev, x0) = self.transfer(from, t, prev_t, output)?;
            return Ok(StepOutput {
                prev_sample: prev,
                pred_original_sample: x0,
            });
        }
        // A run that starts mid-schedule (image-to-image) has no warm-up: Adams–Bashforth of
        // the order its history allows.
        if self.cursor.start() > 0 && self.cursor.start() >= self.prk_timesteps.len() {
            self.ets.push(model_output);
            if self.ets.len() > 4 {
                self.ets.remove(0);
            }
            let output = adams_bashforth(&self.ets);
            let (prev, x0) = self.transfer(sample, timestep, timestep - ratio, output)?;
            return Ok(StepOutput {
                prev_sample: prev,
                pred_original_sample: x0,
            });
        }
        // Pseudo linear multistep.
        let (mut t, mut prev_t) = (timestep, timestep - ratio);
        if counter != 1 {
            if self.ets.len() > 3 {
                self.ets.drain(..self.ets.len() - 3);
            }
            self.ets.push(model_output.clone());
        } else {
            prev_t = timestep;
            t = timestep + ratio;
        }
        let e = &self.ets;
        let n = e.len();
        let mut from = sample;
        let output = if n == 1 && counter == 0 {
            self.cur_sample = Some(from.clone());
            model_output
        } else if n == 1 && counter == 1 {
            from = self.cur_sample.take().expect("kept by the first step");
            (model_output + e[0].clone()) / 2.0
        } else {
            adams_bashforth(e)
        };
        let (prev, x0) = self.transfer(from, t, prev_t, output)?;
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
        match self.skip_prk {
            true => "PNDMScheduler(skip_prk_steps)".into(),
            false => "PNDMScheduler".into(),
        }
    }
}
