//! diffusers `DPMSolverMultistepScheduler`: DPM-Solver and DPM-Solver++ (Lu et al. 2022),
//! orders 1–3, deterministic or SDE, with the Karras / exponential / beta sigma schedules.

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::config::{AlgorithmType, FinalSigmas, SolverType};
use super::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use super::sigmas::SigmaSpacing;
use super::vp::{
    DpmTerms, Family, VpOptions, VpRun, add_noise_at, algorithm_name, alpha_sigma, data_prediction,
    dpm_update, lambda, noise_prediction,
};
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// Multistep DPM-Solver. Each step is one model evaluation; orders 2 and 3 reuse the previous
/// steps' outputs (the first steps of a run, and the last of a run under 15 steps with
/// `lower_order_final`, use lower orders). The `sde-` variants add noise at every step.
#[derive(Debug, Clone)]
pub struct DpmSolverMultistepScheduler {
    schedule: NoiseSchedule,
    options: VpOptions,
    prediction: PredictionType,
    order: usize,
    algorithm: AlgorithmType,
    solver: SolverType,
    lower_order_final: bool,
    euler_at_final: bool,
    run: VpRun,
    /// The converted outputs of the last `order` steps, oldest first.
    history: Vec<Tensor<2>>,
    cursor: Cursor,
}

