//! diffusers `DPMSolverSinglestepScheduler`: singlestep DPM-Solver / DPM-Solver++ (Lu et al.
//! 2022), orders 1–3: each group of `order` evaluations starts from one sample and uses the
//! intermediate evaluations only as higher-order terms.

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

/// Singlestep DPM-Solver sampling, one model evaluation per index.
#[derive(Debug, Clone)]
pub struct DpmSolverSinglestepScheduler {
    schedule: NoiseSchedule,
    options: VpOptions,
    prediction: PredictionType,
    order: usize,
    algorithm: AlgorithmType,
    heun: bool,
    lower_order_final: bool,
    run: VpRun,
    orders: Vec<usize>,
    /// The converted outputs of the current group, oldest first (at most `order`).
    history: Vec<Tensor<2>>,
    /// The sample the current group started from.
    group_start: Option<Tensor<2>>,
    cursor: Cursor,
}

impl DpmSolverSinglestepScheduler {
    /// Builds it from a config. Defaults as diffusers: linear betas, ε-prediction, order 2,
    /// `dpmsolver++`, midpoint, final sigma 0 (which implies `lower_order_final`).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let beta_schedule = c.beta_schedule.unwrap_or(BetaSchedule::Linear);
        let order = c.solver_order.unwrap_or(2);
        let algorithm = c.algorithm_type.unwrap_or(AlgorithmType::DpmSolverPlusPlus);
        if !matches!(
            algorithm,
            AlgorithmType::DpmSolverPlusPlus
                | AlgorithmType::DpmSolver
                | AlgorithmType::SdeDpmSolverPlusPlus
        ) {
            return Err(ConfigError::invalid(
                path,
                "algorithm_type",
                format!("expected dpmsolver++, dpmsolver or sde-dpmsolver++, found {algorithm:?}"),
            ));
        }
        let final_sigmas = c.final_sigmas_type.unwrap_or(FinalSigmas::Zero);
        if algorithm == AlgorithmType::DpmSolver && final_sigmas == FinalSigmas::Zero {
            return Err(ConfigError::invalid(
                path,
                "final_sigmas_type",
                "expected sigma_min for algorithm_type dpmsolver, found zero",
            ));
        }
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options: VpOptions {
                family: Family::DpmSinglestep,
                beta_schedule,
                spacing: TimestepSpacing::Linspace,
                offset: 0,
                sigma_spacing: SigmaSpacing::of(&c, path)?,
                final_sigmas,
                lambda_min_clipped: c.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY),
            },
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            order,
            algorithm,
            heun: c.solver_type == Some(SolverType::Heun),
            // As diffusers: a final sigma 0 needs a first-order last step.
            lower_order_final: c.lower_order_final.unwrap_or(false)
                || final_sigmas == FinalSigmas::Zero,
            run: VpRun::default(),
            orders: Vec::new(),
            history: Vec::new(),
            group_start: None,
            cursor: Cursor::default(),
        })
    }

    /// The order of each step (diffusers' `get_order_list`).
    fn order_list(&self, steps: usize) -> Vec<usize> {
        let o = self.order;
        let mut orders: Vec<usize> = if self.lower_order_final {
            match (o, steps % o) {
                (3, 0) => [1, 2, 3]
                    .repeat(steps / 3 - 1)
                    .into_iter()
                    .chain([1, 2, 1])
                    .collect(),
                (3, 1) => [1, 2, 3].repeat(steps / 3).into_iter().chain([1]).collect(),
                (3, _) => [1, 2, 3]
                    .repeat(steps / 3)
                    .into_iter()
                    .chain([1, 2])
                    .collect(),
                (2, 0) => [1, 2]
                    .repeat(steps / 2 - 1)
                    .into_iter()
                    .chain([1, 1])
                    .collect(),
                (2, _) => [1, 2].repeat(steps / 2).into_iter().chain([1]).collect(),
                _ => vec![1; steps],
            }
        } else {
            match o {
                3 => [1, 2, 3].repeat(steps / 3),
                2 => [1, 2].repeat(steps / 2),
                _ => vec![1; steps],
            }
        };
        if self.options.final_sigmas == FinalSigmas::Zero
            && let Some(last) = orders.last_mut()
        {
            *last = 1;
        }
        orders
    }

    /// The update of `order` ending at sigmas[i + 1], from the group's start sample.
    fn update(&self, i: usize, order: usize, x: Tensor<2>, noise: Option<Tensor<2>>) -> Tensor<2> {
        let s = &self.run.sigmas;
        let (alpha_t, sigma_t) = alpha_sigma(s[i + 1]);
        let start = i + 1 - order;
        let (alpha_b, sigma_b) = alpha_sigma(s[start]);
        let lambda_t = lambda(s[i + 1]);
        let lambda_b = lambda(s[start]);
        let h = lambda_t - lambda_b;
        let n = self.history.len();
        let m = |k: usize| self.history[n - 1 - k].clone();
        // D0 and the first- and second-order terms.
        let (d0, d1, d2) = match order {
            1 => (m(0), None, None),
            2 => {
                let r0 = (lambda(s[i]) - lambda_b) / h;
                (m(1), Some((m(0) - m(1)) * (1.0 / r0) as f32), None)
            }
            _ => {
                let r0 = (lambda(s[i]) - lambda_b) / h;
                let r1 = (lambda(s[i - 1]) - lambda_b) / h;
                let d1_0 = (m(1) - m(2)) * (1.0 / r1) as f32;
                let d1_1 = (m(0) - m(2)) * (1.0 / r0) as f32;
                if self.heun {
                    let d1 = (d1_0.clone() * r0 as f32 - d1_1.clone() * r1 as f32)
                        * (1.0 / (r0 - r1)) as f32;
                    let d2 = (d1_1 - d1_0) * (2.0 / (r0 - r1)) as f32;
                    (m(2), Some(d1), Some(d2))
                } else {
                    (m(2), Some(d1_1), None)
                }
            }
        };
        let terms = DpmTerms {
            d0,
            d1,
            d2,
            midpoint: order == 2 && !self.heun,
        };
        dpm_update(
            self.algorithm,
            x,
            (alpha_b, sigma_b),
            (alpha_t, sigma_t),
            h,
            terms,
            noise,
        )
    }
}

