//! Schedulers: a public [`Scheduler`] trait that any diffusers scheduler fits (stateful steps,
//! model-input scaling, multi-evaluation steps, noise at any sampler's level), Kandinsky's own
//! samplers — [`UnclipScheduler`] (the prior), [`DdimScheduler`] (the 2.1 decoder),
//! [`DdpmScheduler`] (the 2.2 decoder) — and the fast ones users swap in:
//! [`DpmSolverMultistepScheduler`] (DPM-Solver++ 2M/3M, SDE variants),
//! [`DpmSolverSinglestepScheduler`], [`UniPcMultistepScheduler`], [`DeisMultistepScheduler`],
//! [`PndmScheduler`], [`EulerDiscreteScheduler`], [`EulerAncestralDiscreteScheduler`],
//! [`HeunDiscreteScheduler`], [`KDpm2DiscreteScheduler`], [`KDpm2AncestralDiscreteScheduler`]
//! and [`LmsDiscreteScheduler`], with Karras, exponential and beta sigma schedules where
//! diffusers has them. Each is diffusers 0.42.1's, step for step (tests/samplers.rs,
//! tests/sampler_pipelines.rs).
//!
//! Build one from a `scheduler_config.json` ([`load_scheduler`], any of the classes above by
//! `_class_name`), or pick a sampler by name on a stage's own config as diffusers'
//! `Scheduler.from_config(pipe.scheduler.config)` does ([`Sampler::find`] and
//! [`Sampler::build`]; [`SAMPLERS`] lists them with their short names and aliases).
//!
//! Where diffusers' Kandinsky pipelines are wrong with a sampler, these are right: the
//! pipelines never call `scale_model_input` (so Euler, Heun, DPM2 and LMS get unscaled
//! inputs there), the 2.2 image-to-image pipeline starts a sampler of order 2 in the middle of a
//! step, and it passes `generator=` to `step()`, which most of these samplers do not accept.
//!
//! The schedule (betas, cumulative alphas, sigmas, timesteps, step coefficients) is computed on
//! the host; a step is a few elementwise tensor operations with those scalars. Samples are
//! handled flattened to (B, N), so the same scheduler steps the prior's (B, E) embeddings and
//! the decoder's (B, 4, H, W) latents ([`SchedulerExt`] reshapes for you). A step that adds
//! noise takes it from the caller, never from the backend's generator.

mod config;
mod ddim;
mod ddpm;
mod deis;
mod dpm_multistep;
mod dpm_singlestep;
mod euler;
mod euler_ancestral;
mod heun;
mod karras;
mod kdpm2;
mod kdpm2_ancestral;
mod lms;
mod pndm;
mod registry;
pub mod schedule;
mod sigmas;
mod unclip;
mod unipc;
mod vp;

use burn::tensor::Tensor;

pub use config::{
    AlgorithmType, FinalSigmas, InterpolationType, PredictionType, SchedulerConfig, SolverType,
    VarianceType,
};
pub use ddim::DdimScheduler;
pub use ddpm::DdpmScheduler;
pub use deis::DeisMultistepScheduler;
pub use dpm_multistep::DpmSolverMultistepScheduler;
pub use dpm_singlestep::DpmSolverSinglestepScheduler;
pub use euler::EulerDiscreteScheduler;
pub use euler_ancestral::EulerAncestralDiscreteScheduler;
pub use heun::HeunDiscreteScheduler;
pub use kdpm2::KDpm2DiscreteScheduler;
pub use kdpm2_ancestral::KDpm2AncestralDiscreteScheduler;
pub use lms::LmsDiscreteScheduler;
pub use pndm::PndmScheduler;
pub use registry::{SAMPLERS, Sampler, build_scheduler, load_scheduler};
pub use unclip::UnclipScheduler;
pub use unipc::UniPcMultistepScheduler;

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
        timestep: f64,
    },
    /// A stateful sampler's steps out of order: each run's indices must follow one another.
    #[error(
        "step index {found} out of order: this sampler keeps history and expected index {expected} (call set_timesteps to start a new run)"
    )]
    Order {
        /// The index expected.
        expected: usize,
        /// The index passed.
        found: usize,
    },
    /// Tensors of incompatible shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// A diffusion sampler. Implement it to bring your own (any diffusers scheduler fits: see
