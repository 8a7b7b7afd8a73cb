//! The noise schedule (betas and cumulative alphas, in f64 on the host) and the timestep
//! spacings, as diffusers computes them.

use serde::{Deserialize, Serialize};

/// How the betas are laid out over the training timesteps (`beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)`.
    Linear,
    /// `linspace(√beta_start, √beta_end, T)²`.
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal: β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999) with
    /// ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), in floating point (not integer) division.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

/// How inference timesteps are picked among the training ones (`timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `i · (T div N)` reversed, plus `steps_offset`.
    Leading,
    /// `round(T − i · T/N) − 1` (numpy's float `arange`, so possibly one extra step).
    Trailing,
    /// `round(linspace(0, T − 1, N))` reversed.
    Linspace,
}

/// Betas and cumulative products of alphas over the training timesteps.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    /// β_t.
    pub betas: Vec<f64>,
    /// ᾱ_t = ∏_{s ≤ t} (1 − β_s).
    pub alphas_cumprod: Vec<f64>,
}

/// numpy's `linspace(start, end, n)` (the last value exactly `end`).
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            (0..n)
                .map(|i| {
                    if i + 1 == n {
                        end
                    } else {
                        start + i as f64 * step
                    }
                })
                .collect()
        }
    }
}

impl NoiseSchedule {
    /// The schedule of `timesteps` training steps.
    pub fn new(kind: BetaSchedule, timesteps: usize, beta_start: f64, beta_end: f64) -> Self {
        let betas = match kind {
            BetaSchedule::Linear => linspace(beta_start, beta_end, timesteps),
            BetaSchedule::ScaledLinear => linspace(beta_start.sqrt(), beta_end.sqrt(), timesteps)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar = |s: f64| {
                    ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                let n = timesteps as f64;
                (0..timesteps)
                    .map(|i| {
                        (1.0 - alpha_bar((i + 1) as f64 / n) / alpha_bar(i as f64 / n)).min(0.999)
                    })
                    .collect()
            }
        };
        // The reference stores betas, 1 − β and ᾱ as f32 (its running product accumulates in
        // f64). Near the end
        // of the cosine schedule β ≈ 0.999, where rounding β to f32 changes 1 − β by 6e-5
        // relative; the samplers divide by such quantities, so the same rounding is applied here
        // for the steps to match the reference, not merely the math.
        let betas: Vec<f64> = betas.into_iter().map(|b| b as f32 as f64).collect();
        let alphas_cumprod = betas
            .iter()
            .scan(1.0f64, |acc, &b| {
                *acc *= (1.0 - b as f32) as f64;
                Some(*acc as f32 as f64)
            })
            .collect();
        Self {
            betas,
            alphas_cumprod,
        }
    }

    /// ᾱ_t for t ≥ 0, else `before_start` (1, or ᾱ_0 for DDIM without `set_alpha_to_one`).
    pub fn alpha_cumprod(&self, t: i64, before_start: f64) -> f64 {
        if t >= 0 {
            self.alphas_cumprod[t as usize]
        } else {
            before_start
        }
    }
}

/// `steps` inference timesteps among `train` training ones, in the order they are visited.
pub fn spaced_timesteps(
    spacing: TimestepSpacing,
    train: usize,
    steps: usize,
    offset: i64,
) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Leading => {
            let ratio = (train / steps) as i64;
            (0..steps as i64)
                .rev()
                .map(|i| i * ratio + offset)
                .collect()
        }
        TimestepSpacing::Trailing => trailing(train as f64, train as f64 / steps as f64)
            .into_iter()
            .map(|t| t as i64)
            .collect(),
        TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| t.round_ties_even() as i64)
            .collect(),
    }
}

/// Trailing spacing as diffusers computes it: numpy's `arange(start, 0, −ratio)` (ceil(start /
/// ratio) elements, start + i·δ with δ = (start − ratio) − start, so possibly one more than
/// asked for), rounded half to even, minus 1. Descending.
pub(crate) fn trailing(start: f64, ratio: f64) -> Vec<f64> {
    let delta = (start - ratio) - start;
    let len = (start / ratio).ceil() as usize;
    (0..len)
        .map(|i| (start + i as f64 * delta).round_ties_even() - 1.0)
        .collect()
}
