//! diffusers `DEISMultistepScheduler` (Zhang & Chen 2023): exponential-integrator multistep
//! sampling with polynomial extrapolation in log ρ (ρ = σ_t/α_t), orders 1–3.

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::config::FinalSigmas;
use super::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use super::sigmas::SigmaSpacing;
use super::vp::{Family, VpOptions, VpRun, add_noise_at, alpha_sigma, data_prediction};
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// DEIS sampling: deterministic, one evaluation per step.
#[derive(Debug, Clone)]
pub struct DeisMultistepScheduler {
    schedule: NoiseSchedule,
    options: VpOptions,
    prediction: PredictionType,
    order: usize,
    lower_order_final: bool,
    run: VpRun,
    /// The last noise predictions, oldest first.
    history: Vec<Tensor<2>>,
    cursor: Cursor,
}

impl DeisMultistepScheduler {
    /// Builds it from a config. Defaults as diffusers: linear betas, ε-prediction, order 2,
    /// `lower_order_final`, linspace spacing (the last sigma is the smallest training one).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let beta_schedule = c.beta_schedule.unwrap_or(BetaSchedule::Linear);
        let order = c.solver_order.unwrap_or(2);
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options: VpOptions {
                family: Family::Deis,
                beta_schedule,
                spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Linspace),
                offset: c.steps_offset.unwrap_or(0),
                sigma_spacing: SigmaSpacing::of(&c, path)?,
                final_sigmas: FinalSigmas::SigmaMin,
                lambda_min_clipped: f64::NEG_INFINITY,
            },
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            order,
            lower_order_final: c.lower_order_final.unwrap_or(true),
            run: VpRun::default(),
            history: Vec::new(),
            cursor: Cursor::default(),
        })
    }

    fn update(&self, index: usize, order: usize, sample: Tensor<2>) -> Tensor<2> {
        let s = &self.run.sigmas;
        let n = self.history.len();
        let m0 = self.history[n - 1].clone();
        let (alpha_t, sigma_t) = alpha_sigma(s[index + 1]);
        let (alpha_s0, sigma_s0) = alpha_sigma(s[index]);
        let rho = |i: usize| {
            let (a, s) = alpha_sigma(s[i]);
            s / a
        };
        match order {
            1 => {
                let h = (alpha_t.ln() - sigma_t.ln()) - (alpha_s0.ln() - sigma_s0.ln());
                sample * (alpha_t / alpha_s0) as f32 - m0 * (sigma_t * (h.exp() - 1.0)) as f32
            }
            2 => {
                let (rt, r0, r1) = (rho(index + 1), rho(index), rho(index - 1));
                let ind = |t: f64, b: f64, c: f64| t * (-c.ln() + t.ln() - 1.0) / (b.ln() - c.ln());
                let coef1 = ind(rt, r0, r1) - ind(r0, r0, r1);
                let coef2 = ind(rt, r1, r0) - ind(r0, r1, r0);
                let m1 = self.history[n - 2].clone();
                (sample / alpha_s0 as f32 + m0 * coef1 as f32 + m1 * coef2 as f32) * alpha_t as f32
            }
            _ => {
                let (rt, r0, r1, r2) = (rho(index + 1), rho(index), rho(index - 1), rho(index - 2));
                let ind = |t: f64, b: f64, c: f64, d: f64| {
                    let (lt, lb, lc, ld) = (t.ln(), b.ln(), c.ln(), d.ln());
                    let numerator =
                        t * (lc * (ld - lt + 1.0) - ld * lt + ld + lt * lt - 2.0 * lt + 2.0);
                    numerator / ((lb - lc) * (lb - ld))
                };
                let coef1 = ind(rt, r0, r1, r2) - ind(r0, r0, r1, r2);
                let coef2 = ind(rt, r1, r2, r0) - ind(r0, r1, r2, r0);
                let coef3 = ind(rt, r2, r0, r1) - ind(r0, r2, r0, r1);
                let (m1, m2) = (self.history[n - 2].clone(), self.history[n - 3].clone());
                (sample / alpha_s0 as f32
                    + m0 * coef1 as f32
                    + m1 * coef2 as f32
                    + m2 * coef3 as f32)
                    * alpha_t as f32
            }
        }
    }
}

impl Scheduler for DeisMultistepScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.run = VpRun::new(&self.schedule, &self.options, steps)?;
        self.history.clear();
        self.cursor.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.run.timesteps_f
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
            self.history.clear();
        }
        let short = self.lower_order_final && len < 15;
        let lower_order_final = index + 1 == len && short;
        let lower_order_second = index + 2 == len && short;
        let (alpha, sigma) = alpha_sigma(self.run.sigmas[index]);
        let x0 = data_prediction(
            self.prediction,
            model_output,
            sample.clone(),
            (alpha, sigma),
        );
        // DEIS steps with the noise prediction recomputed from x̂₀.
        let eps = (sample.clone() - x0.clone() * alpha as f32) / sigma as f32;
        self.history.push(eps);
        if self.history.len() > self.order {
            self.history.remove(0);
        }
        let done = taken.min(self.order);
        let order = if self.order == 1 || done < 1 || lower_order_final {
            1
        } else if self.order == 2 || done < 2 || lower_order_second {
            2
        } else {
            3
        };
        Ok(StepOutput {
            prev_sample: self.update(index, order, sample),
            pred_original_sample: x0,
        })
    }

    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError> {
        add_noise_at(&self.run, original, noise, index)
    }

    fn describe(&self) -> String {
        match self.options.sigma_spacing.label() {
            Some(label) => format!("DEISMultistepScheduler(order {}, {label})", self.order),
            None => format!("DEISMultistepScheduler(order {})", self.order),
        }
    }
}
