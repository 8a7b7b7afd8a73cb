//! The decoder stage: image embedding (and, for 2.1, text) → latents → image, as diffusers'
//! `KandinskyV22Pipeline` (2.2) runs it. The guided denoising loop is the one the prior uses
//! too (`guidance.rs`).

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use kandinsky_clip::{MultilingualClip, TextTokenizer};
use kandinsky_common::tensors::f32_tensor;
use kandinsky_movq::MoVQ;
use kandinsky_unet::{Conditioning, UNet};

use crate::error::{PipelineError, Stage};
use crate::guidance::{LoopStep, guided_loop};
use crate::rng::{NoiseSource, draw};
use crate::scheduler::schedule::{BetaSchedule, NoiseSchedule};
use crate::scheduler::{Scheduler, SchedulerExt};

/// What the decoder's step callback receives (see [`guided_loop`]).
pub(crate) type DecoderStep<'a> = &'a mut dyn FnMut(LoopStep<'_, 4>) -> ControlFlow<()>;

/// Adapts a plain `(index, latents)` callback to a [`DecoderStep`] one.
fn plain<'a>(
    on_step: &'a mut dyn FnMut(usize, &Tensor<4>),
) -> impl FnMut(LoopStep<'_, 4>) -> ControlFlow<()> + 'a {
    move |step| {
        on_step(step.index, step.latents);
        ControlFlow::Continue(())
    }
}

/// Latent height and width for an image of `height × width` pixels: each rounded up to a
/// multiple of `scale²`, divided by `scale` (diffusers `downscale_height_and_width`; 512 → 64,
/// 500 → 64 and so a 512-pixel image, which is not cropped).
pub fn latent_size(height: usize, width: usize, scale: usize) -> (usize, usize) {
    let s2 = scale * scale;
    (height.div_ceil(s2) * scale, width.div_ceil(s2) * scale)
}

/// Options of a decoder run.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderOptions {
    /// Requested image height in pixels (rounded up to a multiple of 64 for the published MoVQ).
    pub height: usize,
    /// Requested image width in pixels.
    pub width: usize,
    /// Denoising steps (100 in the reference pipelines).
    pub steps: usize,
    /// Classifier-free guidance scale; ≤ 1 turns guidance off (4.0 in the reference).
    pub guidance_scale: f64,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self {
            height: 512,
            width: 512,
            steps: 100,
            guidance_scale: 4.0,
        }
    }
}

/// Where the decoder's latents start.
// Built once per generation and consumed at once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DecoderStart {
    /// Noise (text-to-image): fresh from the generator, or these latents (B, 4, h, w).
    Noise(Option<Tensor<4>>),
    /// Image-to-image: the source images (B, 3, 8h, 8w) in [−1, 1] (see
    /// [`Image::to_tensor`](crate::Image::to_tensor)), encoded by the MoVQ and noised to
    /// `strength` ∈ (0, 1]: only the last ⌊steps · strength⌋ steps run, as the reference's
    /// `get_timesteps` (from the scheduler's [`first_index`](crate::scheduler::Scheduler::first_index):
    /// a sampler of order 2 skips both evaluations of each step, where diffusers' 2.2 pipeline
    /// would start mid-step). 2.2 noises with the decoder's scheduler at the first step run; 2.1, as
    /// its reference pipeline, with the original repo's linear schedule (β 0.0001–0.02) at
    /// t = ⌊1000 · strength⌋ − 2 (for a sigma-parameterised sampler, the same noise level as
    /// x₀ + σ·ε).
    Image {
        /// Source images in [−1, 1].
        image: Tensor<4>,
        /// How much of the schedule to run, in (0, 1].
        strength: f64,
    },
    /// Inpainting with an inpainting UNet (9 input channels): noise (or these latents), with
    /// the source images (B, 3, 8h, 8w) in [−1, 1] and `keep` masks (B, 1, 8h, 8w), 1 = keep,
    /// 0 = repaint (see [`Image::to_keep_mask`](crate::Image::to_keep_mask)). As the reference:
    /// the mask is brought to the latent size (nearest), its keep region eroded by one latent
    /// pixel towards the up, left, up-left, down, right and down-right neighbours of each
    /// repainted pixel, and the UNet sees [latents, source latents · mask, mask]. 2.2 also pastes
    /// the source latents (noised to the next timestep) into the kept region after every step
    /// and the clean source after the last; 2.1 does not. (The 2.2 reference pastes the first
    /// image's source into every image of a batch; here each image gets its own.)
    Inpaint {
        /// Source images in [−1, 1].
        image: Tensor<4>,
        /// 1 where the image is kept, 0 where it is repainted.
        keep: Tensor<4>,
        /// Initial latents instead of fresh noise.
        latents: Option<Tensor<4>>,
    },
}

