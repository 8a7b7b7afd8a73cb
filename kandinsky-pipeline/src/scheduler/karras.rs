//! The inference schedule of the sigma-parameterised ("k-diffusion") samplers — Euler, Euler
//! ancestral, Heun, DPM2, DPM2 ancestral, LMS: samples are x = x₀ + σ·ε, the model sees
//! x/√(σ² + 1), the timesteps are the training timesteps of each σ (fractional where σ is
//! interpolated or respaced).

use std::path::Path;

use burn::tensor::Tensor;
use kandinsky_common::ConfigError;

use super::check_index;
use super::config::FinalSigmas;
use super::schedule::{NoiseSchedule, TimestepSpacing, linspace, trailing};
use super::sigmas::{SigmaSpacing, interp, log_sigmas, sigma_to_t, train_sigmas};
use super::{PredictionType, SchedulerConfig, SchedulerError};

/// What a k-sampler's `set_timesteps` needs.
#[derive(Debug, Clone)]
pub(crate) struct KOptions {
    pub spacing: TimestepSpacing,
    pub offset: i64,
    pub sigma_spacing: SigmaSpacing,
    /// Whether respaced timesteps are rounded (DPM2) or kept fractional (Euler, Heun, LMS).
    pub round_respaced: bool,
    /// Karras/exponential bounds instead of the schedule's (Euler's `sigma_min`/`sigma_max`).
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    /// The sigma after the last step (Euler's `final_sigmas_type`; 0 for the others).
    pub final_sigmas: FinalSigmas,
}

impl KOptions {
    /// The common fields from a config (defaults as diffusers: linspace, offset 0).
    pub(crate) fn of(c: &SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        Ok(KOptions {
            spacing: c.timestep_spacing.unwrap_or(TimestepSpacing::Linspace),
            offset: c.steps_offset.unwrap_or(0),
            sigma_spacing: SigmaSpacing::of(c, path)?,
            round_respaced: false,
            sigma_min: None,
            sigma_max: None,
            final_sigmas: FinalSigmas::Zero,
        })
    }
}

/// One run's schedule: n timesteps and n + 1 sigmas (the last one after the last step).
#[derive(Debug, Clone, Default)]
pub(crate) struct KRun {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
    /// ln of the training sigmas (f32), to map sigmas back to timesteps.
    pub log_sigmas: Vec<f32>,
}

impl KRun {
    pub(crate) fn new(
        schedule: &NoiseSchedule,
        opts: &KOptions,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let train = schedule.alphas_cumprod.len();
        if steps == 0 || steps > train {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!("expected 1 to {train} (the training timesteps)"),
            });
        }
        let table = train_sigmas(&schedule.alphas_cumprod);
        let logs = log_sigmas(&table);
        let mut timesteps: Vec<f64> = match opts.spacing {
            TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| t as f32 as f64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (train / steps) as f64;
                (0..steps)
                    .rev()
                    .map(|i| (i as f64 * ratio).round_ties_even() + opts.offset as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(train as f64, train as f64 / steps as f64),
        };
        // Past the table is refused (a trailing −1 is the reference's own; its sigma is the
        // first training one, as numpy's interp clamps).
        if let Some(&bad) = timesteps.iter().find(|&&t| t > (train - 1) as f64) {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!(
                    "timestep {bad} falls outside the {train} training timesteps (check steps_offset)"
                ),
            });
        }
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &table)).collect();
        if opts.sigma_spacing != SigmaSpacing::Timesteps {
            let min = opts
                .sigma_min
                .unwrap_or(*sigmas.last().expect("at least one step"));
            let max = opts.sigma_max.unwrap_or(sigmas[0]);
            sigmas = opts.sigma_spacing.respace(min, max, sigmas.len());
            timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &logs);
                    if opts.round_respaced {
                        t.round_ties_even()
                    } else {
                        t as f32 as f64
                    }
                })
                .collect();
        }
        sigmas.push(match opts.final_sigmas {
            FinalSigmas::Zero => 0.0,
            FinalSigmas::SigmaMin => table[0] as f64,
        });
        Ok(KRun {
            timesteps,
            sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
            log_sigmas: logs,
        })
    }
}

impl KRun {
    /// The model input at `index`: x / √(σ² + 1).
    pub(crate) fn scale(
        &self,
        index: usize,
        sample: Tensor<2>,
    ) -> Result<Tensor<2>, SchedulerError> {
        let len = self.timesteps.len();
        check_index(index, len)?;
        Ok(scale_input(sample, self.sigmas[index]))
    }

    /// x₀ + σ·ε at `index`.
    pub(crate) fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError> {
        add_noise(&self.sigmas, self.timesteps.len(), original, noise, index)
    }
}

/// The initial noise's standard deviation: the largest sigma, or √(σ_max² + 1) with leading
/// spacing (as diffusers).
pub(crate) fn init_noise_sigma(sigmas: &[f32], spacing: TimestepSpacing) -> f64 {
    let max = sigmas.iter().fold(0.0f32, |m, &s| m.max(s)) as f64;
    match spacing {
        TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        _ => max,
    }
}

/// x / √(σ² + 1).
pub(crate) fn scale_input(sample: Tensor<2>, sigma: f32) -> Tensor<2> {
    let sigma = sigma as f64;
    sample / (sigma * sigma + 1.0).sqrt() as f32
}

/// x̂₀ of a model output at σ.
pub(crate) fn denoised(
    prediction: PredictionType,
    model_output: Tensor<2>,
    sample: Tensor<2>,
    sigma: f32,
) -> Tensor<2> {
    let s = sigma as f64;
    match prediction {
        PredictionType::Epsilon => sample - model_output * sigma,
        PredictionType::VPrediction => {
            model_output * (-s / (s * s + 1.0).sqrt()) as f32 + sample / (s * s + 1.0) as f32
        }
        PredictionType::Sample => model_output,
    }
}

/// x₀ + σ·ε at `sigmas[index]`.
pub(crate) fn add_noise(
    sigmas: &[f32],
    evaluations: usize,
    original: Tensor<2>,
    noise: Tensor<2>,
    index: usize,
) -> Result<Tensor<2>, SchedulerError> {
    if index >= evaluations {
        return Err(SchedulerError::Index {
            index,
            len: evaluations,
        });
    }
    super::check_same("noise", &noise, &original)?;
    Ok(original + noise * sigmas[index])
}

/// `sigmas` of a second-order sampler, laid out per evaluation as diffusers does:
/// [s₀, s₁, s₁, s₂, s₂, …] (each inner sigma twice).
pub(crate) fn interleave(sigmas: &[f32], inner: std::ops::Range<usize>) -> Vec<f32> {
    let mut out = vec![sigmas[0]];
    for &s in &sigmas[inner] {
        out.push(s);
        out.push(s);
    }
    out.push(*sigmas.last().expect("non-empty"));
    out
}
