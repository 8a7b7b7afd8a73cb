//! The inference schedule shared by the variance-preserving exponential-integrator solvers
//! (DPM-Solver multistep and singlestep, UniPC, DEIS): integer timesteps, their sigmas (one
//! more than the timesteps: the level after the last step), and α_t, σ_t, λ_t from a sigma.

use burn::tensor::Tensor;

use super::check_index;
use super::config::AlgorithmType;
use super::config::FinalSigmas;
use super::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing, linspace, trailing};
use super::sigmas::{SigmaSpacing, interp, log_sigmas, sigma_to_t, train_sigmas};
use super::{PredictionType, SchedulerError};

/// Which solver's variant of diffusers' `set_timesteps` (they differ in small ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// DPMSolverMultistepScheduler.
    DpmMultistep,
    /// DPMSolverSinglestepScheduler.
    DpmSinglestep,
    /// UniPCMultistepScheduler.
    UniPc,
    /// DEISMultistepScheduler.
    Deis,
}

/// What a solver's `set_timesteps` needs from its config.
#[derive(Debug, Clone)]
pub(crate) struct VpOptions {
    pub family: Family,
    pub beta_schedule: BetaSchedule,
    pub spacing: TimestepSpacing,
    pub offset: i64,
    pub sigma_spacing: SigmaSpacing,
    pub final_sigmas: FinalSigmas,
    /// λ below which timesteps are cut (−∞: none).
    pub lambda_min_clipped: f64,
}

/// The schedule of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct VpRun {
    pub timesteps: Vec<i64>,
    pub timesteps_f: Vec<f64>,
    /// σ at each timestep and after the last.
    pub sigmas: Vec<f32>,
}

