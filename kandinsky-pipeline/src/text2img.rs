//! Text-to-image from the published diffusers folders: a prior repo (`kandinsky-2-2-prior`,
//! `-2-1-prior`) and a decoder repo (`kandinsky-2-2-decoder`, `kandinsky-2-1`), each with its
//! `model_index.json` and one folder per component.
//!
//! The stages load one at a time and are dropped after use, so peak memory is about the largest
//! stage (the prior with its text encoder, or the UNet with the MoVQ), not the sum.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::tensor::{Device, Tensor};
use kandinsky_clip::{
    ClipImageProcessor, ClipTextModel, ClipVisionModel, MultilingualClip, Resample, TextTokenizer,
};
use kandinsky_movq::MoVQ;
use kandinsky_prior::PriorTransformer;
use kandinsky_unet::UNet;
use kandinsky_unet::config::AdditionEmbedType;

use crate::decoder::{
    DecoderOptions, DecoderStart, decode_v21, decode_v22_hint, image_start_index, latent_size,
    to_rgb8,
};
use crate::error::PipelineError;
use crate::fusion::{FusionItem, PriorModels, interpolate};
pub use crate::image::Image;
use crate::prior::{PriorOptions, PriorStart, image_embeds, run_prior, zero_image_embeds};
use crate::rng::Rng;
use crate::scheduler::{Scheduler, load_scheduler};

/// What a generation is doing, reported to the `progress` callback of `generate_with_progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Loading a component (its folder name: `prior`, `unet`, …).
    Loading(&'static str),
    /// A prior step finished (1-based).
    PriorStep {
        /// Steps done.
        step: usize,
        /// Steps in all.
        of: usize,
    },
    /// A decoder step finished (1-based).
    DecoderStep {
        /// Steps done.
        step: usize,
        /// Steps in all.
        of: usize,
    },
    /// Decoding the latents to pixels with the MoVQ.
    Decoding,
}

/// Options of a text-to-image run (the reference pipelines' defaults; seed 0).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Text2ImageOptions {
    /// The prior's steps and guidance (25, 4.0).
    pub prior: PriorOptions,
    /// The decoder's size, steps and guidance (512×512, 100, 4.0).
    pub decoder: DecoderOptions,
    /// Seed of the portable generator ([`Rng`]).
    pub seed: u64,
}

/// Checks that `dir` is a diffusers pipeline folder with the given components.
fn pipeline_folder(dir: &Path, components: &[&str]) -> Result<PathBuf, PipelineError> {
    let index = dir.join("model_index.json");
    if !index.is_file() {
        return Err(PipelineError::MissingComponent {
            dir: dir.to_path_buf(),
            component: "model_index.json".into(),
        });
    }
    for component in components {
        if !dir.join(component).is_dir() {
            return Err(PipelineError::MissingComponent {
                dir: dir.to_path_buf(),
                component: (*component).into(),
            });
        }
    }
    Ok(dir.to_path_buf())
}

/// The prior stage over a prior repo (`kandinsky-2-1-prior` or `-2-2-prior`): prompts (or a
/// fusion of prompts and images, or an image and a prompt) to image embeddings for the decoder.
/// The text encoder, tokenizer, prior and scheduler load for each call and are dropped after
/// it; the zero-image negative embedding is computed once with the image encoder and kept (or
/// supplied, in which case text-to-image needs no `image_encoder`). Reached through
/// [`Kandinsky22::prior`] or [`Kandinsky21::prior`].
#[derive(Debug)]
pub struct PriorStage {
    dir: PathBuf,
    device: Device,
    zero_embed: Mutex<Option<Tensor<2>>>,
}

impl PriorStage {
    fn new(dir: &Path, device: &Device) -> Result<Self, PipelineError> {
        let components = ["prior", "text_encoder", "tokenizer", "scheduler"];
        Ok(Self {
            dir: pipeline_folder(dir, &components)?,
            device: device.clone(),
            zero_embed: Mutex::new(None),
        })
    }

    /// The zero-image negative embedding, computed with the image encoder on first use only.
    fn zero_embed(&self, progress: &mut dyn FnMut(Progress)) -> Result<Tensor<2>, PipelineError> {
        let mut cached = self.zero_embed.lock().expect("not poisoned");
        if let Some(embed) = cached.as_ref() {
            return Ok(embed.clone());
        }
        let folder = self.dir.join("image_encoder");
        if !folder.is_dir() {
            return Err(PipelineError::MissingComponent {
                dir: self.dir.clone(),
                component: "image_encoder (needed for the zero-image embedding)".into(),
            });
        }
        progress(Progress::Loading("image_encoder"));
        let image_encoder = ClipVisionModel::load(&folder, &self.device)?;
        let embed = zero_image_embeds(&image_encoder, 1, &self.device)?;
        *cached = Some(embed.clone());
        Ok(embed)
    }