impl DpmSolverMultistepScheduler {
    /// Builds it from a config. Defaults as diffusers: linear betas 1e-4…0.02 over 1000 steps,
    /// ε-prediction, order 2, `dpmsolver++`, midpoint, `lower_order_final`, linspace spacing,
    /// final sigma 0.
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let beta_schedule = c.beta_schedule.unwrap_or(BetaSchedule::Linear);
        let schedule = c.noise_schedule(path)?;
        let order = c.solver_order.unwrap_or(2);
        let algorithm = match c.algorithm_type.unwrap_or(AlgorithmType::DpmSolverPlusPlus) {
            // diffusers maps DEIS's name to DPM-Solver++ here.
            AlgorithmType::Deis => AlgorithmType::DpmSolverPlusPlus,
            a => a,
        };
        let solver = match c.solver_type.unwrap_or(SolverType::Midpoint) {
            SolverType::Heun => SolverType::Heun,
            // diffusers maps the other solvers' names to midpoint.
            _ => SolverType::Midpoint,
        };
        let final_sigmas = c.final_sigmas_type.unwrap_or(FinalSigmas::Zero);
        if matches!(
            algorithm,
            AlgorithmType::DpmSolver | AlgorithmType::SdeDpmSolver
        ) && final_sigmas == FinalSigmas::Zero
        {
            return Err(ConfigError::invalid(
                path,
                "final_sigmas_type",
                "expected sigma_min for algorithm_type dpmsolver and sde-dpmsolver, found zero",
            ));
        }
        if algorithm == AlgorithmType::SdeDpmSolver && order == 3 {
            return Err(ConfigError::invalid(
                path,
                "solver_order",
                "sde-dpmsolver supports orders 1 and 2, found 3",
            ));
        }
        Ok(Self {
            schedule,
            options: VpOptions {
                family: Family::DpmMultistep,
                beta_schedule,
                spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Linspace),
                offset: c.steps_offset.unwrap_or(0),
                sigma_spacing: SigmaSpacing::of(&c, path)?,
                final_sigmas,
                lambda_min_clipped: c.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY),
            },
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            order,
            algorithm,
            solver,
            lower_order_final: c.lower_order_final.unwrap_or(true),
            euler_at_final: c.euler_at_final.unwrap_or(false),
            run: VpRun::default(),
            history: Vec::new(),
            cursor: Cursor::default(),
        })
    }

    fn data_prediction(&self) -> bool {
        matches!(
            self.algorithm,
            AlgorithmType::DpmSolverPlusPlus | AlgorithmType::SdeDpmSolverPlusPlus
        )
    }

    fn sde(&self) -> bool {
        matches!(
            self.algorithm,
            AlgorithmType::SdeDpmSolverPlusPlus | AlgorithmType::SdeDpmSolver
        )
    }

    /// The update of `order` from sigmas[i] to sigmas[i + 1] with the last `order` outputs.
    fn update(
        &self,
        index: usize,
        order: usize,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Tensor<2> {
        let s = &self.run.sigmas;
        let (alpha_t, sigma_t) = alpha_sigma(s[index + 1]);
        let (alpha_s0, sigma_s0) = alpha_sigma(s[index]);
        let lambda_t = lambda(s[index + 1]);
        let lambda_s0 = lambda(s[index]);
        let h = lambda_t - lambda_s0;
        let n = self.history.len();
        let m0 = self.history[n - 1].clone();
        // D1 and D2 of the order.
        let (d1, d2) = match order {
            1 => (None, None),
            2 => {
                let h0 = lambda_s0 - lambda(s[index - 1]);
                let r0 = h0 / h;
                let m1 = self.history[n - 2].clone();
                (Some((m0.clone() - m1) * (1.0 / r0) as f32), None)
            }
            _ => {
                let lambda_s1 = lambda(s[index - 1]);
                let (h0, h1) = (lambda_s0 - lambda_s1, lambda_s1 - lambda(s[index - 2]));
                let (r0, r1) = (h0 / h, h1 / h);
                let (m1, m2) = (self.history[n - 2].clone(), self.history[n - 3].clone());
                let d1_0 = (m0.clone() - m1.clone()) * (1.0 / r0) as f32;
                let d1_1 = (m1 - m2) * (1.0 / r1) as f32;
                let diff = d1_0.clone() - d1_1;
                let d1 = d1_0 + diff.clone() * (r0 / (r0 + r1)) as f32;
                let d2 = diff * (1.0 / (r0 + r1)) as f32;
                (Some(d1), Some(d2))
            }
        };
        let terms = DpmTerms {
            d0: m0,
            d1,
            d2,
            midpoint: self.solver == SolverType::Midpoint && order == 2,
        };
        dpm_update(
            self.algorithm,
            sample,
            (alpha_s0, sigma_s0),
            (alpha_t, sigma_t),
            h,
            terms,
            noise,
        )
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.run = VpRun::new(&self.schedule, &self.options, steps)?;
        self.history.clear();
        self.cursor.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.run.timesteps_f
    }

    fn needs_noise(&self, index: usize) -> bool {
        self.sde() && index < self.run.timesteps.len()
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
        let taken = self.cursor.advance(index, len)?;
        if taken == 0 {
            self.history.clear();
        }
        let noise = match (self.sde(), noise) {
            (true, Some(noise)) => {
                check_same("noise", &noise, &sample)?;
                Some(noise)
            }
            (true, None) => {
                return Err(SchedulerError::MissingNoise {
                    index,
                    timestep: self.run.timesteps_f[index],
                });
            }
            (false, _) => None,
        };
        let lower_order_final = index == len - 1
            && (self.euler_at_final
                || (self.lower_order_final && len < 15)
                || self.options.final_sigmas == FinalSigmas::Zero);
        let lower_order_second = index + 2 == len && self.lower_order_final && len < 15;
        let at = alpha_sigma(self.run.sigmas[index]);
        let (converted, x0) = if self.data_prediction() {
            let x0 = data_prediction(self.prediction, model_output, sample.clone(), at);
            (x0.clone(), x0)
        } else {
            let eps = noise_prediction(self.prediction, model_output, sample.clone(), at);
            let x0 = (sample.clone() - eps.clone() * at.1 as f32) / at.0 as f32;
            (eps, x0)
        };
        self.history.push(converted);
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
        let prev = self.update(index, order, sample, noise);
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
        add_noise_at(&self.run, original, noise, index)
    }

    fn describe(&self) -> String {
        let mut parts = vec![
            algorithm_name(self.algorithm).to_string(),
            format!("order {}", self.order),
        ];
        if self.solver == SolverType::Heun {
            parts.push("heun".into());
        }
        parts.extend(self.options.sigma_spacing.label().map(String::from));
        format!("DPMSolverMultistepScheduler({})", parts.join(", "))
    }
}