/// `examples/custom_scheduler.rs`); the pipelines drive any implementation through
/// `&mut dyn Scheduler`, in this order:
///
/// 1. [`set_timesteps`](Self::set_timesteps) (which also forgets any history of an earlier run);
/// 2. the starting sample: noise times [`init_noise_sigma`](Self::init_noise_sigma), or for
///    image-to-image a clean sample noised with [`add_noise`](Self::add_noise) to the level of the
///    first index run ([`first_index`](Self::first_index) of the steps skipped, `steps −
///    ⌊steps · strength⌋` as diffusers' `get_timesteps`);
/// 3. for each index `i` of [`timesteps`](Self::timesteps) from there on, in order: the model
///    on [`scale_model_input(i, sample)`](Self::scale_model_input) at timestep
///    `timesteps()[i]`, then [`step(i, …)`](Self::step), which may keep history (multistep
///    solvers) and, for a sampler that evaluates the model twice per step (Heun, DPM2), is
///    called for each evaluation: `timesteps()` then lists every evaluation, as in diffusers.
///
/// Tensors are (B, N): a batch of flattened samples ([`SchedulerExt`] reshapes for you).
/// `model_output` has the sample's shape, or (B, 2N) when
/// [`uses_model_variance`](Self::uses_model_variance) is true (prediction, then variance: an
/// NCHW model output's first and second halves of channels).
pub trait Scheduler: Send {
    /// Prepares `steps` inference steps and resets any state of an earlier run.
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError>;

    /// The timesteps the model is evaluated at, in order (fractional for samplers that
    /// interpolate between the training timesteps). A sampler of order 2 lists most timesteps
    /// twice.
    fn timesteps(&self) -> &[f64];

    /// Model evaluations per step (2 for Heun and DPM2; 1 otherwise).
    fn order(&self) -> usize {
        1
    }

    /// The index at which a run that skips the first `skipped` steps begins (image-to-image):
    /// `skipped · order()` unless a sampler lays out its evaluations otherwise (PNDM).
    fn first_index(&self, skipped: usize) -> usize {
        skipped * self.order()
    }

    /// Standard deviation of the initial noise: 1 for variance-preserving samplers, about
    /// σ_max for the sigma-parameterised ones (Euler, Heun, DPM2, LMS).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// Whether samples are variance-preserving, x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε, the model's own input
    /// (DDPM, DDIM, the DPM-Solvers, UniPC, DEIS, PNDM), rather than x = x₀ + σ·ε, which
    /// [`scale_model_input`](Self::scale_model_input) divides by √(σ² + 1) (Euler, Heun, DPM2,
    /// LMS).
    fn preserves_variance(&self) -> bool {
        true
    }

    /// The model's input at index `index`: the sample itself for variance-preserving samplers,
    /// `sample / √(σ² + 1)` for the sigma-parameterised ones.
    fn scale_model_input(
        &self,
        index: usize,
        sample: Tensor<2>,
    ) -> Result<Tensor<2>, SchedulerError> {
        let _ = index;
        Ok(sample)
    }

    /// Whether step `index` adds noise, so the caller must supply it.
    fn needs_noise(&self, index: usize) -> bool;

    /// Whether the model's learned-variance channels are used (the pipelines then pass the
    /// whole model output, else only its prediction half).
    fn uses_model_variance(&self) -> bool {
        false
    }

