//! `scheduler_config.json`, with each class's diffusers defaults for absent fields.

use std::path::Path;

use kandinsky_common::ConfigError;
use kandinsky_common::config::read_json;
use serde::Deserialize;

use super::schedule::{BetaSchedule, TimestepSpacing};

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

/// The fields of a diffusers scheduler config. `None` means absent (the class default applies).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    /// `UnCLIPScheduler`, `DDIMScheduler` or `DDPMScheduler`.
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
}

impl SchedulerConfig {
    /// Reads a `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_json(path)?;
        if config.thresholding == Some(true) {
            return Err(ConfigError::invalid(
                path,
                "thresholding",
                "expected false (dynamic thresholding is not implemented), found true",
            ));
        }
        if config.num_train_timesteps == Some(0) {
            return Err(ConfigError::invalid(
                path,
                "num_train_timesteps",
                "expected a positive value, found 0",
            ));
        }
        Ok(config)
    }
}
