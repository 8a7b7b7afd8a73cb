//! Image fusion and variations (the paper's demo modes; the reference prior pipelines'
//! `interpolate`): a weighted sum of the CLIP image embeddings of prompts (each through the
//! prior) and images (through the CLIP image encoder), for the decoder.

use burn::tensor::Tensor;
use kandinsky_clip::{ClipImageProcessor, ClipTextModel, ClipVisionModel, TextTokenizer};
use kandinsky_prior::PriorTransformer;

use crate::error::PipelineError;
use crate::image::Image;
use crate::prior::{PriorOptions, PriorStart, image_embeds, run_prior, zero_image_embeds};
use crate::rng::NoiseSource;
use crate::scheduler::Scheduler;

/// The models of a prior repository that fusion uses.
#[derive(Debug, Clone, Copy)]
pub struct PriorModels<'a> {
    /// The prior.
    pub prior: &'a PriorTransformer,
    /// Its CLIP text encoder.
    pub text_encoder: &'a ClipTextModel,
    /// Its tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Its CLIP image encoder.
    pub image_encoder: &'a ClipVisionModel,
    /// Its image preprocessing.
    pub image_processor: &'a ClipImageProcessor,
}

/// One ingredient of a fusion.
#[derive(Debug, Clone, Copy)]
pub enum FusionItem<'a> {
    /// A prompt, turned into an image embedding by the prior.
    Prompt(&'a str),
    /// An image, embedded by the CLIP image encoder.
    Image(&'a Image),
}

/// Checks a fusion's weights: at least one, each finite.
pub(crate) fn check_weights(
    weights: impl ExactSizeIterator<Item = f64>,
) -> Result<(), PipelineError> {
    if weights.len() == 0 {
        return Err(PipelineError::Count {
            what: "fusion items",
            found: 0,
            expected: 1,
        });
    }
    for w in weights {
        if !crate::guidance::fits_f32(w) {
            return Err(PipelineError::invalid(
                "fusion weight",
                w,
                "a finite number (within float32's ±3.4e38)",
            ));
        }
    }
    Ok(())
}

/// Σ weightᵢ · embeddingᵢ over `items` (weights used as given, not normalized, as the
/// reference), and the negative embedding: the zero-image embedding when `negative_prompt` is
/// empty and there is no `negative_prior_prompt` (the reference's defaults); otherwise the
/// prior's embedding of `negative_prompt` (with an empty one, the negative embedding of a run
/// guided by `negative_prior_prompt`), as `interpolate` returns them. Each prompt runs the prior
/// with `negative_prior_prompt` as its negative prompt. Image variations are one image with
/// weight 1.
///
/// Returns (image_embeds, negative_image_embeds), each (1, E).
#[allow(clippy::too_many_arguments)]
pub fn interpolate(
    models: PriorModels<'_>,
    scheduler: &mut dyn Scheduler,
    items: &[(FusionItem<'_>, f64)],
    negative_prompt: &str,
    negative_prior_prompt: Option<&str>,
    options: &PriorOptions,
    noise: &mut dyn NoiseSource,
) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
    let args = (items, negative_prompt, negative_prior_prompt);
    interpolate_with(models, scheduler, args, None, options, noise)
}

/// [`interpolate`], with the zero-image embedding (1, E) when the caller has it already (it is
/// the negative without a negative prompt), so that the image encoder does not run for it again.
pub(crate) fn interpolate_with(
    models: PriorModels<'_>,
    scheduler: &mut dyn Scheduler,
    (items, negative_prompt, negative_prior_prompt): (&[(FusionItem<'_>, f64)], &str, Option<&str>),
    zero: Option<Tensor<2>>,
    options: &PriorOptions,
    noise: &mut dyn NoiseSource,
) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
    check_weights(items.iter().map(|(_, w)| *w))?;
    let device = models.prior.device();
    let mut prior = |prompt: &str, negative: Option<&str>| {
        let negatives = negative.map(|n| [n]);
        run_prior(
            models.prior,
            models.text_encoder,
            models.tokenizer,
            &mut *scheduler,
            &[prompt],
            negatives.as_ref().map(|n| &n[..]),
            PriorStart::Noise(None),
            options,
            &mut *noise,
            &mut |_, _| {},
        )
    };
    let mut sum: Option<Tensor<2>> = None;
    for (item, weight) in items {
        let embeds = match item {
            FusionItem::Prompt(prompt) => prior(prompt, negative_prior_prompt)?.image_embeds,
            FusionItem::Image(image) => image_embeds(
                models.image_encoder,
                models.image_processor,
                &[image],
                &device,
            )?,
        } * *weight;
        sum = Some(match sum {
            Some(sum) => sum + embeds,
            None => embeds,
        });
    }
    let negative = match (negative_prompt, negative_prior_prompt) {
        ("", None) => match zero {
            Some(zero) => zero,
            None => zero_image_embeds(models.image_encoder, 1, &device)?,
        },
        ("", Some(prior_negative)) => prior("", Some(prior_negative))?
            .negative_image_embeds
            .expect("a run with a negative prompt returns its embedding"),
        (negative, prior_negative) => prior(negative, prior_negative)?.image_embeds,
    };
    Ok((sum.expect("at least one item"), negative))
}