impl From<Option<Tensor<4>>> for DecoderStart {
    fn from(latents: Option<Tensor<4>>) -> Self {
        DecoderStart::Noise(latents)
    }
}

/// How image-to-image noises its source latents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noising {
    /// With the decoder's scheduler (2.2).
    Scheduler,
    /// With the original 2.1 repo's linear schedule at ⌊1000 · strength⌋ − 2.
    Kandinsky21,
}

/// The first timestep index that image-to-image runs: steps − min(⌊steps · strength⌋, steps).
pub fn image_start_index(steps: usize, strength: f64) -> Result<usize, PipelineError> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(PipelineError::invalid(
            "strength",
            strength,
            "a value in (0, 1]",
        ));
    }
    let run = ((steps as f64 * strength).floor() as usize).min(steps);
    if run == 0 {
        return Err(PipelineError::invalid(
            "strength",
            strength,
            format!(
                "at least 1/{steps} (a strength of {strength} of {steps} steps runs no step: raise the strength or the steps)"
            ),
        ));
    }
    Ok(steps - run)
}

/// The initial latents: the caller's (checked against the expected shape) or fresh noise,
/// times the scheduler's initial sigma.
fn initial_latents(
    latents: Option<Tensor<4>>,
    shape: [usize; 4],
    scheduler: &dyn Scheduler,
    noise: &mut dyn NoiseSource,
    device: &Device,
) -> Result<Tensor<4>, PipelineError> {
    let latents = match latents {
        Some(l) if l.dims() != shape => {
            return Err(PipelineError::shape("initial latents", &l.dims(), &shape));
        }
        Some(l) => l,
        None => draw(noise, shape, device)?,
    };
    Ok(latents * scheduler.init_noise_sigma())
}

fn check_embeds(image_embeds: &Tensor<2>, negative: &Tensor<2>) -> Result<(), PipelineError> {
    if negative.dims() != image_embeds.dims() {
        return Err(PipelineError::shape(
            "negative image embeddings",
            &negative.dims(),
            &image_embeds.dims(),
        ));
    }
    Ok(())
}

/// The models a decoder runs: the UNet and the MoVQ, and for 2.1 the MultilingualCLIP and its
/// tokenizer.
#[derive(Clone, Copy)]
pub(crate) struct DecoderModels<'a> {
    pub unet: &'a UNet,
    pub movq: &'a MoVQ,
    pub text: Option<(&'a MultilingualClip, &'a TextTokenizer)>,
}

/// What a decoder run decodes.
pub(crate) struct DecoderInputs<'a> {
    /// The prompts (read by the 2.1 decoder only), one per image.
    pub prompts: &'a [&'a str],
    /// The negative prompts (2.1; else "").
    pub negative_prompts: Option<&'a [&'a str]>,
    pub image_embeds: Tensor<2>,
    pub negative_image_embeds: Tensor<2>,
    /// The ControlNet hint (B, 3, 8h, 8w) in [0, 1].
    pub hint: Option<Tensor<4>>,
    pub start: DecoderStart,
}

