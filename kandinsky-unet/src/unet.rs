//! The UNet (diffusers `UNet2DConditionModel`), its loading from a diffusers `unet/` folder and
//! its forward pass.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Tensor};
use kandinsky_common::embeddings::{TimestepEmbedding, timestep_features};
use kandinsky_common::load_safetensors;
use kandinsky_common::trace::{Activation, Trace};
use kandinsky_common::weights::find_diffusers_weights;

use crate::blocks::{BlockSizes, DownBlock, MidBlock, UpBlock, UpChannels};
use crate::config::{AdditionEmbedType, EncoderHidDimType, UNetConfig};
use crate::embeddings::{
    AddEmbedding, EncoderHidProj, ImageHintTimeEmbedding, ImageProjection, ImageTimeEmbedding,
    TextImageProjection, TextImageTimeEmbedding,
};
use crate::error::UNetError;
use crate::resnet::ResnetSizes;
use kandinsky_common::conv::new_conv3x3;

/// The conditioning of one forward pass; which variant a checkpoint takes follows from its
/// `addition_embed_type`.
// Built once per denoising step and moved into the forward pass: the size difference between
// variants (a few tensor handles) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Conditioning {
    /// Kandinsky 2.1 (`text_image`): the MultilingualCLIP outputs and the prior's image
    /// embedding.
    TextImage {
        /// XLM-R hidden states (B, L, `encoder_hid_dim`), L = 77 in the pipelines.
        text_hidden_states: Tensor<3>,
        /// The pooled, projected text embedding (B, `cross_attention_dim`).
        text_embeds: Tensor<2>,
        /// The CLIP image embedding (B, `cross_attention_dim`).
        image_embeds: Tensor<2>,
    },
    /// Kandinsky 2.2 (`image`): the CLIP image embedding (B, `encoder_hid_dim`).
    Image {
        /// The CLIP image embedding.
        image_embeds: Tensor<2>,
    },
    /// Kandinsky 2.2 ControlNet (`image_hint`).
    ImageHint {
        /// The CLIP image embedding (B, `encoder_hid_dim`).
        image_embeds: Tensor<2>,
        /// The hint image (B, 3, 8h, 8w) for a latent of h×w, values in [0, 1].
        hint: Tensor<4>,
    },
}

impl Conditioning {
    fn kind(&self) -> &'static str {
        match self {
            Self::TextImage { .. } => "text_image",
            Self::Image { .. } => "image",
            Self::ImageHint { .. } => "image_hint",
        }
    }
}

/// The decoder UNet of Kandinsky 2.1 and 2.2: predicts noise (channels 0–3) and the learned
/// variance (channels 4–7) from a noisy latent, a timestep and the image (and, for 2.1, text)
/// conditioning.
#[derive(Module, Debug)]
pub struct UNet {
    /// Latent (+ masked latent and mask, or + encoded hint) → first level width.
    pub(crate) conv_in: Conv2d,
    /// Timestep features → time embedding.
    pub(crate) time_embedding: TimestepEmbedding,
    /// Conditioning added to the time embedding.
    pub(crate) add_embedding: AddEmbedding,
    /// Conditioning → cross-attention context tokens.
    pub(crate) encoder_hid_proj: EncoderHidProj,
    /// The down path, one block per level.
    pub(crate) down_blocks: Vec<DownBlock>,
    /// The bottom of the UNet.
    pub(crate) mid_block: MidBlock,
    /// The up path, deepest level first.
    pub(crate) up_blocks: Vec<UpBlock>,
    /// Output GroupNorm.
    pub(crate) conv_norm_out: GroupNorm,
    /// Output 3×3 conv.
    pub(crate) conv_out: Conv2d,
    #[module(skip)]
    config: UNetConfig,
}

