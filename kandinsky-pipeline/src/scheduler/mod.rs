//! Schedulers: a public [`Scheduler`] trait and Kandinsky's three samplers — [`UnclipScheduler`]
//! (the prior), [`DdimScheduler`] (the 2.1 decoder), [`DdpmScheduler`] (the 2.2 decoder) —
//! built from a diffusers `scheduler_config.json` with [`load_scheduler`].
//!
//! The schedule (betas, cumulative alphas, timesteps, step coefficients) is computed in f64 on
//! the host; a step is a few elementwise tensor operations with those scalars. Samples are
//! handled flattened to (B, N), so the same scheduler steps the prior's (B, E) embeddings and
//! the decoder's (B, 4, H, W) latents ([`SchedulerExt`] reshapes for you). A step that adds
//! noise takes it from the caller, never from the backend's generator.

mod config;
mod ddim;
mod ddpm;
pub mod schedule;
mod unclip;

use std::path::Path;

use burn::tensor::Tensor;

pub use config::{PredictionType, SchedulerConfig, VarianceType};
pub use ddim::DdimScheduler;
pub use ddpm::DdpmScheduler;
pub use unclip::UnclipScheduler;

/// What a scheduler step returns.
#[derive(Debug, Clone)]
pub struct StepOutput<const D: usize = 2> {
    /// The sample at the next (less noisy) timestep.
    pub prev_sample: Tensor<D>,
    /// The model's estimate of the clean sample x̂₀.
    pub pred_original_sample: Tensor<D>,
}

/// Why a scheduler could not be built or stepped.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// `scheduler_config.json` is missing, malformed or unsupported.
    #[error(transparent)]
    Config(#[from] kandinsky_common::ConfigError),
    /// An invalid number of inference steps.
    #[error("invalid step count {steps}: {reason}")]
    Steps {
        /// The count asked for.
        steps: usize,
        /// Why it is refused.
        reason: String,
    },
    /// `step` before `set_timesteps`, or an index past the last step.
    #[error("step index {index} is out of range: {len} timesteps are set")]
    Index {
        /// The index passed.
        index: usize,
        /// The number of timesteps set.
        len: usize,
    },
    /// A stochastic step was called without noise.
    #[error(
        "step {index} (timestep {timestep}) adds noise: pass a noise tensor shaped like the sample"
    )]
    MissingNoise {
        /// The step index.
        index: usize,
        /// Its timestep.
        timestep: i64,
    },
    /// Tensors of incompatible shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// A diffusion sampler. Implement it to bring your own; the pipelines drive any implementation
/// through `&dyn Scheduler`.
///
/// Tensors are (B, N): a batch of flattened samples. `model_output` has the sample's shape, or
/// (B, 2N) when [`uses_model_variance`](Self::uses_model_variance) is true (prediction, then
/// variance: an NCHW model output's first and second halves of channels).
pub trait Scheduler {
    /// Prepares `steps` inference steps.
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError>;

    /// The inference timesteps, in the order they are visited (the model is called with them).
    fn timesteps(&self) -> &[i64];

    /// Standard deviation of the initial noise (1 for all of Kandinsky's schedulers).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// Whether step `index` adds noise, so the caller must supply it.
    fn needs_noise(&self, index: usize) -> bool;

    /// Whether the model's learned-variance channels are used (the pipelines then pass the
    /// whole model output, else only its prediction half).
    fn uses_model_variance(&self) -> bool {
        false
    }

    /// Steps `sample` from `timesteps()[index]` to the next timestep.
    fn step(
        &self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError>;

    /// Noises a clean sample to training timestep `timestep`: √ᾱ·x₀ + √(1 − ᾱ)·ε
    /// (img2img and inpainting).
    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        timestep: i64,
    ) -> Result<Tensor<2>, SchedulerError>;
}

fn flatten<const D: usize>(t: Tensor<D>) -> Tensor<2> {
    let dims = t.dims();
    let b = dims[0];
    t.reshape([b, dims[1..].iter().product::<usize>()])
}

/// Steps and noises tensors of any rank (B, …) by flattening them for a [`Scheduler`].
pub trait SchedulerExt: Scheduler {
    /// [`Scheduler::step`] for (B, …) tensors; the output has the sample's shape.
    fn step_nd<const D: usize>(
        &self,
        index: usize,
        model_output: Tensor<D>,
        sample: Tensor<D>,
        noise: Option<Tensor<D>>,
    ) -> Result<StepOutput<D>, SchedulerError> {
        let dims = sample.dims();
        let out = self.step(
            index,
            flatten(model_output),
            flatten(sample),
            noise.map(flatten),
        )?;
        Ok(StepOutput {
            prev_sample: out.prev_sample.reshape(dims),
            pred_original_sample: out.pred_original_sample.reshape(dims),
        })
    }

