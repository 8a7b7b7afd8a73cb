//! Sigma schedules, as diffusers computes them: σ_t = √((1 − ᾱ_t)/ᾱ_t) over the training
//! timesteps, interpolated at the inference timesteps or respaced (Karras, exponential, beta),
//! and mapped back to (fractional) timesteps. The reference keeps σ as f32 and works in f64
//! between; so do these functions.

use std::path::Path;

use kandinsky_common::ConfigError;

use super::SchedulerConfig;
use super::schedule::linspace;

/// The training sigmas σ_t = √((1 − ᾱ_t)/ᾱ_t), in f32 as the reference's tensors hold them.
pub(crate) fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| {
            let a = a as f32;
            ((1.0 - a) / a).sqrt()
        })
        .collect()
}

/// numpy's `interp(x, arange(len), table)`: linear between neighbouring entries, clamped at
/// the ends.
pub(crate) fn interp(x: f64, table: &[f32]) -> f64 {
    let last = table.len() - 1;
    if x <= 0.0 {
        return table[0] as f64;
    }
    if x >= last as f64 {
        return table[last] as f64;
    }
    let i = x.floor() as usize;
    let (lo, hi) = (table[i] as f64, table[i + 1] as f64);
    let frac = x - i as f64;
    lo + (hi - lo) * frac
}

/// The fractional timestep of `sigma`: linear interpolation in log σ between the two training
/// sigmas around it (diffusers' `_sigma_to_t`; `log_sigmas` increasing, f32 as numpy's `log`
/// of the f32 table gives them).
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let below = log_sigmas
        .iter()
        .take_while(|&&l| log_sigma - l as f64 >= 0.0)
        .count();
    let low_idx = below.saturating_sub(1).min(log_sigmas.len() - 2);
    let high_idx = low_idx + 1;
    let (low, high) = (log_sigmas[low_idx] as f64, log_sigmas[high_idx] as f64);
    let w = ((low - log_sigma) / (low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// ln of the training sigmas, in f32 (numpy's `log` of an f32 array).
pub(crate) fn log_sigmas(sigmas: &[f32]) -> Vec<f32> {
    sigmas.iter().map(|s| s.ln()).collect()
}

/// How the inference sigmas are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigmaSpacing {
    /// The training sigmas at the inference timesteps.
    Timesteps,
    /// Karras et al. (2022): (σ_max^(1/ρ) + i/(n−1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7.
    Karras,
    /// Evenly spaced in log σ.
    Exponential,
    /// σ_min + (σ_max − σ_min) · Beta(0.6, 0.6) quantiles of 1 − i/(n−1).
    Beta,
}

impl SigmaSpacing {
    /// From `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas` (at most one).
    pub(crate) fn of(c: &SchedulerConfig, path: &Path) -> Result<Self, ConfigError> {
        let set = [
            (c.use_karras_sigmas, SigmaSpacing::Karras),
            (c.use_exponential_sigmas, SigmaSpacing::Exponential),
            (c.use_beta_sigmas, SigmaSpacing::Beta),
        ];
        let mut chosen = set
            .iter()
            .filter(|(flag, _)| *flag == Some(true))
            .map(|&(_, s)| s);
        match (chosen.next(), chosen.next()) {
            (None, _) => Ok(SigmaSpacing::Timesteps),
            (Some(s), None) => Ok(s),
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                path,
                "use_karras_sigmas",
                "expected at most one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas, found several",
            )),
        }
    }

    /// `n` sigmas from `max` down to `min`.
    pub(crate) fn respace(self, min: f64, max: f64, n: usize) -> Vec<f64> {
        let ramp = |i: usize| {
            if n == 1 {
                0.0
            } else if i + 1 == n {
                1.0
            } else {
                i as f64 / (n - 1) as f64
            }
        };
        match self {
            SigmaSpacing::Timesteps => unreachable!("respace is for the respaced schedules"),
            SigmaSpacing::Karras => {
                let rho = 7.0;
                let (min_inv, max_inv) = (min.powf(1.0 / rho), max.powf(1.0 / rho));
                (0..n)
                    .map(|i| (max_inv + ramp(i) * (min_inv - max_inv)).powf(rho))
                    .collect()
            }
            SigmaSpacing::Exponential => {
                let (lo, hi) = (min.ln(), max.ln());
                linspace(hi, lo, n).into_iter().map(f64::exp).collect()
            }
            SigmaSpacing::Beta => (0..n)
                .map(|i| min + beta_quantile(1.0 - ramp(i), 0.6, 0.6) * (max - min))
                .collect(),
        }
    }

    /// A short name for descriptions.
    pub(crate) fn label(self) -> Option<&'static str> {
        match self {
            SigmaSpacing::Timesteps => None,
            SigmaSpacing::Karras => Some("karras"),
            SigmaSpacing::Exponential => Some("exponential"),
            SigmaSpacing::Beta => Some("beta"),
        }
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7; about 1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |acc, (i, g)| acc + g / (x + 1.0 + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function I_x(a, b).
fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The quantile of Beta(a, b) at p (scipy's `beta.ppf`), by bisection to f64 resolution.
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if beta_cdf(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_quantiles_are_scipy_s() {
        // scipy 1.17.1: scipy.stats.beta.ppf(p, 0.6, 0.6) for p = 0.1, 0.25, 0.5, 0.9.
        for (p, expected) in [
            (0.1, 0.039_584_405_588_780_85),
            (0.25, 0.175_680_378_652_694_98),
            (0.5, 0.500_000_000_000_000_1),
            (0.9, 0.960_415_594_411_219_2),
        ] {
            let q = beta_quantile(p, 0.6, 0.6);
            assert!((q - expected).abs() < 1e-12, "p {p}: {q} vs {expected}");
        }
    }

    #[test]
    fn sigma_to_t_inverts_the_table() {
        let sigmas: Vec<f32> = (0..10).map(|i| 0.1 * (i + 1) as f32).collect();
        let logs = log_sigmas(&sigmas);
        assert!((sigma_to_t(sigmas[4] as f64, &logs) - 4.0).abs() < 1e-6);
        assert_eq!(sigma_to_t(100.0, &logs), 9.0);
        assert_eq!(sigma_to_t(0.0, &logs), 0.0);
    }
}