impl UNetConfig {
    /// Builds the model with lazily initialised parameters: nothing is allocated until the
    /// weights are loaded (or, without loading, until first use, with random values).
    ///
    /// The config should have passed [`UNetConfig::validate`] (as [`UNet::load`] ensures).
    pub fn init(&self, device: &Device) -> UNet {
        let channels = &self.block_out_channels;
        let levels = channels.len();
        let time = self.time_embed_dim();
        let sizes = BlockSizes {
            resnet: ResnetSizes {
                groups: self.norm_num_groups,
                eps: self.norm_eps,
                time,
            },
            head_dim: self.attention_head_dim,
            context_dim: self.cross_attention_dim,
        };
        let (cross, hid) = (self.cross_attention_dim, self.encoder_hid_dim);
        let encoder_hid_proj = match self.encoder_hid_dim_type {
            EncoderHidDimType::TextImageProj => {
                EncoderHidProj::TextImage(TextImageProjection::new(hid, cross, device))
            }
            EncoderHidDimType::ImageProj => {
                EncoderHidProj::Image(ImageProjection::new(hid, cross, device))
            }
        };
        let add_embedding = match self.addition_embed_type {
            AdditionEmbedType::TextImage => {
                AddEmbedding::TextImage(TextImageTimeEmbedding::new(cross, time, device))
            }
            AdditionEmbedType::Image => {
                AddEmbedding::Image(ImageTimeEmbedding::new(hid, time, device))
            }
            AdditionEmbedType::ImageHint => {
                AddEmbedding::ImageHint(ImageHintTimeEmbedding::new(hid, time, device))
            }
        };
        let down_blocks = (0..levels)
            .map(|i| {
                let inp = if i == 0 { channels[0] } else { channels[i - 1] };
                let (attention, last) = (self.down_has_attention(i), i + 1 == levels);
                DownBlock::new(
                    inp,
                    channels[i],
                    self.layers_per_block,
                    attention,
                    !last,
                    sizes,
                    device,
                )
            })
            .collect();
        let up_blocks = (0..levels)
            .map(|i| {
                let level = levels - 1 - i;
                let up = UpChannels {
                    prev: channels[(level + 1).min(levels - 1)],
                    out: channels[level],
                    last_skip: channels[level.saturating_sub(1)],
                };
                let (attention, last) = (self.up_has_attention(i), i + 1 == levels);
                UpBlock::new(
                    up,
                    self.layers_per_block + 1,
                    attention,
                    !last,
                    sizes,
                    device,
                )
            })
            .collect();
        UNet {
            conv_in: new_conv3x3(self.in_channels, channels[0], device),
            time_embedding: TimestepEmbedding::new(self.timestep_dim(), time, time, device),
            add_embedding,
            encoder_hid_proj,
            down_blocks,
            mid_block: MidBlock::new(channels[levels - 1], sizes, device),
            up_blocks,
            conv_norm_out: GroupNormConfig::new(self.norm_num_groups, channels[0])
                .with_epsilon(self.norm_eps)
                .init(device),
            conv_out: new_conv3x3(channels[0], self.out_channels, device),
            config: self.clone(),
        }
    }
}