    /// [`Scheduler::add_noise`] for (B, …) tensors.
    fn add_noise_nd<const D: usize>(
        &self,
        original: Tensor<D>,
        noise: Tensor<D>,
        timestep: i64,
    ) -> Result<Tensor<D>, SchedulerError> {
        let dims = original.dims();
        Ok(self
            .add_noise(flatten(original), flatten(noise), timestep)?
            .reshape(dims))
    }
}

impl<S: Scheduler + ?Sized> SchedulerExt for S {}

/// Builds the scheduler a diffusers `scheduler_config.json` names (`_class_name`
/// `UnCLIPScheduler`, `DDIMScheduler` or `DDPMScheduler`).
pub fn load_scheduler(path: &Path) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let config = SchedulerConfig::from_file(path)?;
    Ok(match config.class_name.as_str() {
        "UnCLIPScheduler" => Box::new(UnclipScheduler::new(config, path)?),
        "DDIMScheduler" => Box::new(DdimScheduler::new(config, path)?),
        "DDPMScheduler" => Box::new(DdpmScheduler::new(config, path)?),
        other => {
            return Err(kandinsky_common::ConfigError::invalid(
                path,
                "_class_name",
                format!(
                    "expected UnCLIPScheduler, DDIMScheduler or DDPMScheduler, found {other:?}"
                ),
            )
            .into());
        }
    })
}

/// `steps` timesteps with `spacing`, refusing counts outside 1..=train (DDPM, DDIM).
pub(crate) fn checked_timesteps(
    spacing: schedule::TimestepSpacing,
    train: usize,
    steps: usize,
    offset: i64,
) -> Result<Vec<i64>, SchedulerError> {
    if steps == 0 || steps > train {
        return Err(SchedulerError::Steps {
            steps,
            reason: format!("expected 1 to {train} (the training timesteps)"),
        });
    }
    Ok(schedule::spaced_timesteps(spacing, train, steps, offset))
}

/// The common start of a step: the timestep at `index`, the shapes checked, and the model
/// output split into prediction and (when it has twice the sample's width) variance.
pub(crate) fn begin_step(
    timesteps: &[i64],
    index: usize,
    model_output: Tensor<2>,
    sample: &Tensor<2>,
    noise: Option<&Tensor<2>>,
    model_variance: bool,
) -> Result<(i64, Tensor<2>, Option<Tensor<2>>), SchedulerError> {
    let len = timesteps.len();
    let t = *timesteps
        .get(index)
        .ok_or(SchedulerError::Index { index, len })?;
    check_step(&model_output, sample, noise, model_variance)?;
    let [b, n] = sample.dims();
    if model_output.dims()[1] == 2 * n {
        let variance = model_output.clone().slice([0..b, n..2 * n]);
        Ok((t, model_output.slice([0..b, 0..n]), Some(variance)))
    } else {
        Ok((t, model_output, None))
    }
}

/// The noise of a learned-range step: the model's variance channels v ∈ [−1, 1] interpolate
/// log σ² between log `variance` (the posterior's, v = −1) and log `beta` (v = 1).
pub(crate) fn learned_range_noise(
    v: Tensor<2>,
    beta: f32,
    variance: f32,
    noise: Tensor<2>,
) -> Tensor<2> {
    let frac = (v + 1.0) / 2.0;
    let log_var = frac.clone() * beta.ln() + (-frac + 1.0) * variance.ln();
    (log_var * 0.5).exp() * noise
}

/// Checks the shapes of a step's tensors; `width` is the sample width N.
fn check_step(
    model_output: &Tensor<2>,
    sample: &Tensor<2>,
    noise: Option<&Tensor<2>>,
    model_variance: bool,
) -> Result<(), SchedulerError> {
    let [b, n] = sample.dims();
    let [mb, mn] = model_output.dims();
    let fits = mb == b && (mn == n || (model_variance && mn == 2 * n));
    if !fits {
        return Err(SchedulerError::Shape(format!(
            "model output {:?} for a sample {:?}",
            [mb, mn],
            [b, n]
        )));
    }
    if let Some(noise) = noise
        && noise.dims() != [b, n]
    {
        return Err(SchedulerError::Shape(format!(
            "noise {:?} for a sample {:?}",
            noise.dims(),
            [b, n]
        )));
    }
    Ok(())
}