    /// Steps `sample` from `timesteps()[index]` to the next level. Stateful samplers expect the
    /// indices of one run in order (the first may be any).
    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<2>,
        sample: Tensor<2>,
        noise: Option<Tensor<2>>,
    ) -> Result<StepOutput, SchedulerError>;

    /// Noises a clean sample to the noise level the model sees at `timesteps()[index]`:
    /// √ᾱ·x₀ + √(1 − ᾱ)·ε for variance-preserving samplers, x₀ + σ·ε for the others
    /// (image-to-image, and the kept region of 2.2 inpainting).
    fn add_noise(
        &self,
        original: Tensor<2>,
        noise: Tensor<2>,
        index: usize,
    ) -> Result<Tensor<2>, SchedulerError>;

    /// What runs, for metadata and logs, e.g. `DPMSolverMultistepScheduler(dpmsolver++, order 2,
    /// karras)`.
    fn describe(&self) -> String;
}

/// `Ok` when `index` is one of `len` set steps, else [`SchedulerError::Index`].
pub(crate) fn check_index(index: usize, len: usize) -> Result<(), SchedulerError> {
    match index < len {
        true => Ok(()),
        false => Err(SchedulerError::Index { index, len }),
    }
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
        &mut self,
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

    /// [`Scheduler::scale_model_input`] for (B, …) tensors.
    fn scale_model_input_nd<const D: usize>(
        &self,
        index: usize,
        sample: Tensor<D>,
    ) -> Result<Tensor<D>, SchedulerError> {
        let dims = sample.dims();
        Ok(self
            .scale_model_input(index, flatten(sample))?
            .reshape(dims))
    }

    /// [`Scheduler::add_noise`] for (B, …) tensors.
    fn add_noise_nd<const D: usize>(
        &self,
        original: Tensor<D>,
        noise: Tensor<D>,
        index: usize,
    ) -> Result<Tensor<D>, SchedulerError> {
        let dims = original.dims();
        Ok(self
            .add_noise(flatten(original), flatten(noise), index)?
            .reshape(dims))
    }
}

impl<S: Scheduler + ?Sized> SchedulerExt for S {}

/// Where a stateful sampler is in its run: the index it expects next, and the one the run began
/// at.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor {
    next: Option<usize>,
    start: usize,
}

impl Cursor {
    /// Forgets the run (set_timesteps).
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }

    /// Checks that `index` is in range and follows the previous one (any index starts a run);
    /// returns how many steps of this run came before it.
    pub(crate) fn advance(&mut self, index: usize, len: usize) -> Result<usize, SchedulerError> {
        check_index(index, len)?;
        match self.next {
            Some(expected) if expected != index => {
                return Err(SchedulerError::Order {
                    expected,
                    found: index,
                });
            }
            Some(_) => {}
            None => self.start = index,
        }
        self.next = Some(index + 1);
        Ok(index - self.start)
    }

    /// The index the run began at.
    pub(crate) fn start(&self) -> usize {
        self.start
    }
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
    let timesteps = schedule::spaced_timesteps(spacing, train, steps, offset);
    // Past the table is refused; a last timestep of −1 (trailing spacing, where numpy's arange
    // gives one more) is the reference's, and steps to ᾱ = 1.
    if let Some(&bad) = timesteps.iter().find(|&&t| t >= train as i64) {
        return Err(SchedulerError::Steps {
            steps,
            reason: format!(
                "timestep {bad} falls outside the {train} training timesteps (steps_offset {offset} with {spacing:?} spacing)"
            ),
        });
    }
    Ok(timesteps)
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

/// Checks that `tensor` (named `what`) has the sample's shape.
pub(crate) fn check_same(
    what: &str,
    tensor: &Tensor<2>,
    sample: &Tensor<2>,
) -> Result<(), SchedulerError> {
    if tensor.dims() != sample.dims() {
        return Err(SchedulerError::Shape(format!(
            "{what} {:?} for a sample {:?}",
            tensor.dims(),
            sample.dims()
        )));
    }
    Ok(())
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
