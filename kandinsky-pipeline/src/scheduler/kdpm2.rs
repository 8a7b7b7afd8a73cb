//! diffusers `KDPM2DiscreteScheduler` (DPM2, Karras et al. 2022): a midpoint method in log σ,
//! two model evaluations per step, the second at σ_mid = √(σ·σ_next).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::check_index;
use super::karras::{
    KOptions, KRun, add_noise, denoised, init_noise_sigma, interleave, scale_input,
};
use super::schedule::NoiseSchedule;
use super::sigmas::sigma_to_t;
use super::{
    Cursor, PredictionType, Scheduler, SchedulerConfig, SchedulerError, StepOutput, check_same,
};

/// The geometric mean of two sigmas as the reference computes it, exp(lerp(ln a, ln b, ½)),
/// 0 when either is 0.
pub(crate) fn log_midpoint(a: f32, b: f32) -> f32 {
    if a <= 0.0 || b <= 0.0 {
        return 0.0;
    }
    let (la, lb) = (a.ln(), b.ln());
    // torch.lerp for a weight ≥ ½: end − (end − start)·(1 − weight).
    (lb - (lb - la) * 0.5).exp()
}

/// Rejects x₀-prediction, which the reference's DPM2 does not implement.
pub(crate) fn check_prediction(
    prediction: PredictionType,
    path: &Path,
) -> Result<PredictionType, ConfigError> {
    if prediction == PredictionType::Sample {
        return Err(ConfigError::invalid(
            path,
            "prediction_type",
            "expected epsilon or v_prediction for DPM2, found sample",
        ));
    }
    Ok(prediction)
}

/// DPM2 sampling. `timesteps()` lists every evaluation: t₀, then (t_mid₁, t₁), (t_mid₂, t₂), …
#[derive(Debug, Clone)]
pub struct KDpm2DiscreteScheduler {
    schedule: NoiseSchedule,
    options: KOptions,
    prediction: PredictionType,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    sigmas_mid: Vec<f32>,
    /// The first evaluation's sample, awaiting the midpoint evaluation.
    pending: Option<Tensor<2>>,
    cursor: Cursor,
}

impl KDpm2DiscreteScheduler {
    /// Builds it from a config (defaults as diffusers: linear betas, ε-prediction, linspace).
    pub fn new(c: SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let mut options = KOptions::of(&c, path)?;
        options.round_respaced = options.sigma_spacing == super::sigmas::SigmaSpacing::Karras;
        Ok(Self {
            schedule: c.noise_schedule(path)?,
            options,
            prediction: check_prediction(
                c.prediction_type.unwrap_or(PredictionType::Epsilon),
                path,
            )?,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            sigmas_mid: Vec::new(),
            pending: None,
            cursor: Cursor::default(),
        })
    }
}

impl Scheduler for KDpm2DiscreteScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        let run = KRun::new(&self.schedule, &self.options, steps)?;
        let n = run.timesteps.len();
        // mid_i between σ_i and σ_{i−1} (mid_0 unused).
        let mid: Vec<f32> = (0..=n)
            .map(|i| log_midpoint(run.sigmas[i], run.sigmas[(i + n) % (n + 1)]))
            .collect();
        self.sigmas = interleave(&run.sigmas, 1..n + 1);
        self.sigmas_mid = interleave(&mid, 1..n + 1);
        let t_mid: Vec<f64> = mid
            .iter()
            .map(|&s| sigma_to_t(s as f64, &run.log_sigmas))
            .collect();
        let mut timesteps = vec![run.timesteps[0]];
        for (&mid, &t) in t_mid.iter().zip(&run.timesteps).take(n).skip(1) {
            timesteps.push(mid);
            timesteps.push(t);
        }
        self.timesteps = timesteps;
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
        let sigma = match index % 2 {
            0 => self.sigmas[index],
            _ => self.sigmas_mid[index],
        };
        Ok(scale_input(sample, sigma))
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
        let taken = self.cursor.advance(index, len)?;
        if taken == 0 {
            self.pending = None;
        }
        if index.is_multiple_of(2) {
            let (sigma, mid) = (self.sigmas[index], self.sigmas_mid[index + 1]);
            let x0 = denoised(self.prediction, model_output, sample.clone(), sigma);
            let derivative = (sample.clone() - x0.clone()) / sigma;
            let prev = sample.clone() + derivative * (mid - sigma);
            self.pending = Some(sample);
            Ok(StepOutput {
                prev_sample: prev,
                pred_original_sample: x0,
            })
        } else {
            let (sigma, mid, next) = (
                self.sigmas[index - 1],
                self.sigmas_mid[index],
                self.sigmas[index],
            );
            let start = self.pending.take().ok_or(SchedulerError::Order {
                expected: index - 1,
                found: index,
            })?;
            let x0 = denoised(self.prediction, model_output, sample.clone(), mid);
            let derivative = (sample - x0.clone()) / mid;
            let prev = start + derivative * (next - sigma);
            Ok(StepOutput {
                prev_sample: prev,
                pred_original_sample: x0,
            })
        }
    }

    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError> {
        add_noise(&self.sigmas, self.timesteps.len(), original, noise, index)
    }

    fn describe(&self) -> String {
        match self.options.sigma_spacing.label() {
            Some(label) => format!("KDPM2DiscreteScheduler({label})"),
            None => "KDPM2DiscreteScheduler".into(),
        }
    }
}
