//! The prior stage: prompt → CLIP image embedding, as diffusers' `KandinskyPriorPipeline` and
//! `KandinskyV22PriorPipeline` compute it (identical math for 2.1 and 2.2).

use std::ops::ControlFlow;

use burn::tensor::{Bool, Device, Tensor, TensorData};
use kandinsky_clip::{ClipImageProcessor, ClipTextModel, ClipVisionModel, RgbImage, TextTokenizer};
use kandinsky_common::tensors::f32_tensor;
use kandinsky_prior::PriorTransformer;

use crate::decoder::image_start_index;
use crate::error::{PipelineError, Stage};
use crate::guidance::{LoopStep, guided_loop};
use crate::image::Image;
use crate::rng::{NoiseSource, draw};
use crate::scheduler::{Scheduler, SchedulerExt};

/// Options of a prior run.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorOptions {
    /// Sampling steps (25 in the reference; at least 2).
    pub steps: usize,
    /// Classifier-free guidance scale; ≤ 1 turns guidance off (4.0 in the reference).
    pub guidance_scale: f64,
}

impl Default for PriorOptions {
    fn default() -> Self {
        Self {
            steps: 25,
            guidance_scale: 4.0,
        }
    }
}

/// The prior's output.
#[derive(Debug, Clone)]
pub struct PriorOutput {
    /// One image embedding per prompt, (B, E).
    pub image_embeds: Tensor<2>,
    /// The negative embedding for the decoder, (B, E): the negative prompts' embeddings when
    /// given, else `None` (the caller uses [`zero_image_embeds`], as the reference does).
    pub negative_image_embeds: Option<Tensor<2>>,
}

/// Where the prior's latents start.
#[derive(Debug, Clone)]
pub enum PriorStart {
    /// Noise: fresh from the generator, or these latents (B', E).
    Noise(Option<Tensor<2>>),
    /// Embedding-to-embedding (`KandinskyV22PriorEmb2EmbPipeline`): raw CLIP image embeddings
    /// (one per prompt, (B, E)) noised with the prior's scheduler to `strength` ∈ (0, 1]; only
    /// the last ⌊steps · strength⌋ steps run. With negative prompts the embeddings start the
    /// negative half too (the reference fails on negative prompts here).
    Embedding {
        /// CLIP image embeddings, e.g. of an image ([`image_embeds`]).
        image_embeds: Tensor<2>,
        /// How much of the schedule to run, in (0, 1].
        strength: f64,
    },
}

impl From<Option<Tensor<2>>> for PriorStart {
    fn from(latents: Option<Tensor<2>>) -> Self {
        PriorStart::Noise(latents)
    }
}

/// CLIP image embeddings (B, E) of images, preprocessed as the prior repos'
/// `image_processor` says.
pub fn image_embeds(
    image_encoder: &ClipVisionModel,
    processor: &ClipImageProcessor,
    images: &[&Image],
    device: &Device,
) -> Result<Tensor<2>, PipelineError> {
    let views: Vec<RgbImage<'_>> = images
        .iter()
        .map(|i| RgbImage {
            width: i.width,
            height: i.height,
            data: &i.rgb,
        })
        .collect();
    let pixels = processor.preprocess(&views, device)?;
    Ok(image_encoder.forward(pixels)?.image_embeds)
}

/// The CLIP image embedding of an all-zero input (zero in normalized pixel space, not a black
/// image), repeated `batch` times: the decoder's default negative embedding. It depends only on
/// the image encoder, so compute it once and keep it.
pub fn zero_image_embeds(
    image_encoder: &ClipVisionModel,
    batch: usize,
    device: &Device,
) -> Result<Tensor<2>, PipelineError> {
    let size = image_encoder.config().image_size;
    let channels = image_encoder.config().num_channels;
    let zeros = Tensor::<4>::zeros([1, channels, size, size], device);
    let embeds = image_encoder.forward(zeros)?.image_embeds;
    let e = embeds.dims()[1];
    Ok(embeds.expand([batch, e]))
}

/// Text embedding, hidden states and mask of `prompts`.
fn encode(
    text_encoder: &ClipTextModel,
    tokenizer: &TextTokenizer,
    prompts: &[&str],
    device: &Device,
) -> Result<(Tensor<2>, Tensor<3>, Tensor<2, Bool>), PipelineError> {
    let tokens = tokenizer.encode(prompts)?;
    let out = text_encoder.forward(tokens.ids_tensor(device))?;
    let mask = tokens.mask_tensor(device);
    Ok((out.text_embeds, out.last_hidden_state, mask))
}

/// The models the prior's loop runs: the prior, its CLIP text encoder and tokenizer.
#[derive(Clone, Copy)]
pub(crate) struct PriorText<'a> {
    pub prior: &'a PriorTransformer,
    pub text_encoder: &'a ClipTextModel,
    pub tokenizer: &'a TextTokenizer,
}