/// Runs the Kandinsky 2.1 decoder: `prompts` (and `negative_prompts`, else "") through the
/// MultilingualCLIP, then denoising as [`decode_v22`] with the text hidden states as context and
/// the pooled text embedding beside the image embedding, then the MoVQ. Returns the image
/// (B, 3, 8h, 8w) in about [−1, 1].
#[allow(clippy::too_many_arguments)]
pub fn decode_v21(
    unet: &UNet,
    movq: &MoVQ,
    text_encoder: &MultilingualClip,
    tokenizer: &TextTokenizer,
    scheduler: &mut dyn Scheduler,
    prompts: &[&str],
    negative_prompts: Option<&[&str]>,
    image_embeds: Tensor<2>,
    negative_image_embeds: Tensor<2>,
    start: DecoderStart,
    options: &DecoderOptions,
    noise: &mut dyn NoiseSource,
    on_step: &mut dyn FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>, PipelineError> {
    let models = DecoderModels {
        unet,
        movq,
        text: Some((text_encoder, tokenizer)),
    };
    let inputs = DecoderInputs {
        prompts,
        negative_prompts,
        image_embeds,
        negative_image_embeds,
        hint: None,
        start,
    };
    run_decoder(
        models,
        scheduler,
        inputs,
        options,
        noise,
        &mut plain(on_step),
    )
}

/// Runs the Kandinsky 2.2 decoder: denoises from `start` (noise of the size [`latent_size`]
/// gives, given latents, or a source image for image-to-image) guided by `image_embeds` against
/// `negative_image_embeds` (both (B, E)), then decodes with the MoVQ.
/// Returns the image (B, 3, 8h, 8w) in about [−1, 1].
#[allow(clippy::too_many_arguments)]
pub fn decode_v22(
    unet: &UNet,
    movq: &MoVQ,
    scheduler: &mut dyn Scheduler,
    image_embeds: Tensor<2>,
    negative_image_embeds: Tensor<2>,
    start: DecoderStart,
    options: &DecoderOptions,
    noise: &mut dyn NoiseSource,
    on_step: &mut dyn FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>, PipelineError> {
    decode_v22_hint(
        unet,
        movq,
        scheduler,
        image_embeds,
        negative_image_embeds,
        None,
        start,
        options,
        noise,
        on_step,
    )
}

/// [`decode_v22`] with a ControlNet hint for the ControlNet-depth UNet: `hint` (B, 3, 8h, 8w)
/// in [0, 1] at the output resolution (e.g. a depth map repeated on 3 channels), the same for
/// both guidance halves, as `KandinskyV22ControlnetPipeline` (text-to-image) and
/// `KandinskyV22ControlnetImg2ImgPipeline` (with [`DecoderStart::Image`]).
#[allow(clippy::too_many_arguments)]
pub fn decode_v22_hint(
    unet: &UNet,
    movq: &MoVQ,
    scheduler: &mut dyn Scheduler,
    image_embeds: Tensor<2>,
    negative_image_embeds: Tensor<2>,
    hint: Option<Tensor<4>>,
    start: DecoderStart,
    options: &DecoderOptions,
    noise: &mut dyn NoiseSource,
    on_step: &mut dyn FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>, PipelineError> {
    let models = DecoderModels {
        unet,
        movq,
        text: None,
    };
    let inputs = DecoderInputs {
        prompts: &[],
        negative_prompts: None,
        image_embeds,
        negative_image_embeds,
        hint,
        start,
    };
    run_decoder(
        models,
        scheduler,
        inputs,
        options,
        noise,
        &mut plain(on_step),
    )
}

/// The 2.1 conditioning: the prompts through the MultilingualCLIP (padded to 77 tokens, as the
/// 2.1 pipeline does), the pooled text embedding beside the image embedding.
fn text_image_conditioning(
    (text_encoder, tokenizer): (&MultilingualClip, &TextTokenizer),
    prompts: &[&str],
    negative_prompts: Option<&[&str]>,
    embeds: Tensor<2>,
    guided: bool,
) -> Result<Conditioning, PipelineError> {
    let b = embeds.dims()[0] / if guided { 2 } else { 1 };
    if prompts.len() != b {
        return Err(PipelineError::Count {
            what: "prompts for the 2.1 decoder",
            found: prompts.len(),
            expected: b,
        });
    }
    let negatives: Vec<&str> = match negative_prompts {
        Some(n) if n.len() != b => {
            return Err(PipelineError::Count {
                what: "negative prompts",
                found: n.len(),
                expected: b,
            });
        }
        Some(n) => n.to_vec(),
        None => vec![""; b],
    };
    let device: Device = embeds.device();
    let tokenizer = tokenizer.clone().with_max_length(77)?;
    let encode = |texts: &[&str]| -> Result<(Tensor<2>, Tensor<3>), PipelineError> {
        let tokens = tokenizer.encode(texts)?;
        let out = text_encoder.forward(tokens.ids_tensor(&device), tokens.mask_tensor(&device))?;
        Ok((out.pooled, out.hidden_states))
    };
    let (pooled, hidden) = encode(prompts)?;
    let (pooled, hidden) = if guided {
        let (neg_pooled, neg_hidden) = encode(&negatives)?;
        (
            Tensor::cat(vec![neg_pooled, pooled], 0),
            Tensor::cat(vec![neg_hidden, hidden], 0),
        )
    } else {
        (pooled, hidden)
    };
    Ok(Conditioning::TextImage {
        text_hidden_states: hidden,
        text_embeds: pooled,
        image_embeds: embeds,
    })
}

/// Runs a decoder (2.1 when `models.text` is there, else 2.2): the conditioning, the starting
/// latents, the guided loop, the MoVQ decode. Returns the image (B, 3, 8h, 8w) in about
/// [−1, 1].
pub(crate) fn run_decoder(
    models: DecoderModels<'_>,
    scheduler: &mut dyn Scheduler,
    inputs: DecoderInputs<'_>,
    options: &DecoderOptions,
    noise: &mut dyn NoiseSource,
    on_step: DecoderStep<'_>,
) -> Result<Tensor<4>, PipelineError> {
    let DecoderInputs {
        prompts,
        negative_prompts,
        image_embeds,
        negative_image_embeds,
        hint,
        start,
    } = inputs;
    check_embeds(&image_embeds, &negative_image_embeds)?;
    let b = image_embeds.dims()[0];
    let guided = options.guidance_scale > 1.0;
    let embeds = if guided {
        Tensor::cat(vec![negative_image_embeds, image_embeds], 0)
    } else {
        image_embeds
    };
    let scale = models.movq.config().scale_factor();
    let conditioning = match (models.text, hint) {
        (Some(text), None) => {
            text_image_conditioning(text, prompts, negative_prompts, embeds, guided)?
        }
        (Some(_), Some(_)) => {
            return Err(PipelineError::UnsupportedMode {
                mode: "a ControlNet hint",
                needs: "the 2.2 ControlNet-depth decoder".into(),
                found: "this is a 2.1 decoder".into(),
            });
        }
        (None, None) => Conditioning::Image {
            image_embeds: embeds,
        },
        (None, Some(hint)) => {
            let (h, w) = latent_size(options.height, options.width, scale);
            let expected = [b, 3, h * scale, w * scale];
            if hint.dims() != expected {
                return Err(PipelineError::shape("a hint", &hint.dims(), &expected));
            }
            let hint = if guided {
                Tensor::cat(vec![hint.clone(), hint], 0)
            } else {
                hint
            };
            Conditioning::ImageHint {
                image_embeds: embeds,
                hint,
            }
        }
    };
    let noising = match models.text {
        Some(_) => Noising::Kandinsky21,
        None => Noising::Scheduler,
    };
    decode_with(
        models.unet,
        models.movq,
        scheduler,
        conditioning,
        b,
        (start, noising),
        options,
        noise,
        on_step,
    )
}

/// The keep mask (B, 1, 8h, 8w) brought to the latent size (h, w) by nearest sampling (the
/// top-left pixel of each 8×8 cell, as `F.interpolate(mode="nearest")`), then eroded as the
/// reference's `prepare_mask`.
fn latent_keep_mask(keep: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [b, _, height, width] = keep.dims();
    let (sy, sx) = (height / h, width / w);
    let m = keep
        .reshape([b, h, sy, w, sx])
        .slice([0..b, 0..h, 0..1, 0..w, 0..1])
        .reshape([b, 1, h, w]);
    // Repainted pixels, padded by one zero on every side.
    let repaint = m.clone().neg() + 1.0;
    let padded = Tensor::zeros([b, 1, h + 2, w + 2], &m.device())
        .slice_assign([0..b, 0..1, 1..h + 1, 1..w + 1], repaint);
    // A pixel stops being kept when a repainted pixel lies at one of these offsets from it
    // (the reference zeroes the up, left, up-left, down, right and down-right neighbours of each
    // repainted pixel; not the other diagonal).
    let offsets: [(isize, isize); 7] = [(0, 0), (1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (-1, -1)];
    let near = offsets
        .iter()
        .map(|&(dy, dx)| {
            let y = (1 + dy) as usize;
            let x = (1 + dx) as usize;
            padded.clone().slice([0..b, 0..1, y..y + h, x..x + w])
        })
        .reduce(|a, b| a.max_pair(b))
        .expect("seven offsets");
    near.neg() + 1.0
}

/// The part both decoders share: the starting latents for `batch` images of the requested size,
/// the guided loop with `conditioning` (already batched as [negative, positive] when
/// guiding), the MoVQ decode.
#[allow(clippy::too_many_arguments)]
fn decode_with(
    unet: &UNet,
    movq: &MoVQ,
    scheduler: &mut dyn Scheduler,
    conditioning: Conditioning,
    batch: usize,
    (start, noising): (DecoderStart, Noising),
    options: &DecoderOptions,
    noise: &mut dyn NoiseSource,
    on_step: DecoderStep<'_>,
) -> Result<Tensor<4>, PipelineError> {
    let device = unet.device();
    let scale = movq.config().scale_factor();
    let (h, w) = latent_size(options.height, options.width, scale);
    let c = movq.config().latent_channels;
    let in_channels = unet.config().sample_channels();
    let inpainting = matches!(start, DecoderStart::Inpaint { .. });
    if !inpainting && in_channels != c {
        return Err(PipelineError::UnsupportedMode {
            mode: "a decoder without an image and a mask",
            needs: format!("a UNet of {c} input channels (the MoVQ's latents)"),
            found: if in_channels == 2 * c + 1 {
                "this is an inpainting UNet: give an image and a mask (inpainting)".into()
            } else {
                format!("this UNet takes {in_channels}")
            },
        });
    }
    scheduler.set_timesteps(options.steps)?;
    let shape = [batch, c, h, w];
    let expected_image = [batch, 3, h * scale, w * scale];
    let check_image = |name: &'static str, found: [usize; 4], expected: [usize; 4]| {
        if found == expected {
            Ok(())
        } else {
            Err(PipelineError::shape(name, &found, &expected))
        }
    };
    // Inpainting: the source latents, the eroded keep mask, and the UNet's extra channels.
    let mut inpaint: Option<(Tensor<4>, Tensor<4>)> = None;
    let (first, latents) = match start {
        DecoderStart::Noise(latents) => (
            0,
            initial_latents(latents, shape, scheduler, noise, &device)?,
        ),
        DecoderStart::Inpaint {
            image,
            keep,
            latents,
        } => {
            check_image("source images", image.dims(), expected_image)?;
            check_image("keep masks", keep.dims(), [batch, 1, h * scale, w * scale])?;
            if in_channels != 2 * c + 1 {
                return Err(PipelineError::UnsupportedMode {
                    mode: "inpainting",
                    needs: format!("an inpainting UNet ({} input channels)", 2 * c + 1),
                    found: format!("this one takes {in_channels}"),
                });
            }
            let source = movq.encode(image)?;
            let keep = latent_keep_mask(keep, h, w);
            inpaint = Some((source, keep));
            (
                0,
                initial_latents(latents, shape, scheduler, noise, &device)?,
            )
        }
        DecoderStart::Image { image, strength } => {
            let first = scheduler.first_index(image_start_index(options.steps, strength)?);
            check_image("source images", image.dims(), expected_image)?;
            let source = movq.encode(image)?;
            let eps = draw(noise, shape, &device)?;
            let noised = match noising {
                Noising::Scheduler => scheduler.add_noise_nd(source, eps, first)?,
                Noising::Kandinsky21 => {
                    let t = (1000.0 * strength) as i64 - 2;
                    if t < 0 {
                        return Err(PipelineError::invalid(
                            "strength",
                            strength,
                            "at least 0.002 for 2.1 image-to-image",
                        ));
                    }
                    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 0.0001, 0.02);
                    let a = schedule.alpha_cumprod(t, 1.0) as f32;
                    if scheduler.preserves_variance() {
                        let source = source * scheduler.init_noise_sigma();
                        source * a.sqrt() + eps * (1.0 - a).sqrt()
                    } else {
                        // The same noise level for a sigma-parameterised sampler:
                        // x = x₀ + σ·ε with σ = √((1 − ᾱ)/ᾱ).
                        source + eps * ((1.0 - a) / a).sqrt()
                    }
                }
            };
            (first, noised)
        }
    };
    let extra = inpaint.as_ref().map(|(source, keep)| {
        let extra = Tensor::cat(vec![source.clone() * keep.clone(), keep.clone()], 1);
        if options.guidance_scale > 1.0 {
            Tensor::cat(vec![extra.clone(), extra], 0)
        } else {
            extra
        }
    });
    let mut model = |input: Tensor<4>, t: f64| -> Result<Tensor<4>, PipelineError> {
        let timestep = f32_tensor::<1>(TensorData::from([t as f32]), &device);
        let input = match &extra {
            Some(extra) => Tensor::cat(vec![input, extra.clone()], 1),
            None => input,
        };
        Ok(unet.forward(input, timestep, conditioning.clone())?)
    };
    // 2.2 inpainting pastes the kept region of the source (noised to the next timestep with the
    // initial noise) after every step, and the clean source after the last. The reference
    // pastes the first image's source and mask into every image of a batch; each image gets
    // its own here (the same for a batch of one source).
    let paste = match (&inpaint, noising) {
        (Some((source, keep)), Noising::Scheduler) => {
            Some((source.clone(), keep.clone(), latents.clone()))
        }
        _ => None,
    };
    let len = scheduler.timesteps().len();
    let mut after_step = |i: usize,
                          latents: Tensor<4>,
                          scheduler: &dyn Scheduler|
     -> Result<Tensor<4>, PipelineError> {
        let Some((source, keep, initial)) = &paste else {
            return Ok(latents);
        };
        let proper = match i + 1 < len {
            true => scheduler.add_noise_nd(source.clone(), initial.clone(), i + 1)?,
            false => source.clone(),
        };
        Ok(keep.clone() * proper + (keep.clone().neg() + 1.0) * latents)
    };
    let latents = guided_loop(
        Stage::Decoder,
        &mut model,
        scheduler,
        first,
        latents,
        options.guidance_scale,
        noise,
        &mut after_step,
        on_step,
    )?;
    let pixels = movq.decode(latents, true)?;
    // As in the guided loop: one scalar read, against a whole decode.
    if !pixels.clone().sum().into_scalar::<f32>().is_finite() {
        return Err(PipelineError::NonFiniteImage);
    }
    Ok(pixels)
}