    /// The zero-image negative embedding (1, E) if it has been computed or supplied.
    pub fn zero_image_embeds(&self) -> Option<Tensor<2>> {
        self.zero_embed.lock().expect("not poisoned").clone()
    }

    /// Supplies the zero-image negative embedding (1, E), e.g. one computed by an earlier run
    /// and kept on disk, so that the prior folder's `image_encoder` is neither needed nor loaded
    /// for text-to-image.
    pub fn set_zero_image_embeds(&self, embed: Tensor<2>) -> Result<(), PipelineError> {
        let [rows, _] = embed.dims();
        if rows != 1 {
            return Err(PipelineError::Mismatch(format!(
                "a zero-image embedding is one row (1, E), found {rows} rows"
            )));
        }
        *self.zero_embed.lock().expect("not poisoned") = Some(embed.to_device(&self.device));
        Ok(())
    }

    /// The negative prompts' embeddings, else the zero-image embedding for `batch` images.
    fn negative_or_zero(
        &self,
        negative: Option<Tensor<2>>,
        batch: usize,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Tensor<2>, PipelineError> {
        match negative {
            Some(negative) => Ok(negative),
            None => {
                let zero = self.zero_embed(progress)?;
                let e = zero.dims()[1];
                Ok(zero.expand([batch, e]))
            }
        }
    }

    /// Image embeddings for `prompts` and their negatives (the negative prompts' embeddings, or
    /// the zero-image embedding).
    pub fn embed(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &PriorOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let of = options.steps;
        let out = {
            let (prior, text_encoder, tokenizer, mut scheduler) = self.load_text_parts(progress)?;
            run_prior(
                &prior,
                &text_encoder,
                &tokenizer,
                scheduler.as_mut(),
                prompts,
                negative_prompts,
                PriorStart::Noise(None),
                options,
                rng,
                &mut |i, _| progress(Progress::PriorStep { step: i + 1, of }),
            )?
            // the prior and its text encoder are dropped here
        };
        let negative = self.negative_or_zero(out.negative_image_embeds, prompts.len(), progress)?;
        Ok((out.image_embeds, negative))
    }
}

impl PriorStage {
    /// The prior, its text encoder and tokenizer, the scheduler.
    fn load_text_parts(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<
        (
            PriorTransformer,
            ClipTextModel,
            TextTokenizer,
            Box<dyn Scheduler>,
        ),
        PipelineError,
    > {
        let dir = &self.dir;
        progress(Progress::Loading("prior"));
        Ok((
            PriorTransformer::load(&dir.join("prior"), &self.device)?,
            ClipTextModel::load(&dir.join("text_encoder"), &self.device)?,
            TextTokenizer::from_dir(&dir.join("tokenizer"))?,
            load_scheduler(&dir.join("scheduler/scheduler_config.json"))?,
        ))
    }

    /// The CLIP image encoder and its preprocessing.
    fn load_image_parts(
        &self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(ClipVisionModel, ClipImageProcessor), PipelineError> {
        for component in ["image_encoder", "image_processor"] {
            if !self.dir.join(component).is_dir() {
                return Err(PipelineError::MissingComponent {
                    dir: self.dir.clone(),
                    component: component.into(),
                });
            }
        }
        progress(Progress::Loading("image_encoder"));
        let processor = ClipImageProcessor::from_file(
            &self.dir.join("image_processor/preprocessor_config.json"),
        )
        .map_err(kandinsky_clip::ClipError::from)?;
        Ok((
            ClipVisionModel::load(&self.dir.join("image_encoder"), &self.device)?,
            processor,
        ))
    }

    /// Image fusion and variations: the weighted sum of the embeddings of prompts (through the
    /// prior) and images (through the prior repo's CLIP image encoder), weights used as given;
    /// the negative is the zero-image embedding, or the prior's embedding of a non-empty
    /// `negative_prompt` (the reference's `interpolate`). One image with weight 1 is an image
    /// variation. Returns (image_embeds, negative), each (1, E), for the decoders.
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use kandinsky_pipeline::{FusionItem, Image, Kandinsky22, PriorOptions, Rng};
    ///
    /// let device = Device::flex();
    /// let pipeline = Kandinsky22::new(
    ///     "kandinsky-2-2-prior".as_ref(),
    ///     "kandinsky-2-2-decoder".as_ref(),
    ///     &device,
    /// )?;
    /// let cat = Image::open("cat.png".as_ref())?;
    /// let items = [(FusionItem::Prompt("a starry night"), 0.4), (FusionItem::Image(&cat), 0.6)];
    /// let mut rng = Rng::new(1);
    /// let (embeds, negative) =
    ///     pipeline.prior().fuse(&items, "", &PriorOptions::default(), &mut rng, &mut |_| {})?;
    /// # Ok::<(), kandinsky_pipeline::PipelineError>(())
    /// ```
    pub fn fuse(
        &self,
        items: &[(FusionItem<'_>, f64)],
        negative_prompt: &str,
        options: &PriorOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let (prior, text_encoder, tokenizer, mut scheduler) = self.load_text_parts(progress)?;
        let (image_encoder, image_processor) = self.load_image_parts(progress)?;
        let models = PriorModels {
            prior: &prior,
            text_encoder: &text_encoder,
            tokenizer: &tokenizer,
            image_encoder: &image_encoder,
            image_processor: &image_processor,
        };
        interpolate(
            models,
            scheduler.as_mut(),
            items,
            negative_prompt,
            None,
            options,
            rng,
        )
    }

    /// Embedding-to-embedding (`KandinskyV22PriorEmb2EmbPipeline`): the CLIP embedding of
    /// `image`, noised to `strength` (0.3 in the reference) and re-sampled by the prior guided
    /// by each prompt. Returns (image_embeds, negative) for the decoders
    /// (`Kandinsky22::decode`, `Kandinsky21::decode`).
    #[allow(clippy::too_many_arguments)]
    pub fn emb2emb(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        image: &Image,
        strength: f64,
        options: &PriorOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let source = {
            let (image_encoder, processor) = self.load_image_parts(progress)?;
            let embeds = image_embeds(&image_encoder, &processor, &[image], &self.device)?;
            if negative_prompts.is_none() {
                self.zero_embed(progress)?;
            }
            let e = embeds.dims()[1];
            embeds.expand([prompts.len(), e])
        };
        let (prior, text_encoder, tokenizer, mut scheduler) = self.load_text_parts(progress)?;
        let of = options.steps - image_start_index(options.steps, strength)?;
        let mut done = 0;
        let out = run_prior(
            &prior,
            &text_encoder,
            &tokenizer,
            scheduler.as_mut(),
            prompts,
            negative_prompts,
            PriorStart::Embedding {
                image_embeds: source,
                strength,
            },
            options,
            rng,
            &mut |_, _| {
                done += 1;
                progress(Progress::PriorStep { step: done, of })
            },
        )?;
        let negative = self.negative_or_zero(out.negative_image_embeds, prompts.len(), progress)?;
        Ok((out.image_embeds, negative))
    }

    /// Loads the decoder's UNet and checks that it takes this prior's embeddings.
    fn load_unet(
        &self,
        decoder_dir: &Path,
        image_embeds: &Tensor<2>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<UNet, PipelineError> {
        progress(Progress::Loading("unet"));
        let unet = UNet::load(&decoder_dir.join("unet"), &self.device)?;
        check_widths(&unet, image_embeds, &self.dir, decoder_dir)?;
        Ok(unet)
    }
}

/// What the decoder does with the embeddings.
#[derive(Debug, Clone, Copy)]
pub enum DecoderMode<'a> {
    /// Text-to-image (or fusion, variations): from noise.
    TextToImage,
    /// Image-to-image: from `image` noised to `strength` ∈ (0, 1] (0.3 in the reference).
    ImageToImage {
        /// The source image (resized to the output size).
        image: &'a Image,
        /// How much of the schedule runs.
        strength: f64,
    },
    /// Inpainting with an inpainting decoder (`kandinsky-2-2-decoder-inpaint`, or
    /// `kandinsky-2-1-inpaint`): repaints where `mask` is white (luma ≥ 0.5).
    Inpaint {
        /// The source image.
        image: &'a Image,
        /// White = repaint, black = keep; resized to the output size.
        mask: &'a Image,
    },
}

/// The output size in pixels: the requested one rounded up to the MoVQ's multiple (64).
fn output_size(options: &DecoderOptions, scale: usize) -> (usize, usize) {
    let (h, w) = latent_size(options.height, options.width, scale);
    (w * scale, h * scale)
}

impl DecoderMode<'_> {
    /// The decoder's start for `batch` images of the output size.
    fn start(
        &self,
        batch: usize,
        options: &DecoderOptions,
        scale: usize,
        device: &Device,
    ) -> Result<DecoderStart, PipelineError> {
        let (width, height) = output_size(options, scale);
        let repeat = |t: Tensor<4>| t.repeat_dim(0, batch);
        Ok(match *self {
            DecoderMode::TextToImage => DecoderStart::Noise(None),
            DecoderMode::ImageToImage { image, strength } => DecoderStart::Image {
                image: repeat(image.to_tensor(width, height, device)?),
                strength,
            },
            DecoderMode::Inpaint { image, mask } => DecoderStart::Inpaint {
                image: repeat(image.to_tensor(width, height, device)?),
                keep: repeat(mask.to_keep_mask(width, height, device)?),
                latents: None,
            },
        })
    }
}

fn check_size(options: &DecoderOptions) -> Result<(), PipelineError> {
    if options.height == 0 || options.width == 0 {
        return Err(PipelineError::Mismatch(format!(
            "invalid image size {}×{}: both sides must be positive",
            options.width, options.height
        )));
    }
    Ok(())
}

/// The UNet's image-embedding width must be the prior's output width.
fn check_widths(
    unet: &UNet,
    embeds: &Tensor<2>,
    prior: &Path,
    decoder: &Path,
) -> Result<(), PipelineError> {
    let config = unet.config();
    let expected = match config.addition_embed_type {
        AdditionEmbedType::TextImage => config.cross_attention_dim,
        _ => config.encoder_hid_dim,
    };
    let found = embeds.dims()[1];
    if found != expected {
        return Err(PipelineError::Mismatch(format!(
            "the prior makes image embeddings of width {found}, the decoder UNet takes {expected}: \
             {} and {} are not a matching prior and decoder",
            prior.display(),
            decoder.display()
        )));
    }
    Ok(())
}

/// Reports decoder steps (counted from 1 over the `of` steps that run, the last `of` of
/// `total`), then the decoding, to `progress`.
fn decoder_progress(
    total: usize,
    of: usize,
    progress: &mut dyn FnMut(Progress),
) -> impl FnMut(usize, &Tensor<4>) + '_ {
    let skipped = total - of;
    move |i, _| {
        let step = i + 1 - skipped;
        progress(Progress::DecoderStep { step, of });
        if step == of {
            progress(Progress::Decoding);
        }
    }
}

fn images(image: Tensor<4>) -> Result<Vec<Image>, PipelineError> {
    let [_, _, height, width] = image.dims();
    Ok(to_rgb8(image)?
        .into_iter()
        .map(|rgb| Image { width, height, rgb })
        .collect())
}

/// Kandinsky 2.2 text-to-image over a prior repo and a decoder repo.
///
/// ```no_run
/// use burn::tensor::Device;
/// use kandinsky_pipeline::{Kandinsky22, Text2ImageOptions};
///
/// let device = Device::flex(); // or Device::cuda(0), Device::vulkan(..) with those features
/// let pipeline = Kandinsky22::new(
///     "kandinsky-2-2-prior".as_ref(),
///     "kandinsky-2-2-decoder".as_ref(),
///     &device,
/// )?;
/// let options = Text2ImageOptions { seed: 42, ..Default::default() };
/// let images = pipeline.generate(&["a red cat sitting on a windowsill"], None, &options)?;
/// images[0].save_png("cat.png".as_ref())?;
/// # Ok::<(), kandinsky_pipeline::PipelineError>(())
/// ```
#[derive(Debug)]
pub struct Kandinsky22 {
    prior: PriorStage,
    decoder_dir: PathBuf,
}

impl Kandinsky22 {
    /// Checks both folders; nothing is loaded until a generation.
    pub fn new(
        prior_repo: &Path,
        decoder_repo: &Path,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            prior: PriorStage::new(prior_repo, device)?,
            decoder_dir: pipeline_folder(decoder_repo, &["unet", "movq", "scheduler"])?,
        })
    }