impl Scheduler for DpmSolverSinglestepScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.run = VpRun::new(&self.schedule, &self.options, steps)?;
        // As diffusers (which keeps the change in its config): an uneven step count needs
        // lower-order final steps.
        if !steps.is_multiple_of(self.order) {
            self.lower_order_final = true;
        }
        self.orders = self.order_list(steps);
        self.history.clear();
        self.group_start = None;
        self.cursor.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.run.timesteps_f
    }

    fn needs_noise(&self, index: usize) -> bool {
        self.algorithm == AlgorithmType::SdeDpmSolverPlusPlus && index < self.run.timesteps.len()
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
            self.group_start = None;
        }
        let noise = match (self.needs_noise(index), noise) {
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
        let at = alpha_sigma(self.run.sigmas[index]);
        let (converted, x0) = if self.algorithm == AlgorithmType::DpmSolver {
            let eps = noise_prediction(self.prediction, model_output, sample.clone(), at);
            let x0 = (sample.clone() - eps.clone() * at.1 as f32) / at.0 as f32;
            (eps, x0)
        } else {
            let x0 = data_prediction(self.prediction, model_output, sample.clone(), at);
            (x0.clone(), x0)
        };
        self.history.push(converted);
        if self.history.len() > self.order {
            self.history.remove(0);
        }
        // The order this index completes, lowered while the history is short (a run that
        // starts mid-schedule).
        let order = self
            .orders
            .get(index)
            .copied()
            .unwrap_or(1)
            .min(self.history.len());
        if order == 1 {
            self.group_start = Some(sample);
        }
        let from = self.group_start.clone().ok_or(SchedulerError::Order {
            expected: index.saturating_sub(1),
            found: index,
        })?;
        Ok(StepOutput {
            prev_sample: self.update(index, order, from, noise),
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
        parts.extend(self.options.sigma_spacing.label().map(String::from));
        format!("DPMSolverSinglestepScheduler({})", parts.join(", "))
    }
}
