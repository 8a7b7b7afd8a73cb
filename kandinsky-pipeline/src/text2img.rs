//! Text-to-image from the published diffusers folders: a prior repo (`kandinsky-2-2-prior`,
//! `-2-1-prior`) and a decoder repo (`kandinsky-2-2-decoder`, `kandinsky-2-1`), each with its
//! `model_index.json` and one folder per component.
//!
//! The stages load one at a time and are dropped after use, so peak memory is about the largest
//! stage (the prior with its text encoder, or the UNet with the MoVQ), not the sum.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::tensor::{Device, Tensor};
use kandinsky_clip::{ClipTextModel, ClipVisionModel, MultilingualClip, TextTokenizer};
use kandinsky_movq::MoVQ;
use kandinsky_prior::PriorTransformer;
use kandinsky_unet::UNet;
use kandinsky_unet::config::AdditionEmbedType;

use crate::decoder::{DecoderOptions, DecoderStart, decode_v21, decode_v22, to_rgb8};
use crate::error::PipelineError;
pub use crate::image::Image;
use crate::prior::{PriorOptions, PriorStart, run_prior, zero_image_embeds};
use crate::rng::Rng;
use crate::scheduler::load_scheduler;

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

/// A prior repo (`kandinsky-2-1-prior` or `-2-2-prior`): the text encoder, tokenizer, prior
/// and scheduler load for each generation and are dropped after it; the zero-image negative
/// embedding is computed once with the image encoder and kept (or supplied, in which case the
/// folder needs no `image_encoder`).
#[derive(Debug)]
struct PriorRepo {
    dir: PathBuf,
    device: Device,
    zero_embed: Mutex<Option<Tensor<2>>>,
}

impl PriorRepo {
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

    fn cached_zero_embed(&self) -> Option<Tensor<2>> {
        self.zero_embed.lock().expect("not poisoned").clone()
    }

    fn set_zero_embed(&self, embed: Tensor<2>) -> Result<(), PipelineError> {
        let [rows, _] = embed.dims();
        if rows != 1 {
            return Err(PipelineError::Mismatch(format!(
                "a zero-image embedding is one row (1, E), found {rows} rows"
            )));
        }
        *self.zero_embed.lock().expect("not poisoned") = Some(embed.to_device(&self.device));
        Ok(())
    }

