//! `scheduler_config.json`, with each class's diffusers defaults for absent fields.

use std::path::Path;

use kandinsky_common::ConfigError;
use kandinsky_common::config::parse_json;
use serde::Deserialize;

use super::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};

/// What the model predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The noise ε.
    Epsilon,
    /// The clean sample x₀.
    Sample,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀.
    VPrediction,
}

/// How the step's noise is scaled (`variance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// The posterior variance β̃_t.
    FixedSmall,
    /// β̃_t, through its log (the prior).
    FixedSmallLog,
    /// β_t.
    FixedLarge,
    /// The model's variance channels, as a variance.
    Learned,
    /// The model's variance channels v ∈ [−1, 1] interpolating log β̃_t and log β_t.
    LearnedRange,
}

/// The most training timesteps a config may declare (Kandinsky's have 1000; the schedule is
/// held in memory).
pub const MAX_TRAIN_TIMESTEPS: usize = 10_000;

/// The DPM-Solver variant (`algorithm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AlgorithmType {
    /// DPM-Solver++ (data prediction), the default.
    #[serde(rename = "dpmsolver++")]
    DpmSolverPlusPlus,
    /// DPM-Solver (noise prediction).
    #[serde(rename = "dpmsolver")]
    DpmSolver,
    /// The stochastic DPM-Solver++ (each step adds noise).
    #[serde(rename = "sde-dpmsolver++")]
    SdeDpmSolverPlusPlus,
    /// The stochastic DPM-Solver.
    #[serde(rename = "sde-dpmsolver")]
    SdeDpmSolver,
    /// DEIS's own algorithm (`DEISMultistepScheduler`).
    #[serde(rename = "deis")]
    Deis,
}

/// The second-order update rule (`solver_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverType {
    /// DPM-Solver's midpoint rule.
    Midpoint,
    /// DPM-Solver's Heun rule.
    Heun,
    /// UniPC's B(h) = h.
    Bh1,
    /// UniPC's B(h) = eʰ − 1.
    Bh2,
    /// DEIS's log-rho rule.
    Logrho,
}

/// The last sigma of a DPM-Solver / UniPC / Euler schedule (`final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmas {
    /// 0: the last step lands on the clean sample.
    Zero,
    /// The smallest training sigma.
    SigmaMin,
}

/// How Euler interpolates its sigmas (`interpolation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationType {
    /// Linear in the timestep, from the training sigmas.
    Linear,
    /// Evenly spaced in log σ between the extremes.
    LogLinear,
}

/// The fields of a diffusers scheduler config. `None` means absent (the class default
/// applies). Like diffusers' `from_config`, a config of one class can build another: each
/// scheduler reads the fields it knows.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct SchedulerConfig {
    /// The diffusers class, e.g. `DDPMScheduler` or `DPMSolverMultistepScheduler`.
    #[serde(rename = "_class_name")]
    pub class_name: String,
    /// Training timesteps (1000).
    #[serde(default)]
    pub num_train_timesteps: Option<usize>,
    /// Beta layout.
    #[serde(default)]
    pub beta_schedule: Option<BetaSchedule>,
    /// First beta (linear schedules).
    #[serde(default)]
    pub beta_start: Option<f64>,
    /// Last beta (linear schedules).
    #[serde(default)]
    pub beta_end: Option<f64>,
    /// What the model predicts.
    #[serde(default)]
    pub prediction_type: Option<PredictionType>,
    /// Noise scaling of stochastic steps.
    #[serde(default)]
    pub variance_type: Option<VarianceType>,
    /// Whether x̂₀ is clamped.
    #[serde(default)]
    pub clip_sample: Option<bool>,
    /// The clamp range of x̂₀.
    #[serde(default)]
    pub clip_sample_range: Option<f64>,
    /// Dynamic thresholding; only `false` is supported.
    #[serde(default)]
    pub thresholding: Option<bool>,
    /// DDIM: ᾱ before the first timestep is 1 (else ᾱ_0).
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    /// Added to leading-spaced timesteps.
    #[serde(default)]
    pub steps_offset: Option<i64>,
    /// Timestep spacing.
    #[serde(default)]
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Explicit betas; only absent (`null`) is supported.
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// Zero terminal SNR rescaling; only `false` is supported.
    #[serde(default)]
    pub rescale_betas_zero_snr: Option<bool>,
    /// Multistep solvers: the order (1–3).
    #[serde(default)]
    pub solver_order: Option<usize>,
    /// DPM-Solver: the variant.
    #[serde(default)]
    pub algorithm_type: Option<AlgorithmType>,
    /// The second-order rule.
    #[serde(default)]
    pub solver_type: Option<SolverType>,
    /// Lower-order steps at the end of short runs (< 15 steps).
    #[serde(default)]
    pub lower_order_final: Option<bool>,
    /// DPM-Solver: a first-order last step whatever the step count.
    #[serde(default)]
    pub euler_at_final: Option<bool>,
    /// Karras et al.'s sigma spacing (ρ = 7).
    #[serde(default)]
    pub use_karras_sigmas: Option<bool>,
    /// Sigmas evenly spaced in log σ.
    #[serde(default)]
    pub use_exponential_sigmas: Option<bool>,
    /// Sigmas spaced by the Beta(0.6, 0.6) quantiles.
    #[serde(default)]
    pub use_beta_sigmas: Option<bool>,
    /// DPM-Solver: λ spaced uniformly; only `false` is supported.
    #[serde(default)]
    pub use_lu_lambdas: Option<bool>,
    /// Flow-matching sigmas; only `false` is supported (not a Kandinsky schedule).
    #[serde(default)]
    pub use_flow_sigmas: Option<bool>,
    /// The last sigma.
    #[serde(default)]
    pub final_sigmas_type: Option<FinalSigmas>,
    /// DPM-Solver: λ below which timesteps are cut (absent, `null` or `-Infinity`: none).
    #[serde(default)]
    pub lambda_min_clipped: Option<f64>,
    /// UniPC: predict x₀ (UniPC's `predict_x0`).
    #[serde(default)]
    pub predict_x0: Option<bool>,
    /// UniPC: step indices without the corrector.
    #[serde(default)]
    pub disable_corrector: Option<Vec<usize>>,
    /// Euler: the sigma interpolation.
    #[serde(default)]
    pub interpolation_type: Option<InterpolationType>,
    /// Euler, Karras sigmas: the smallest sigma (else the schedule's).
    #[serde(default)]
    pub sigma_min: Option<f64>,
    /// Euler, Karras sigmas: the largest sigma (else the schedule's).
    #[serde(default)]
    pub sigma_max: Option<f64>,
    /// PNDM: skip the Runge-Kutta warm-up steps.
    #[serde(default)]
    pub skip_prk_steps: Option<bool>,
}

