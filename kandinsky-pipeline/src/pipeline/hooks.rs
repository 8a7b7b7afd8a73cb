//! What a caller injects into a generation at run time: the noise, starting latents, given
//! embeddings, the schedulers, and a callback that sees every event and step and can stop the
//! run.

use std::ops::ControlFlow;

use burn::tensor::Tensor;

use crate::guidance::LoopStep;
use crate::rng::NoiseSource;
use crate::scheduler::Scheduler;

/// One step of a stage, as the step callback sees it.
#[derive(Debug)]
pub struct Step<'a, const D: usize> {
    /// Steps of this stage done, counted from 1 (image-to-image counts only the steps it runs).
    pub step: usize,
    /// Steps this stage runs.
    pub of: usize,
    /// The timestep the model saw (fractional for samplers that interpolate the schedule).
    pub timestep: f64,
    /// The latents after the step: (B, E) embeddings for the prior, (B, 4, h, w) for the
    /// decoder.
    pub latents: &'a Tensor<D>,
    /// The scheduler's estimate of the clean sample x̂₀ at this step (for previews).
    pub predicted_original: &'a Tensor<D>,
}

/// What a generation reports to its callback.
#[derive(Debug)]
pub enum Event<'a> {
    /// A component is being loaded (its folder name: `prior`, `unet`, `image_encoder`; `prior`
    /// stands for the prior with its text encoder and tokenizer, `unet` for the decoder's models).
    Loading(&'static str),
    /// That component is loaded.
    Loaded(&'static str),
    /// A prior step finished.
    PriorStep(Step<'a, 2>),
    /// A decoder step finished.
    DecoderStep(Step<'a, 4>),
    /// The latents are being decoded to pixels by the MoVQ.
    Decoding,
}

/// The callback type: returning [`ControlFlow::Break`] after a step stops the generation with
/// [`PipelineError::Cancelled`](crate::PipelineError::Cancelled).
pub type Callback<'a> = dyn FnMut(Event<'_>) -> ControlFlow<()> + 'a;

/// Everything a caller can inject into a generation; the default injects nothing (the seeded
/// [`Rng`](crate::Rng) of the request, fresh noise, the folders' schedulers, no callback).
///
/// ```
/// use std::ops::ControlFlow;
/// use kandinsky_pipeline::{Event, Hooks, Rng};
///
/// let mut rng = Rng::new(7);
/// let mut steps = 0;
/// let mut on_event = |event: Event<'_>| {
///     if let Event::DecoderStep(step) = event {
///         steps = step.step;
///         if step.step == 10 {
///             return ControlFlow::Break(()); // stop after 10 decoder steps
///         }
///     }
///     ControlFlow::Continue(())
/// };
/// let hooks = Hooks::default().noise(&mut rng).on_event(&mut on_event);
/// # drop(hooks);
/// ```
#[derive(Default)]
pub struct Hooks<'a> {
    pub(crate) noise: Option<&'a mut dyn NoiseSource>,
    pub(crate) prior_latents: Option<Tensor<2>>,
    pub(crate) latents: Option<Tensor<4>>,
    pub(crate) image_embeds: Option<(Tensor<2>, Tensor<2>)>,
    pub(crate) prior_scheduler: Option<&'a mut dyn Scheduler>,
    pub(crate) scheduler: Option<&'a mut dyn Scheduler>,
    pub(crate) callback: Option<&'a mut Callback<'a>>,
}

impl std::fmt::Debug for Hooks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("noise", &self.noise.is_some())
            .field(
                "prior_latents",
                &self.prior_latents.as_ref().map(Tensor::dims),
            )
            .field("latents", &self.latents.as_ref().map(Tensor::dims))
            .field("image_embeds", &self.image_embeds.is_some())
            .field("prior_scheduler", &self.prior_scheduler.is_some())
            .field("scheduler", &self.scheduler.is_some())
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl<'a> Hooks<'a> {
    /// Takes every random number (initial latents, step noise, image-to-image noise) from
    /// `noise` instead of the request's seeded generator: a recorded diffusers run's draws, in
    /// order, replay it.
    pub fn noise(mut self, noise: &'a mut dyn NoiseSource) -> Self {
        self.noise = Some(noise);
        self
    }

    /// Starts the prior from these latents (B, E) (B = images, doubled with a negative
    /// prompt) instead of fresh noise.
    pub fn prior_latents(mut self, latents: Tensor<2>) -> Self {
        self.prior_latents = Some(latents);
        self
    }

    /// Starts the decoder from these latents (B, 4, h, w) instead of fresh noise (text-to-image
    /// and inpainting).
    pub fn latents(mut self, latents: Tensor<4>) -> Self {
        self.latents = Some(latents);
        self
    }

    /// Skips the prior: the decoder is guided by `image_embeds` against `negative` (both
    /// (B, E), one row per image), e.g. from an earlier [`PriorStage`](crate::PriorStage)
    /// call or another program.
    pub fn image_embeds(mut self, image_embeds: Tensor<2>, negative: Tensor<2>) -> Self {
        self.image_embeds = Some((image_embeds, negative));
        self
    }

    /// Samples the prior with `scheduler` instead of the prior folder's.
    pub fn prior_scheduler(mut self, scheduler: &'a mut dyn Scheduler) -> Self {
        self.prior_scheduler = Some(scheduler);
        self
    }

    /// Samples the decoder with `scheduler` instead of the decoder folder's.
    pub fn scheduler(mut self, scheduler: &'a mut dyn Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Reports loading, every step and the decoding to `callback`, which may stop the run.
    pub fn on_event(mut self, callback: &'a mut Callback<'a>) -> Self {
        self.callback = Some(callback);
        self
    }
}

/// The callback of a run, and the step adapters the stages hand to their loops.
#[derive(Default)]
pub(crate) struct Events<'a>(pub(crate) Option<&'a mut Callback<'a>>);

impl Events<'_> {
    /// Reports `event` to the callback.
    pub(crate) fn emit(&mut self, event: Event<'_>) -> ControlFlow<()> {
        match self.0.as_mut() {
            Some(callback) => callback(event),
            None => ControlFlow::Continue(()),
        }
    }

    /// A prior step callback: loop steps as [`Event::PriorStep`], counted from the first step
    /// run (`first`) over `of` steps.
    pub(crate) fn prior_step(
        &mut self,
        first: usize,
        of: usize,
    ) -> impl FnMut(LoopStep<'_, 2>) -> ControlFlow<()> + '_ {
        move |s| {
            self.emit(Event::PriorStep(Step {
                step: s.index + 1 - first,
                of,
                timestep: s.timestep,
                latents: s.latents,
                predicted_original: s.predicted_original,
            }))
        }
    }

    /// A decoder step callback, as [`prior_step`](Self::prior_step).
    pub(crate) fn decoder_step(
        &mut self,
        first: usize,
        of: usize,
    ) -> impl FnMut(LoopStep<'_, 4>) -> ControlFlow<()> + '_ {
        move |s| {
            let flow = self.emit(Event::DecoderStep(Step {
                step: s.index + 1 - first,
                of,
                timestep: s.timestep,
                latents: s.latents,
                predicted_original: s.predicted_original,
            }));
            if s.index + 1 - first == of && flow.is_continue() {
                let _ = self.emit(Event::Decoding);
            }
            flow
        }
    }
}