fn no_trace(_: &str, _: Activation<'_>) {}

fn check_shape<const D: usize>(
    input: &'static str,
    t: &Tensor<D>,
    expected: &[Option<usize>; D],
    describe: impl FnOnce() -> String,
) -> Result<(), UNetError> {
    let dims = t.dims();
    let fits = dims
        .iter()
        .zip(expected)
        .all(|(&d, e)| d > 0 && e.is_none_or(|e| e == d));
    if fits {
        Ok(())
    } else {
        Err(UNetError::InvalidInput {
            input,
            expected: describe(),
            found: dims.to_vec(),
        })
    }
}

impl UNet {
    /// Loads a diffusers `unet/` folder: `config.json` and
    /// `diffusion_pytorch_model.safetensors`, or the `.fp16.safetensors` variant when it is the
    /// only one. Weights are cast to `device`'s float dtype; the file is memory-mapped.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, UNetError> {
        let weights = find_diffusers_weights(dir)?;
        Self::load_files(&dir.join("config.json"), &weights, device)
    }

    /// Loads from an explicit config file and weights file (e.g. a chosen variant).
    pub fn load_files(config: &Path, weights: &Path, device: &Device) -> Result<Self, UNetError> {
        let config = UNetConfig::from_file(config)?;
        Ok(load_safetensors(config.init(device), weights, device)?)
    }

    /// The configuration the model was built from.
    /// The device the weights are on.
    pub fn device(&self) -> burn::tensor::Device {
        self.conv_in.weight.val().device()
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The float dtype of the weights (and of the computation).
    pub fn dtype(&self) -> DType {
        self.conv_in.weight.val().dtype()
    }

    /// Predicts noise and variance for `sample` (B, C, h, w) at `timesteps` (B values, or one
    /// for the whole batch; original scale 0–999, fractional allowed). On f16 and bf16 devices
    /// create the timesteps as f32 (`kandinsky_common::tensors::f32_tensor`): bf16 rounds 999
    /// to 1000, and the time embedding's high frequencies turn that into a different step.
    ///
    /// C is `in_channels` (4 for text-to-image, 9 for inpainting with the channels ordered
    /// latent, masked-image latent, mask), or `in_channels − 4` for the ControlNet, whose hint
    /// supplies the other 4. h and w must be multiples of 2^(levels − 1) (8 for the published
    /// models). Returns (B, `out_channels`, h, w).
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: Tensor<1>,
        conditioning: Conditioning,
    ) -> Result<Tensor<4>, UNetError> {
        self.forward_traced(sample, timesteps, conditioning, &mut no_trace)
    }

    fn check_inputs(
        &self,
        sample: &Tensor<4>,
        timesteps: &Tensor<1>,
        conditioning: &Conditioning,
    ) -> Result<(), UNetError> {
        let c = &self.config;
        let [b, _, h, w] = sample.dims();
        let m = c.size_multiple();
        let channels = c.sample_channels();
        check_shape(
            "sample",
            sample,
            &[None, Some(channels), None, None],
            || format!("(batch, {channels}, height, width), all positive"),
        )?;
        if h % m != 0 || w % m != 0 {
            return Err(UNetError::InvalidInput {
                input: "sample",
                expected: format!(
                    "height and width multiples of {m} (the UNet halves them {} times)",
                    m.trailing_zeros()
                ),
                found: sample.dims().to_vec(),
            });
        }
        let t = timesteps.dims()[0];
        if t != 1 && t != b {
            return Err(UNetError::InvalidInput {
                input: "timesteps",
                expected: format!("1 or {b} (the batch size) values"),
                found: vec![t],
            });
        }
        let expected = match c.addition_embed_type {
            AdditionEmbedType::TextImage => "text_image",
            AdditionEmbedType::Image => "image",
            AdditionEmbedType::ImageHint => "image_hint",
        };
        if conditioning.kind() != expected {
            return Err(UNetError::WrongConditioning {
                expected,
                found: conditioning.kind(),
            });
        }
        let vector = |name, t: &Tensor<2>, width: usize| {
            check_shape(name, t, &[Some(b), Some(width)], || {
                format!("({b}, {width})")
            })
        };
        match conditioning {
            Conditioning::TextImage {
                text_hidden_states,
                text_embeds,
                image_embeds,
            } => {
                let hid = c.encoder_hid_dim;
                check_shape(
                    "text_hidden_states",
                    text_hidden_states,
                    &[Some(b), None, Some(hid)],
                    || format!("({b}, tokens ≥ 1, {hid})"),
                )?;
                vector("text_embeds", text_embeds, c.cross_attention_dim)?;
                vector("image_embeds", image_embeds, c.cross_attention_dim)
            }
            Conditioning::Image { image_embeds } => {
                vector("image_embeds", image_embeds, c.encoder_hid_dim)
            }
            Conditioning::ImageHint { image_embeds, hint } => {
                vector("image_embeds", image_embeds, c.encoder_hid_dim)?;
                let (hh, hw) = (8 * h, 8 * w);
                check_shape(
                    "hint",
                    hint,
                    &[Some(b), Some(3), Some(hh), Some(hw)],
                    || format!("({b}, 3, {hh}, {hw}): the latent's size times 8"),
                )
            }
        }
    }

    /// [`forward`](Self::forward), reporting each step's output to `trace`: `time_embedding`,
    /// `add_embedding.input_hint_block` (ControlNet), `add_embedding`, `encoder_hid_proj`,
    /// `conv_in`, `down_blocks.{i}`, `mid_block`, `up_blocks.{i}`, `conv_norm_out`, `conv_out`.
    pub fn forward_traced(
        &self,
        sample: Tensor<4>,
        timesteps: Tensor<1>,
        conditioning: Conditioning,
        trace: Trace<'_>,
    ) -> Result<Tensor<4>, UNetError> {
        self.check_inputs(&sample, &timesteps, &conditioning)?;
        let c = &self.config;
        let dtype = self.dtype();
        let batch = sample.dims()[0];
        let mut sample = sample.cast(dtype);

        // 1. Time embedding plus the conditioning embedding.
        let timesteps = match timesteps.dims()[0] {
            1 if batch > 1 => timesteps.expand([batch]),
            _ => timesteps,
        };
        let features = timestep_features(
            timesteps,
            c.timestep_dim(),
            c.flip_sin_to_cos,
            c.freq_shift,
            dtype,
        );
        let emb = self.time_embedding.forward(features);
        trace("time_embedding", Activation::Vector(&emb));
        let aug = match (&self.add_embedding, &conditioning) {
            (
                AddEmbedding::TextImage(add),
                Conditioning::TextImage {
                    text_embeds,
                    image_embeds,
                    ..
                },
            ) => add.forward(
                text_embeds.clone().cast(dtype),
                image_embeds.clone().cast(dtype),
            ),
            (AddEmbedding::Image(add), Conditioning::Image { image_embeds }) => {
                add.forward(image_embeds.clone().cast(dtype))
            }
            (AddEmbedding::ImageHint(add), Conditioning::ImageHint { image_embeds, hint }) => {
                let hint = add.encode_hint(hint.clone().cast(dtype));
                trace("add_embedding.input_hint_block", Activation::Map(&hint));
                sample = Tensor::cat(vec![sample, hint], 1);
                add.forward(image_embeds.clone().cast(dtype))
            }
            _ => unreachable!("check_inputs matched the conditioning to the config"),
        };
        trace("add_embedding", Activation::Vector(&aug));
        let emb_act = silu(emb + aug);

        // 2. The cross-attention context.
        let context = match (&self.encoder_hid_proj, conditioning) {
            (
                EncoderHidProj::TextImage(proj),
                Conditioning::TextImage {
                    text_hidden_states,
                    image_embeds,
                    ..
                },
            ) => proj.forward(text_hidden_states.cast(dtype), image_embeds.cast(dtype)),
            (
                EncoderHidProj::Image(proj),
                Conditioning::Image { image_embeds } | Conditioning::ImageHint { image_embeds, .. },
            ) => proj.forward(image_embeds.cast(dtype)),
            _ => unreachable!("validate pairs the context type with the conditioning type"),
        };
        trace("encoder_hid_proj", Activation::Sequence(&context));

        // 3. Down, mid, up.
        let mut x = self.conv_in.forward(sample);
        trace("conv_in", Activation::Map(&x));
        let mut skips = vec![x.clone()];
        for (i, block) in self.down_blocks.iter().enumerate() {
            x = block.forward(x, &emb_act, &context, &mut skips);
            trace(&format!("down_blocks.{i}"), Activation::Map(&x));
        }
        x = self.mid_block.forward(x, &emb_act, &context);
        trace("mid_block", Activation::Map(&x));
        for (i, block) in self.up_blocks.iter().enumerate() {
            x = block.forward(x, &emb_act, &context, &mut skips);
            trace(&format!("up_blocks.{i}"), Activation::Map(&x));
        }

        // 4. Output.
        let x = self.conv_norm_out.forward(x);
        trace("conv_norm_out", Activation::Map(&x));
        let x = self.conv_out.forward(silu(x));
        trace("conv_out", Activation::Map(&x));
        Ok(x)
    }
}
