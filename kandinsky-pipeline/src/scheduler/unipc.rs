//! diffusers `UniPCMultistepScheduler` (Zhao et al. 2023): a unified predictor–corrector of
//! order up to 3, with B(h) = h (`bh1`) or eʰ − 1 (`bh2`).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::config::{FinalSigmas, SolverType};
use super::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use super::sigmas::SigmaSpacing;
use super::vp::{
    Family, VpOptions, VpRun, add_noise_at, alpha_sigma, data_prediction, lambda, noise_prediction,
};
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// Solves the small dense system `a · x = b` (Gaussian elimination with partial pivoting).
pub(crate) fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("non-empty");
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col].clone();
            for (x, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// UniPC sampling: deterministic, one evaluation per step; each step first corrects the
/// sample it is given with the new model output (UniC), then predicts the next (UniP).
#[derive(Debug, Clone)]
pub struct UniPcMultistepScheduler {
    schedule: NoiseSchedule,
    options: VpOptions,
    prediction: PredictionType,
    order: usize,
    predict_x0: bool,
    bh2: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    run: VpRun,
    history: Vec<Tensor<2>>,
    last_sample: Option<Tensor<2>>,
    this_order: usize,
    cursor: Cursor,
}

impl UniPcMultistepScheduler {
    /// Builds it from a config. Defaults as diffusers: linear betas, ε-prediction, order 2,
    /// x₀-prediction, `bh2`, `lower_order_final`, linspace spacing, final sigma 0.
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let beta_schedule = c.beta_schedule.unwrap_or(BetaSchedule::Linear);
        let schedule = c.noise_schedule(path)?;
        let order = c.solver_order.unwrap_or(2);
        let bh2 = match c.solver_type.unwrap_or(SolverType::Bh2) {
            SolverType::Bh1 => false,
            SolverType::Bh2 => true,
            // diffusers maps the other solvers' names to bh2.
            _ => true,
        };
        let predict_x0 = c.predict_x0.unwrap_or(true);
        let final_sigmas = c.final_sigmas_type.unwrap_or(FinalSigmas::Zero);
        if !predict_x0 && final_sigmas == FinalSigmas::Zero {
            return Err(ConfigError::invalid(
                path,
                "final_sigmas_type",
                "expected sigma_min with predict_x0 false (noise prediction is undefined at sigma 0), found zero",
            ));
        }
        Ok(Self {
            schedule,
            options: VpOptions {
                family: Family::UniPc,
                beta_schedule,
                spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Linspace),
                offset: c.steps_offset.unwrap_or(0),
                sigma_spacing: SigmaSpacing::of(&c, path)?,
                final_sigmas,
                lambda_min_clipped: f64::NEG_INFINITY,
            },
            prediction: c.prediction_type.unwrap_or(PredictionType::Epsilon),
            order,
            predict_x0,
            bh2,
            lower_order_final: c.lower_order_final.unwrap_or(true),
            disable_corrector: c.disable_corrector.clone().unwrap_or_default(),
            run: VpRun::default(),
            history: Vec::new(),
            last_sample: None,
            this_order: 1,
            cursor: Cursor::default(),
        })
    }

    /// hh, eʰʰ − 1, B(h), R and b of the UniPC update of `order` with ratios `rks`.
    fn coefficients(
        &self,
        h: f64,
        order: usize,
        rks: &[f64],
    ) -> (f64, f64, Vec<Vec<f64>>, Vec<f64>) {
        let hh = if self.predict_x0 { -h } else { h };
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let b_h = if self.bh2 { hh.exp_m1() } else { hh };
        let mut factorial = 1.0;
        let mut r = Vec::new();
        let mut b = Vec::new();
        for i in 1..=order {
            r.push(
                rks.iter()
                    .map(|rk| rk.powi(i as i32 - 1))
                    .collect::<Vec<_>>(),
            );
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        (h_phi_1, b_h, r, b)
    }

    /// x_t_ − c·B(h)·Σ ρ_k D_k, the shared form of UniP and UniC.
    fn combine(
        &self,
        x: Tensor<2>,
        m0: Tensor<2>,
        (s, t): (f32, f32),
        h_phi_1: f64,
        b_h: f64,
        terms: Vec<(f64, Tensor<2>)>,
    ) -> Tensor<2> {
        let (alpha_t, sigma_t) = alpha_sigma(t);
        let (alpha_s, sigma_s) = alpha_sigma(s);
        let (base, c) = if self.predict_x0 {
            (
                x * (sigma_t / sigma_s) as f32 - m0 * (alpha_t * h_phi_1) as f32,
                alpha_t,
            )
        } else {
            (
                x * (alpha_t / alpha_s) as f32 - m0 * (sigma_t * h_phi_1) as f32,
                sigma_t,
            )
        };
        let res = terms
            .into_iter()
            .map(|(rho, d)| d * rho as f32)
            .reduce(|a, b| a + b);
        match res {
            Some(res) => base - res * (c * b_h) as f32,
            None => base,
        }
    }

    /// UniP: the sample at sigmas[i + 1] from `sample` at sigmas[i].
    fn predictor(&self, index: usize, sample: Tensor<2>, order: usize) -> Tensor<2> {
        let s = &self.run.sigmas;
        let n = self.history.len();
        let m0 = self.history[n - 1].clone();
        let lambda_s0 = lambda(s[index]);
        let h = lambda(s[index + 1]) - lambda_s0;
        let mut rks = Vec::new();
        let mut d1s = Vec::new();
        for k in 1..order {
            let rk = (lambda(s[index - k]) - lambda_s0) / h;
            rks.push(rk);
            d1s.push((self.history[n - 1 - k].clone() - m0.clone()) / rk as f32);
        }
        rks.push(1.0);
        let (h_phi_1, b_h, r, b) = self.coefficients(h, order, &rks);
        let rhos: Vec<f64> = match d1s.len() {
            0 => Vec::new(),
            _ if order == 2 => vec![0.5],
            k => solve(
                r[..k].iter().map(|row| row[..k].to_vec()).collect(),
                b[..k].to_vec(),
            ),
        };
        let terms = rhos.into_iter().zip(d1s).collect();
        self.combine(sample, m0, (s[index], s[index + 1]), h_phi_1, b_h, terms)
    }

    /// UniC: corrects `this_sample` at sigmas[i] (predicted from `last` at sigmas[i − 1])
    /// with the model output there.
    fn corrector(
        &self,
        index: usize,
        this_output: Tensor<2>,
        last: Tensor<2>,
        order: usize,
    ) -> Tensor<2> {
        let s = &self.run.sigmas;
        let n = self.history.len();
        let m0 = self.history[n - 1].clone();
        let lambda_s0 = lambda(s[index - 1]);
        let h = lambda(s[index]) - lambda_s0;
        let mut rks = Vec::new();
        let mut d1s = Vec::new();
        for k in 1..order {
            let rk = (lambda(s[index - (k + 1)]) - lambda_s0) / h;
            rks.push(rk);
            d1s.push((self.history[n - 1 - k].clone() - m0.clone()) / rk as f32);
        }
        rks.push(1.0);
        let (h_phi_1, b_h, r, b) = self.coefficients(h, order, &rks);
        let rhos = if order == 1 { vec![0.5] } else { solve(r, b) };
        let d1_t = this_output - m0.clone();
        let mut terms: Vec<(f64, Tensor<2>)> =
            rhos[..rhos.len() - 1].iter().copied().zip(d1s).collect();
        terms.push((rhos[rhos.len() - 1], d1_t));
        self.combine(last, m0, (s[index - 1], s[index]), h_phi_1, b_h, terms)
    }
}