    fn embed(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &PriorOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        let dir = &self.dir;
        let of = options.steps;
        let out = {
            progress(Progress::Loading("prior"));
            let tokenizer = TextTokenizer::from_dir(&dir.join("tokenizer"))?;
            let text_encoder = ClipTextModel::load(&dir.join("text_encoder"), &self.device)?;
            let prior = PriorTransformer::load(&dir.join("prior"), &self.device)?;
            let mut scheduler = load_scheduler(&dir.join("scheduler/scheduler_config.json"))?;
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
        let negative = match out.negative_image_embeds {
            Some(negative) => negative,
            None => {
                let zero = self.zero_embed(progress)?;
                let e = zero.dims()[1];
                zero.expand([prompts.len(), e])
            }
        };
        Ok((out.image_embeds, negative))
    }
}

/// What both decoders start from: the generator after the prior, the embeddings, the UNet.
struct Stage {
    rng: Rng,
    image_embeds: Tensor<2>,
    negative: Tensor<2>,
    unet: UNet,
}

impl PriorRepo {
    /// Checks the size, runs the prior, loads the decoder's UNet and checks that the two fit.
    fn start(
        &self,
        decoder_dir: &Path,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &Text2ImageOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Stage, PipelineError> {
        check_size(&options.decoder)?;
        let mut rng = Rng::new(options.seed);
        let (image_embeds, negative) = self.embed(
            prompts,
            negative_prompts,
            &options.prior,
            &mut rng,
            progress,
        )?;
        progress(Progress::Loading("unet"));
        let unet = UNet::load(&decoder_dir.join("unet"), &self.device)?;
        check_widths(&unet, &image_embeds, &self.dir, decoder_dir)?;
        Ok(Stage {
            rng,
            image_embeds,
            negative,
            unet,
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

/// Reports decoder steps, then the decoding, to `progress`.
fn decoder_progress(
    of: usize,
    progress: &mut dyn FnMut(Progress),
) -> impl FnMut(usize, &Tensor<4>) + '_ {
    move |i, _| {
        progress(Progress::DecoderStep { step: i + 1, of });
        if i + 1 == of {
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
    prior: PriorRepo,
    decoder_dir: PathBuf,
}

impl Kandinsky22 {
    /// Checks both folders; nothing is loaded until [`generate`](Self::generate).
    pub fn new(
        prior_repo: &Path,
        decoder_repo: &Path,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            prior: PriorRepo::new(prior_repo, device)?,
            decoder_dir: pipeline_folder(decoder_repo, &["unet", "movq", "scheduler"])?,
        })
    }

    /// Image embeddings for `prompts` and their negatives (the negative prompts' embeddings, or
    /// the zero-image embedding).
    pub fn embed(
        &self,
        prompts: &[&str],
        negative_prompts: Option<&[&str]>,
        options: &PriorOptions,
        rng: &mut Rng,
    ) -> Result<(Tensor<2>, Tensor<2>), PipelineError> {
        self.prior
            .embed(prompts, negative_prompts, options, rng, &mut |_| {})
    }

    /// Supplies the zero-image negative embedding (1, E), e.g. one computed by an earlier run
    /// and kept on disk, so that the prior folder's `image_encoder` is neither needed nor loaded.
    pub fn set_zero_image_embeds(&self, embed: Tensor<2>) -> Result<(), PipelineError> {
        self.prior.set_zero_embed(embed)
    }

    /// The zero-image negative embedding (1, E) if it has been computed or supplied.
    pub fn zero_image_embeds(&self) -> Option<Tensor<2>> {
        self.prior.cached_zero_embed()
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
        let Stage {
            mut rng,
            image_embeds,
            negative,
            unet,
        } = self.prior.start(
            &self.decoder_dir,
            prompts,
            negative_prompts,
            options,
            progress,
        )?;
        let dir = &self.decoder_dir;
        let device = &self.prior.device;
        let movq = MoVQ::load(&dir.join("movq"), device)?;
        let mut scheduler = load_scheduler(&dir.join("scheduler/scheduler_config.json"))?;
        let image = decode_v22(
            &unet,
            &movq,
            scheduler.as_mut(),
            image_embeds,
            negative,
            DecoderStart::Noise(None),
            &options.decoder,
            &mut rng,
            &mut decoder_progress(options.decoder.steps, progress),
        )?;
        images(image)
    }
}

/// Kandinsky 2.1 text-to-image over a prior repo (`kandinsky-2-1-prior`) and a decoder repo
/// (`kandinsky-2-1`: MultilingualCLIP `text_encoder`, XLM-R `tokenizer`, `unet`, `movq`,
/// `scheduler`). The prompt goes to both the prior (CLIP) and the decoder (MultilingualCLIP, so
/// about 100 languages).
#[derive(Debug)]
pub struct Kandinsky21 {
    prior: PriorRepo,
    decoder_dir: PathBuf,
}

impl Kandinsky21 {
    /// Checks both folders; nothing is loaded until [`generate`](Self::generate).
    pub fn new(
        prior_repo: &Path,
        decoder_repo: &Path,
        device: &Device,
    ) -> Result<Self, PipelineError> {
        let components = ["text_encoder", "tokenizer", "unet", "movq", "scheduler"];
        Ok(Self {
            prior: PriorRepo::new(prior_repo, device)?,
            decoder_dir: pipeline_folder(decoder_repo, &components)?,
        })
    }

    /// Supplies the zero-image negative embedding (1, E), e.g. one computed by an earlier run
    /// and kept on disk, so that the prior folder's `image_encoder` is neither needed nor loaded.
    pub fn set_zero_image_embeds(&self, embed: Tensor<2>) -> Result<(), PipelineError> {
        self.prior.set_zero_embed(embed)
    }

    /// The zero-image negative embedding (1, E) if it has been computed or supplied.
    pub fn zero_image_embeds(&self) -> Option<Tensor<2>> {
        self.prior.cached_zero_embed()
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
        let Stage {
            mut rng,
            image_embeds,
            negative,
            unet,
        } = self.prior.start(
            &self.decoder_dir,
            prompts,
            negative_prompts,
            options,
            progress,
        )?;
        let dir = &self.decoder_dir;
        let device = &self.prior.device;
        let text_encoder = MultilingualClip::load(&dir.join("text_encoder"), device)?;
        let tokenizer = TextTokenizer::from_dir(&dir.join("tokenizer"))?;
        let movq = MoVQ::load(&dir.join("movq"), device)?;
        let mut scheduler = load_scheduler(&dir.join("scheduler/scheduler_config.json"))?;
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
            DecoderStart::Noise(None),
            &options.decoder,
            &mut rng,
            &mut decoder_progress(options.decoder.steps, progress),
        )?;
        images(image)
    }
}