/// α_t = 1/√(σ² + 1), σ_t = σ·α_t.
pub(crate) fn alpha_sigma(sigma: f32) -> (f64, f64) {
    let sigma = sigma as f64;
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = ln α_t − ln σ_t (+∞ at σ = 0).
pub(crate) fn lambda(sigma: f32) -> f64 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

/// numpy's float → int64 cast (truncation).
fn trunc(t: f64) -> i64 {
    t.trunc() as i64
}

impl VpRun {
    /// diffusers' `set_timesteps(steps)` for `opts.family`.
    pub(crate) fn new(
        schedule: &NoiseSchedule,
        opts: &VpOptions,
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
        // λ clipping (DPM-Solver): the training timesteps whose λ (f32) is below the bound.
        let clipped = match opts.family {
            Family::DpmMultistep | Family::DpmSinglestep => schedule
                .alphas_cumprod
                .iter()
                .filter(|&&a| {
                    let a = a as f32;
                    a.sqrt().ln() - (1.0 - a).sqrt().ln() < opts.lambda_min_clipped as f32
                })
                .count(),
            _ => 0,
        };
        let last = train - clipped;
        if last < 1 {
            return Err(SchedulerError::Steps {
                steps,
                reason: "lambda_min_clipped removes every training timestep".into(),
            });
        }
        let spacing = match opts.family {
            Family::DpmSinglestep => TimestepSpacing::Linspace,
            _ => opts.spacing,
        };
        let mut timesteps: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => linspace(0.0, (last - 1) as f64, steps + 1)
                .into_iter()
                .rev()
                .take(steps)
                .map(|t| t.round_ties_even())
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (last / (steps + 1)) as f64;
                (0..=steps)
                    .rev()
                    .take(steps)
                    .map(|i| (i as f64 * ratio).round_ties_even() + opts.offset as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(last as f64, train as f64 / steps as f64),
        };
        let sigma_min = table[0] as f64;
        let sigmas: Vec<f64> = match opts.sigma_spacing {
            SigmaSpacing::Timesteps => {
                let mut s: Vec<f64> = timesteps.iter().map(|&t| interp(t, &table)).collect();
                s.push(match (opts.family, opts.final_sigmas) {
                    (Family::Deis, _) | (_, FinalSigmas::SigmaMin) => sigma_min,
                    (_, FinalSigmas::Zero) => 0.0,
                });
                s
            }
            respaced => {
                let max = *table.last().expect("non-empty") as f64;
                let mut s = respaced.respace(sigma_min, max, steps);
                let round = match (opts.family, respaced) {
                    (Family::DpmMultistep, SigmaSpacing::Karras) => {
                        opts.beta_schedule != BetaSchedule::SquaredcosCapV2
                    }
                    (_, SigmaSpacing::Karras) => true,
                    _ => false,
                };
                timesteps = s
                    .iter()
                    .map(|&sigma| {
                        let t = sigma_to_t(sigma, &logs);
                        if round { t.round_ties_even() } else { t }
                    })
                    .collect();
                let respaced_last = *s.last().expect("non-empty");
                s.push(match (opts.family, opts.final_sigmas) {
                    (Family::Deis, _) => respaced_last,
                    (Family::DpmMultistep | Family::DpmSinglestep, FinalSigmas::SigmaMin) => {
                        sigma_min
                    }
                    (Family::UniPc, FinalSigmas::SigmaMin) => respaced_last,
                    (_, FinalSigmas::Zero) => 0.0,
                });
                s
            }
        };
        let timesteps: Vec<i64> = timesteps.into_iter().map(trunc).collect();
        // Past the table is refused (a trailing −1 is the reference's own).
        if let Some(&bad) = timesteps.iter().find(|&&t| t >= train as i64) {
            return Err(SchedulerError::Steps {
                steps,
                reason: format!(
                    "timestep {bad} falls outside the {train} training timesteps (check steps_offset)"
                ),
            });
        }
        Ok(VpRun {
            timesteps_f: timesteps.iter().map(|&t| t as f64).collect(),
            timesteps,
            sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
        })
    }
}

/// x̂₀ from a model output at (α_t, σ_t).
pub(crate) fn data_prediction(
    prediction: PredictionType,
    model_output: Tensor<2>,
    sample: Tensor<2>,
    (alpha, sigma): (f64, f64),
) -> Tensor<2> {
    match prediction {
        PredictionType::Epsilon => (sample - model_output * sigma as f32) / alpha as f32,
        PredictionType::Sample => model_output,
        PredictionType::VPrediction => sample * alpha as f32 - model_output * sigma as f32,
    }
}

/// ε̂ from a model output at (α_t, σ_t).
pub(crate) fn noise_prediction(
    prediction: PredictionType,
    model_output: Tensor<2>,
    sample: Tensor<2>,
    (alpha, sigma): (f64, f64),
) -> Tensor<2> {
    match prediction {
        PredictionType::Epsilon => model_output,
        PredictionType::Sample => (sample - model_output * alpha as f32) / sigma as f32,
        PredictionType::VPrediction => model_output * alpha as f32 + sample * sigma as f32,
    }
}

/// α_t·x₀ + σ_t·ε at `sigmas[index]`.
pub(crate) fn add_noise_at(
    run: &VpRun,
    original: Tensor<2>,
    noise: Tensor<2>,
    index: usize,
) -> Result<Tensor<2>, SchedulerError> {
    let len = run.timesteps.len();
    check_index(index, len)?;
    super::check_same("noise", &noise, &original)?;
    let (alpha, sigma) = alpha_sigma(run.sigmas[index]);
    Ok(original * alpha as f32 + noise * sigma as f32)
}

/// The terms of a DPM-Solver update: D0 (the converted model output the step is taken with),
/// the first-order difference D1 and the second-order one D2 where the order has them.
pub(crate) struct DpmTerms {
    pub d0: Tensor<2>,
    pub d1: Option<Tensor<2>>,
    pub d2: Option<Tensor<2>>,
    /// D1 with the midpoint rule's ½ coefficient (second order, `midpoint`), else the exact
    /// one.
    pub midpoint: bool,
}

/// A DPM-Solver update of `x` from σ_b (`from` = (α_b, σ_b)) to σ_t (`to` = (α_t, σ_t)) over
/// h = λ_t − λ_b, for each algorithm as diffusers writes it (shared by the multistep and
/// singlestep solvers; the SDE variants add `noise`).
pub(crate) fn dpm_update(
    algorithm: AlgorithmType,
    x: Tensor<2>,
    (alpha_b, sigma_b): (f64, f64),
    (alpha_t, sigma_t): (f64, f64),
    h: f64,
    terms: DpmTerms,
    noise: Option<Tensor<2>>,
) -> Tensor<2> {
    let DpmTerms {
        d0,
        d1,
        d2,
        midpoint,
    } = terms;
    let (em, ep, e2) = ((-h).exp(), h.exp(), (-2.0 * h).exp());
    // The coefficients of x, D0, D1 (midpoint, exact) and D2 (added to x with these signs).
    let (cx, c0, c1_mid, c1, c2) = match algorithm {
        AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => (
            sigma_t / sigma_b,
            -(alpha_t * (em - 1.0)),
            -0.5 * (alpha_t * (em - 1.0)),
            alpha_t * ((em - 1.0) / h + 1.0),
            -(alpha_t * ((em - 1.0 + h) / (h * h) - 0.5)),
        ),
        AlgorithmType::DpmSolver => (
            alpha_t / alpha_b,
            -(sigma_t * (ep - 1.0)),
            -0.5 * (sigma_t * (ep - 1.0)),
            -(sigma_t * ((ep - 1.0) / h - 1.0)),
            -(sigma_t * ((ep - 1.0 - h) / (h * h) - 0.5)),
        ),
        AlgorithmType::SdeDpmSolverPlusPlus => (
            sigma_t / sigma_b * em,
            alpha_t * (1.0 - e2),
            0.5 * (alpha_t * (1.0 - e2)),
            alpha_t * ((1.0 - e2) / (-2.0 * h) + 1.0),
            alpha_t * ((1.0 - e2 - 2.0 * h) / (2.0 * h).powi(2) - 0.5),
        ),
        AlgorithmType::SdeDpmSolver => (
            alpha_t / alpha_b,
            -2.0 * (sigma_t * (ep - 1.0)),
            -(sigma_t * (ep - 1.0)),
            -2.0 * (sigma_t * ((ep - 1.0) / h - 1.0)),
            // diffusers has no third order for sde-dpmsolver (refused at construction).
            0.0,
        ),
    };
    let mut out = x * cx as f32 + d0 * c0 as f32;
    if let Some(d1) = d1 {
        out = out + d1 * (if midpoint { c1_mid } else { c1 }) as f32;
    }
    if let Some(d2) = d2 {
        out = out + d2 * c2 as f32;
    }
    if let Some(noise) = noise {
        let scale = match algorithm {
            AlgorithmType::SdeDpmSolver => sigma_t * ((2.0 * h).exp() - 1.0).sqrt(),
            _ => sigma_t * (1.0 - e2).sqrt(),
        };
        out = out + noise * scale as f32;
    }
    out
}

/// The algorithm's name in diffusers' config.
pub(crate) fn algorithm_name(algorithm: AlgorithmType) -> &'static str {
    match algorithm {
        AlgorithmType::DpmSolverPlusPlus => "dpmsolver++",
        AlgorithmType::DpmSolver => "dpmsolver",
        AlgorithmType::SdeDpmSolverPlusPlus => "sde-dpmsolver++",
        AlgorithmType::SdeDpmSolver => "sde-dpmsolver",
        AlgorithmType::Deis => "deis",
    }
}