impl Scheduler for UniPcMultistepScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.run = VpRun::new(&self.schedule, &self.options, steps)?;
        self.history.clear();
        self.last_sample = None;
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
            self.last_sample = None;
        }
        let at = alpha_sigma(self.run.sigmas[index]);
        let (converted, x0) = if self.predict_x0 {
            let x0 = data_prediction(self.prediction, model_output, sample.clone(), at);
            (x0.clone(), x0)
        } else {
            let eps = noise_prediction(self.prediction, model_output, sample.clone(), at);
            let x0 = (sample.clone() - eps.clone() * at.1 as f32) / at.0 as f32;
            (eps, x0)
        };
        let use_corrector = index > 0 && !self.disable_corrector.contains(&(index - 1));
        let sample = match self.last_sample.take() {
            Some(last) if use_corrector => {
                self.corrector(index, converted.clone(), last, self.this_order)
            }
            _ => sample,
        };
        self.history.push(converted);
        if self.history.len() > self.order {
            self.history.remove(0);
        }
        let this_order = if self.lower_order_final {
            self.order.min(len - index)
        } else {
            self.order
        };
        self.this_order = this_order.min(taken.min(self.order) + 1);
        self.last_sample = Some(sample.clone());
        let prev = self.predictor(index, sample, self.this_order);
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
            if self.bh2 { "bh2" } else { "bh1" }.to_string(),
            format!("order {}", self.order),
        ];
        parts.extend(self.options.sigma_spacing.label().map(String::from));
        format!("UniPCMultistepScheduler({})", parts.join(", "))
    }
}