    /// The prior stage (embeddings, fusion, emb2emb, the zero-image embedding).
    pub fn prior(&self) -> &PriorStage {
        &self.prior
    }

    /// Generates one image per prompt.
    pub fn generate(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &Text2ImageOptions,
    ) -> Result<Vec<Image>, PipelineError> {
        self.generate_with_progress(prompts, negative_prompts, options, &mut |_| {})
    }

    /// [`generate`](Self::generate), reporting what it is doing to `progress`.
    pub fn generate_with_progress(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &Text2ImageOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Image>, PipelineError> {
        check_size(&options.decoder)?;
        let mut rng = Rng::new(options.seed);
        let (embeds, negative) = self.prior.embed(
            prompts,
            negative_prompts,
            &options.prior,
            &mut rng,
            progress,
        )?;
        self.decode(
            embeds,
            negative,
            DecoderMode::TextToImage,
            None,
            &options.decoder,
            &mut rng,
            progress,
        )
    }

    /// The decoder stage: one image per row of `image_embeds`, guided against `negative`
    /// (from [`embed`](Self::embed), [`fuse`](Self::fuse) or [`emb2emb`](Self::emb2emb)), in
    /// `mode`. `hint` is the ControlNet-depth decoder's hint (`kandinsky-2-2-controlnet-depth`):
    /// an image (e.g. a depth map) resized to the output size and scaled to [0, 1].
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use kandinsky_pipeline::{
    ///     DecoderMode, DecoderOptions, Image, Kandinsky22, PriorOptions, Rng,
    /// };
    ///
    /// let device = Device::flex();
    /// let photo = Image::open("photo.jpg".as_ref())?;
    /// let mut rng = Rng::new(7);
    /// let mut progress = |_| {};
    ///
    /// // Image-to-image.
    /// let pipeline = Kandinsky22::new(
    ///     "kandinsky-2-2-prior".as_ref(),
    ///     "kandinsky-2-2-decoder".as_ref(),
    ///     &device,
    /// )?;
    /// let (embeds, negative) =
    ///     pipeline.prior().embed(&["an oil painting"], None, &PriorOptions::default(), &mut rng, &mut progress)?;
    /// let mode = DecoderMode::ImageToImage { image: &photo, strength: 0.3 };
    /// let options = DecoderOptions::default();
    /// let out = pipeline.decode(embeds, negative, mode, None, &options, &mut rng, &mut progress)?;
    /// out[0].save_png("painting.png".as_ref())?;
    ///
    /// // Inpainting, with the inpainting decoder: white in the mask = repaint.
    /// let inpaint = Kandinsky22::new(
    ///     "kandinsky-2-2-prior".as_ref(),
    ///     "kandinsky-2-2-decoder-inpaint".as_ref(),
    ///     &device,
    /// )?;
    /// let mask = Image::open("mask.png".as_ref())?;
    /// let (embeds, negative) =
    ///     inpaint.prior().embed(&["a hat"], None, &PriorOptions::default(), &mut rng, &mut progress)?;
    /// let mode = DecoderMode::Inpaint { image: &photo, mask: &mask };
    /// let out = inpaint.decode(embeds, negative, mode, None, &options, &mut rng, &mut progress)?;
    ///
    /// // ControlNet-depth: a depth map as the hint.
    /// let controlnet = Kandinsky22::new(
    ///     "kandinsky-2-2-prior".as_ref(),
    ///     "kandinsky-2-2-controlnet-depth".as_ref(),
    ///     &device,
    /// )?;
    /// let depth = Image::open("depth.png".as_ref())?;
    /// let (embeds, negative) =
    ///     controlnet.prior().embed(&["a robot"], None, &PriorOptions::default(), &mut rng, &mut progress)?;
    /// let out = controlnet.decode(
    ///     embeds, negative, DecoderMode::TextToImage, Some(&depth), &options, &mut rng, &mut progress,
    /// )?;
    /// # Ok::<(), kandinsky_pipeline::PipelineError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        image_embeds: Tensor<2>,
        negative: Tensor<2>,
        mode: DecoderMode<'_>,
        hint: Option<&Image>,
        options: &DecoderOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Image>, PipelineError> {
        check_size(options)?;
        let dir = &self.decoder_dir;
        let device = &self.prior.device;
        let unet = self.prior.load_unet(dir, &image_embeds, progress)?;
        let movq = MoVQ::load(&dir.join("movq"), device)?;
        let mut scheduler = load_scheduler(&dir.join("scheduler/scheduler_config.json"))?;
        let batch = image_embeds.dims()[0];
        let scale = movq.config().scale_factor();
        let start = mode.start(batch, options, scale, device)?;
        let hint = match hint {
            Some(hint) => {
                let (width, height) = output_size(options, scale);
                let pixels = hint.resized(width, height, Resample::Bicubic, device)? / 255.0;
                Some(pixels.unsqueeze_dim::<4>(0).repeat_dim(0, batch))
            }
            None => None,
        };
        let of = steps_run(&mode, options)?;
        let image = decode_v22_hint(
            &unet,
            &movq,
            scheduler.as_mut(),
            image_embeds,
            negative,
            hint,
            start,
            options,
            rng,
            &mut decoder_progress(options.steps, of, progress),
        )?;
        images(image)
    }
}

/// How many decoder steps `mode` runs.
fn steps_run(mode: &DecoderMode<'_>, options: &DecoderOptions) -> Result<usize, PipelineError> {
    Ok(match mode {
        DecoderMode::ImageToImage { strength, .. } => {
            options.steps - image_start_index(options.steps, *strength)?
        }
        _ => options.steps,
    })
}

/// Kandinsky 2.1 text-to-image over a prior repo (`kandinsky-2-1-prior`) and a decoder repo
/// (`kandinsky-2-1`: MultilingualCLIP `text_encoder`, XLM-R `tokenizer`, `unet`, `movq`,
/// `scheduler`). The prompt goes to both the prior (CLIP) and the decoder (MultilingualCLIP, so
/// about 100 languages).
#[derive(Debug)]
pub struct Kandinsky21 {
    prior: PriorStage,
    decoder_dir: PathBuf,
}

impl Kandinsky21 {
    /// Checks both folders; nothing is loaded until a generation.
    pub fn new(
        prior_repo: &Path,
        decoder_repo: &Path,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        let components = ["text_encoder", "tokenizer", "unet", "movq", "scheduler"];
        Ok(Self {
            prior: PriorStage::new(prior_repo, device)?,
            decoder_dir: pipeline_folder(decoder_repo, &components)?,
        })
    }

    /// The prior stage (embeddings, fusion, emb2emb, the zero-image embedding).
    pub fn prior(&self) -> &PriorStage {
        &self.prior
    }

    /// Generates one image per prompt.
    pub fn generate(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &Text2ImageOptions,
    ) -> Result<Vec<Image>, PipelineError> {
        self.generate_with_progress(prompts, negative_prompts, options, &mut |_| {})
    }

    /// [`generate`](Self::generate), reporting what it is doing to `progress`.
    pub fn generate_with_progress(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &Text2ImageOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Image>, PipelineError> {
        check_size(&options.decoder)?;
        let mut rng = Rng::new(options.seed);
        let (embeds, negative) = self.prior.embed(
            prompts,
            negative_prompts,
            &options.prior,
            &mut rng,
            progress,
        )?;
        self.decode(
            prompts,
            negative_prompts,
            embeds,
            negative,
            DecoderMode::TextToImage,
            &options.decoder,
            &mut rng,
            progress,
        )
    }

    /// The decoder stage: one image per prompt (the decoder reads the prompts too, through its
    /// MultilingualCLIP), from `image_embeds` guided against `negative`, in `mode`.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        image_embeds: Tensor<2>,
        negative: Tensor<2>,
        mode: DecoderMode<'_>,
        options: &DecoderOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<Image>, PipelineError> {
        check_size(options)?;
        let dir = &self.decoder_dir;
        let device = &self.prior.device;
        let unet = self.prior.load_unet(dir, &image_embeds, progress)?;
        let text_encoder = MultilingualClip::load(&dir.join("text_encoder"), device)?;
        let tokenizer = TextTokenizer::from_dir(&dir.join("tokenizer"))?;
        let movq = MoVQ::load(&dir.join("movq"), device)?;
        let mut scheduler = load_scheduler(&dir.join("scheduler/scheduler_config.json"))?;
        let batch = image_embeds.dims()[0];
        let start = mode.start(batch, options, movq.config().scale_factor(), device)?;
        let of = steps_run(&mode, options)?;
        let image = decode_v21(
            &unet,
            &movq,
            &text_encoder,
            &tokenizer,
            scheduler.as_mut(),
            prompts,
            negative_prompts,
            image_embeds,
            negative,
            start,
            options,
            rng,
            &mut decoder_progress(options.steps, of, progress),
        )?;
        images(image)
    }
}
