//! The denoising loop with classifier-free guidance, shared by the prior (on (B, E)
//! embeddings) and the decoder (on (B, 4, h, w) latents): for each timestep, the model on the
//! latents duplicated as [negative, positive], ε = ε_neg + g·(ε_pos − ε_neg), a scheduler step.

use std::ops::ControlFlow;

use burn::tensor::Tensor;

use crate::error::{PipelineError, Stage};
use crate::rng::{NoiseSource, draw};
use crate::scheduler::Scheduler;

/// What the loop reports after each step.
#[derive(Debug)]
pub struct LoopStep<'a, const D: usize> {
    /// Index into the scheduler's timesteps.
    pub index: usize,
    /// The timestep the model saw.
    pub timestep: f64,
    /// The latents after the step (and after `after_step`).
    pub latents: &'a Tensor<D>,
    /// The scheduler's estimate of the clean sample x̂₀.
    pub predicted_original: &'a Tensor<D>,
}

/// What may change the latents after each step: `(index, latents, scheduler)` → latents.
pub(crate) type AfterStep<'a, const D: usize> =
    dyn FnMut(usize, Tensor<D>, &dyn Scheduler) -> Result<Tensor<D>, PipelineError> + 'a;

/// Flattens (B, …) to (B, N) for the scheduler.
fn flat<const D: usize>(t: Tensor<D>) -> Tensor<2> {
    let dims = t.dims();
    t.reshape([dims[0], dims[1..].iter().product::<usize>()])
}

/// Runs `scheduler`'s timesteps from index `first` on.
///
/// `model(input, t)` returns the model output for `input` (the latents scaled by the
/// scheduler's `scale_model_input`, or when guiding
/// (`guidance_scale` > 1) the latents twice: [negative half, positive half] along dim 0). Its
/// channels (dim 1) are the prediction, possibly followed by learned-variance channels, which
/// are taken from the positive half and passed on only if the scheduler uses them. The
/// device queue is handed over between the guidance and the step ([`crate::queue`]). Stochastic
/// steps draw their noise from `noise`. `after_step(index, latents, scheduler)` may change the latents
/// after each step (2.2 inpainting pastes the kept region there); `on_step` then sees them and
/// may stop the loop: a [`PipelineError::Cancelled`] of `stage`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn guided_loop<const D: usize>(
    stage: Stage,
    model: &mut dyn FnMut(Tensor<D>, f64) -> Result<Tensor<D>, PipelineError>,
    scheduler: &mut dyn Scheduler,
    first: usize,
    mut latents: Tensor<D>,
    guidance_scale: f64,
    noise: &mut dyn NoiseSource,
    after_step: &mut AfterStep<'_, D>,
    on_step: &mut dyn FnMut(LoopStep<'_, D>) -> ControlFlow<()>,
) -> Result<Tensor<D>, PipelineError> {
    let guided = guidance_scale > 1.0;
    let dims = latents.dims();
    let (b, c) = (dims[0], dims[1]);
    let device = latents.device();
    let timesteps = scheduler.timesteps().to_vec();
    for (index, &timestep) in timesteps.iter().enumerate().skip(first) {
        let scaled = flat(latents.clone());
        let scaled = scheduler.scale_model_input(index, scaled)?.reshape(dims);
        let input = if guided {
            Tensor::cat(vec![scaled.clone(), scaled], 0)
        } else {
            scaled
        };
        let out = model(input, timestep)?;
        let out_channels = out.dims()[1];
        let prediction = if guided {
            let eps = out.clone().narrow(1, 0, c);
            let eps_neg = eps.clone().narrow(0, 0, b);
            let eps_pos = eps.narrow(0, b, b);
            let guided_eps = eps_neg.clone() + (eps_pos - eps_neg) * guidance_scale;
            if out_channels > c {
                let var_pos = out.narrow(0, b, b).narrow(1, c, out_channels - c);
                Tensor::cat(vec![guided_eps, var_pos], 1)
            } else {
                guided_eps
            }
        } else {
            out
        };
        let prediction = if scheduler.uses_model_variance() || prediction.dims()[1] == c {
            prediction
        } else {
            prediction.narrow(1, 0, c)
        };
        crate::queue::hand_over(&device)?;
        let step_noise = match scheduler.needs_noise(index) {
            true => Some(flat(draw(noise, dims, &device)?)),
            false => None,
        };
        let out = scheduler.step(index, flat(prediction), flat(latents), step_noise)?;
        latents = after_step(index, out.prev_sample.reshape(dims), &*scheduler)?;
        // NaN and ±∞ propagate into the sum (finite latents this size cannot overflow it): one
        // scalar read per step, against a model evaluation.
        if !latents.clone().sum().into_scalar::<f32>().is_finite() {
            return Err(PipelineError::NonFinite {
                stage,
                step: index + 1 - first,
                timestep,
            });
        }
        let predicted_original = out.pred_original_sample.reshape(dims);
        let step = LoopStep {
            index,
            timestep,
            latents: &latents,
            predicted_original: &predicted_original,
        };
        if on_step(step).is_break() {
            let step = index + 1 - first;
            return Err(PipelineError::Cancelled { stage, step });
        }
    }
    Ok(latents)
}

/// Whether a scale or weight of a request is a finite float32 (the models compute in float32
/// or narrower: 1e308 would be infinite there).
pub(crate) fn fits_f32(x: f64) -> bool {
    x.is_finite() && x.abs() <= f64::from(f32::MAX)
}