/// What the prior's step callback receives.
pub(crate) type PriorStep<'a> = &'a mut dyn FnMut(LoopStep<'_, 2>) -> ControlFlow<()>;

/// Runs the prior for `prompts`. With `negative_prompts`, they are sampled alongside (each
/// guided against itself, as the reference does) and returned as the negative embeddings;
/// without, guidance is against the empty prompt.
///
/// `start` is noise (or given latents (B', E), B' being the number of prompts, doubled with
/// negative prompts) or, for embedding-to-embedding, image embeddings and a strength.
/// `on_step(i, latents)` sees the standardized latents after each step.
#[allow(clippy::too_many_arguments)]
pub fn run_prior(
    prior: &PriorTransformer,
    text_encoder: &ClipTextModel,
    tokenizer: &TextTokenizer,
    scheduler: &mut dyn Scheduler,
    prompts: &[&str],
    negative_prompts: Option<&[&str]>,
    start: PriorStart,
    options: &PriorOptions,
    noise: &mut dyn NoiseSource,
    on_step: &mut dyn FnMut(usize, &Tensor<2>),
) -> Result<PriorOutput, PipelineError> {
    let models = PriorText {
        prior,
        text_encoder,
        tokenizer,
    };
    let mut on_step = |step: LoopStep<'_, 2>| {
        on_step(step.index, step.latents);
        ControlFlow::Continue(())
    };
    prior_loop(
        models,
        scheduler,
        prompts,
        negative_prompts,
        start,
        options,
        noise,
        &mut on_step,
    )
}

/// [`run_prior`] with a step callback that sees the whole step and can stop the run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prior_loop(
    models: PriorText<'_>,
    scheduler: &mut dyn Scheduler,
    prompts: &[&str],
    negative_prompts: Option<&[&str]>,
    start: PriorStart,
    options: &PriorOptions,
    noise: &mut dyn NoiseSource,
    on_step: PriorStep<'_>,
) -> Result<PriorOutput, PipelineError> {
    let PriorText {
        prior,
        text_encoder,
        tokenizer,
    } = models;
    if prompts.is_empty() {
        return Err(PipelineError::Count {
            what: "prompts",
            found: 0,
            expected: 1,
        });
    }
    let device = prior.device();
    // With negative prompts: [prompts, negatives] guided against [negatives, negatives].
    let (conditional, unconditional): (Vec<&str>, Vec<&str>) = match negative_prompts {
        Some(neg) if neg.len() != prompts.len() => {
            return Err(PipelineError::Count {
                what: "negative prompts",
                found: neg.len(),
                expected: prompts.len(),
            });
        }
        Some(neg) => (
            prompts.iter().chain(neg).copied().collect(),
            neg.iter().chain(neg).copied().collect(),
        ),
        None => (prompts.to_vec(), vec![""; prompts.len()]),
    };
    let b = conditional.len();
    let guided = options.guidance_scale > 1.0;
    let (embeds, hidden, mask) = encode(text_encoder, tokenizer, &conditional, &device)?;
    let (embeds, hidden, mask) = if guided {
        let (u_embeds, u_hidden, u_mask) =
            encode(text_encoder, tokenizer, &unconditional, &device)?;
        (
            Tensor::cat(vec![u_embeds, embeds], 0),
            Tensor::cat(vec![u_hidden, hidden], 0),
            Tensor::cat(vec![u_mask, mask], 0),
        )
    } else {
        (embeds, hidden, mask)
    };

    scheduler.set_timesteps(options.steps)?;
    let e = prior.config().embedding_dim;
    let (first, latents) = match start {
        PriorStart::Noise(Some(l)) if l.dims() != [b, e] => {
            return Err(PipelineError::shape(
                "initial prior latents",
                &l.dims(),
                &[b, e],
            ));
        }
        PriorStart::Noise(Some(l)) => (0, l * scheduler.init_noise_sigma()),
        PriorStart::Noise(None) => (
            0,
            draw(noise, [b, e], &device)? * scheduler.init_noise_sigma(),
        ),
        PriorStart::Embedding {
            image_embeds,
            strength,
        } => {
            let first = scheduler.first_index(image_start_index(options.steps, strength)?);
            let expected = [prompts.len(), e];
            if image_embeds.dims() != expected {
                return Err(PipelineError::shape(
                    "image embeddings to start from",
                    &image_embeds.dims(),
                    &expected,
                ));
            }
            let init = image_embeds.repeat_dim(0, b / prompts.len());
            let eps = draw(noise, [b, e], &device)?;
            (first, scheduler.add_noise_nd(init, eps, first)?)
        }
    };
    // The prompt's tokens are the same at every step: through the transformer once.
    let prompt = prior.encode_prompt(embeds, hidden, mask)?;
    let mut model = |input: Tensor<2>, t: f64| -> Result<Tensor<2>, PipelineError> {
        let timestep = f32_tensor::<1>(TensorData::from([t as f32]), &device);
        Ok(prior.forward_with_prompt(&prompt, input, timestep)?)
    };
    let latents = guided_loop(
        Stage::Prior,
        &mut model,
        scheduler,
        first,
        latents,
        options.guidance_scale,
        noise,
        &mut |_, latents, _| Ok(latents),
        on_step,
    )?;
    let embeddings = prior.post_process_latents(latents);
    Ok(match negative_prompts {
        Some(_) => {
            let n = prompts.len();
            PriorOutput {
                image_embeds: embeddings.clone().slice([0..n, 0..e]),
                negative_image_embeds: Some(embeddings.slice([n..2 * n, 0..e])),
            }
        }
        None => PriorOutput {
            image_embeds: embeddings,
            negative_image_embeds: None,
        },
    })
}