impl SchedulerConfig {
    /// Reads a `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = kandinsky_common::config::read_config_text(path)?;
        // Python's json writes −∞ (DPM-Solver's default `lambda_min_clipped`) as a bare
        // `-Infinity`, which is not JSON; it means "no clipping", as an absent field does.
        let text = text.replace("-Infinity", "null");
        let config: Self = parse_json(&text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// The training schedule, diffusers' defaults for absent fields (linear β 1e-4…0.02 over
    /// 1000 timesteps), once the config is [validated](Self::validate): what every scheduler
    /// builds first.
    pub(crate) fn noise_schedule(&self, path: &Path) -> Result<NoiseSchedule, ConfigError> {
        self.validate(path)?;
        Ok(NoiseSchedule::new(
            self.beta_schedule.unwrap_or(BetaSchedule::Linear),
            self.num_train_timesteps.unwrap_or(1000),
            self.beta_start.unwrap_or(0.0001),
            self.beta_end.unwrap_or(0.02),
        ))
    }

    /// Checks the values before anything is built from them: unimplemented options, and
    /// numbers a real schedule could have (`path` names the config in errors).
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |field: &str, message: String| Err(ConfigError::invalid(path, field, message));
        for (field, set) in [
            ("rescale_betas_zero_snr", self.rescale_betas_zero_snr),
            ("use_lu_lambdas", self.use_lu_lambdas),
            ("use_flow_sigmas", self.use_flow_sigmas),
        ] {
            if set == Some(true) {
                return invalid(
                    field,
                    "expected false (not implemented: no Kandinsky checkpoint uses it), found true"
                        .into(),
                );
            }
        }
        if self.trained_betas.is_some() {
            return invalid(
                "trained_betas",
                "expected null (explicit betas are not implemented), found a list".into(),
            );
        }
        if self.thresholding == Some(true) {
            return invalid(
                "thresholding",
                "expected false (dynamic thresholding is not implemented), found true".into(),
            );
        }
        let train = self.num_train_timesteps.unwrap_or(1000);
        if train == 0 || train > MAX_TRAIN_TIMESTEPS {
            return invalid(
                "num_train_timesteps",
                format!("expected 1 to {MAX_TRAIN_TIMESTEPS}, found {train}"),
            );
        }
        for (field, value) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0 && *v < 1.0)) {
                return invalid(field, format!("expected a value in (0, 1), found {v}"));
            }
        }
        for (field, value) in [
            ("clip_sample_range", self.clip_sample_range),
            ("sigma_min", self.sigma_min),
            ("sigma_max", self.sigma_max),
        ] {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return invalid(
                    field,
                    format!("expected a positive finite value, found {v}"),
                );
            }
        }
        if let Some(offset) = self
            .steps_offset
            .filter(|o| o.unsigned_abs() >= train as u64)
        {
            return invalid(
                "steps_offset",
                format!("expected less than num_train_timesteps ({train}) in size, found {offset}"),
            );
        }
        if let Some(order) = self.solver_order.filter(|o| !(1..=3).contains(o)) {
            return invalid("solver_order", format!("expected 1, 2 or 3, found {order}"));
        }
        if let Some(l) = self.lambda_min_clipped.filter(|l| l.is_nan()) {
            return invalid(
                "lambda_min_clipped",
                format!("expected a number, found {l}"),
            );
        }
        Ok(())
    }
}
