//! The conditioning modules: diffusers `TextImageProjection`, `ImageProjection` (the context
//! builders, `encoder_hid_proj`) and `TextImageTimeEmbedding`, `ImageTimeEmbedding`,
//! `ImageHintTimeEmbedding` (`add_embedding`). The time embedding itself is shared with the
//! prior and lives in `kandinsky_common::embeddings`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use crate::config::HINT_CHANNELS;

/// Epsilon of every LayerNorm of the conditioning modules (PyTorch's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

fn layer_norm(dim: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim)
        .with_epsilon(LAYER_NORM_EPS)
        .init(device)
}

/// Kandinsky 2.1 context (`encoder_hid_proj`, diffusers `TextImageProjection`): 10 tokens from
/// the image embedding, followed by the projected text hidden states.
#[derive(Module, Debug)]
pub struct TextImageProjection {
    /// image embedding → 10 · cross-attention width.
    pub(crate) image_embeds: Linear,
    /// text hidden width → cross-attention width.
    pub(crate) text_proj: Linear,
    #[module(skip)]
    tokens: usize,
}

/// Image tokens of the 2.1 context (diffusers' `num_image_text_embeds` default).
pub const TEXT_IMAGE_TOKENS: usize = 10;
/// Image tokens of the 2.2 context (diffusers' `num_image_text_embeds` default).
pub const IMAGE_TOKENS: usize = 32;

impl TextImageProjection {
    /// 2.1 layout: image embeddings of width `cross`, text hidden states of width `text`.
    pub fn new(text: usize, cross: usize, device: &Device) -> Self {
        Self {
            image_embeds: LinearConfig::new(cross, TEXT_IMAGE_TOKENS * cross).init(device),
            text_proj: LinearConfig::new(text, cross).init(device),
            tokens: TEXT_IMAGE_TOKENS,
        }
    }

    /// (B, L, text), (B, cross) → (B, 10 + L, cross).
    pub fn forward(&self, text_hidden_states: Tensor<3>, image_embeds: Tensor<2>) -> Tensor<3> {
        let [b, _] = image_embeds.dims();
        let image =
            self.image_embeds
                .forward(image_embeds)
                .reshape([b as i32, self.tokens as i32, -1]);
        let text = self.text_proj.forward(text_hidden_states);
        Tensor::cat(vec![image, text], 1)
    }
}

/// Kandinsky 2.2 context (`encoder_hid_proj`, diffusers `ImageProjection`): 32 LayerNormed
/// tokens from the image embedding.
#[derive(Module, Debug)]
pub struct ImageProjection {
    /// image embedding → 32 · cross-attention width.
    pub(crate) image_embeds: Linear,
    /// Per-token LayerNorm.
    pub(crate) norm: LayerNorm,
    #[module(skip)]
    tokens: usize,
}

impl ImageProjection {
    /// Image embeddings of width `image`, tokens of width `cross`.
    pub fn new(image: usize, cross: usize, device: &Device) -> Self {
        Self {
            image_embeds: LinearConfig::new(image, IMAGE_TOKENS * cross).init(device),
            norm: layer_norm(cross, device),
            tokens: IMAGE_TOKENS,
        }
    }

    /// (B, image) → (B, 32, cross).
    pub fn forward(&self, image_embeds: Tensor<2>) -> Tensor<3> {
        let [b, _] = image_embeds.dims();
        let tokens =
            self.image_embeds
                .forward(image_embeds)
                .reshape([b as i32, self.tokens as i32, -1]);
        self.norm.forward(tokens)
    }
}

/// The context builder of either version. The variant adds nothing to the weight keys.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum EncoderHidProj {
    /// Kandinsky 2.1.
    TextImage(TextImageProjection),
    /// Kandinsky 2.2.
    Image(ImageProjection),
}

/// Kandinsky 2.1 `add_embedding` (diffusers `TextImageTimeEmbedding`):
/// LayerNorm(text_proj(text)) + image_proj(image).
#[derive(Module, Debug)]
pub struct TextImageTimeEmbedding {
    /// pooled text embedding → time embedding width.
    pub(crate) text_proj: Linear,
    /// LayerNorm after `text_proj`.
    pub(crate) text_norm: LayerNorm,
    /// image embedding → time embedding width.
    pub(crate) image_proj: Linear,
}

impl TextImageTimeEmbedding {
    /// Text and image embeddings of width `cross`, output of width `time`.
    pub fn new(cross: usize, time: usize, device: &Device) -> Self {
        Self {
            text_proj: LinearConfig::new(cross, time).init(device),
            text_norm: layer_norm(time, device),
            image_proj: LinearConfig::new(cross, time).init(device),
        }
    }

    /// (B, cross), (B, cross) → (B, time).
    pub fn forward(&self, text_embeds: Tensor<2>, image_embeds: Tensor<2>) -> Tensor<2> {
        let text = self.text_norm.forward(self.text_proj.forward(text_embeds));
        self.image_proj.forward(image_embeds) + text
    }
}

/// Kandinsky 2.2 `add_embedding` (diffusers `ImageTimeEmbedding`): LayerNorm(image_proj(image)).
#[derive(Module, Debug)]
pub struct ImageTimeEmbedding {
    /// image embedding → time embedding width.
    pub(crate) image_proj: Linear,
    /// LayerNorm after `image_proj`.
    pub(crate) image_norm: LayerNorm,
}

impl ImageTimeEmbedding {
    /// Image embeddings of width `image`, output of width `time`.
    pub fn new(image: usize, time: usize, device: &Device) -> Self {
        Self {
            image_proj: LinearConfig::new(image, time).init(device),
            image_norm: layer_norm(time, device),
        }
    }

    /// (B, image) → (B, time).
    pub fn forward(&self, image_embeds: Tensor<2>) -> Tensor<2> {
        self.image_norm
            .forward(self.image_proj.forward(image_embeds))
    }
}

/// `(in, out, stride)` of the eight 3×3 convs of the ControlNet hint encoder.
pub const HINT_CONVS: [(usize, usize, usize); 8] = [
    (3, 16, 1),
    (16, 16, 1),
    (16, 32, 2),
    (32, 32, 1),
    (32, 96, 2),
    (96, 96, 1),
    (96, 256, 2),
    (256, HINT_CHANNELS, 1),
];

/// Kandinsky 2.2 ControlNet `add_embedding` (diffusers `ImageHintTimeEmbedding`): the 2.2 image
/// embedding, plus `input_hint_block`, eight 3×3 convs with SiLU between them that turn the
/// hint image (B, 3, H, W) in [0, 1] into (B, 4, H/8, W/8).
#[derive(Module, Debug)]
pub struct ImageHintTimeEmbedding {
    /// image embedding → time embedding width.
    pub(crate) image_proj: Linear,
    /// LayerNorm after `image_proj`.
    pub(crate) image_norm: LayerNorm,
    /// The PyTorch `Sequential`: convs at the even indices 0, 2, …, 14, SiLUs (no weights, so
    /// `None` here) at the odd ones, which keeps the checkpoint's key numbering.
    pub(crate) input_hint_block: Vec<Option<Conv2d>>,
}

impl ImageHintTimeEmbedding {
    /// Image embeddings of width `image`, output of width `time`.
    pub fn new(image: usize, time: usize, device: &Device) -> Self {
        let mut input_hint_block = Vec::with_capacity(2 * HINT_CONVS.len() - 1);
        for (i, &(cin, cout, stride)) in HINT_CONVS.iter().enumerate() {
            if i > 0 {
                input_hint_block.push(None);
            }
            let conv = Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device);
            input_hint_block.push(Some(conv));
        }
        Self {
            image_proj: LinearConfig::new(image, time).init(device),
            image_norm: layer_norm(time, device),
            input_hint_block,
        }
    }

    /// (B, image) → (B, time).
    pub fn forward(&self, image_embeds: Tensor<2>) -> Tensor<2> {
        self.image_norm
            .forward(self.image_proj.forward(image_embeds))
    }

    /// (B, 3, H, W) → (B, 4, ⌈H/8⌉, ⌈W/8⌉).
    pub fn encode_hint(&self, hint: Tensor<4>) -> Tensor<4> {
        let mut convs = self.input_hint_block.iter().flatten().peekable();
        let mut h = hint;
        while let Some(conv) = convs.next() {
            h = conv.forward(h);
            if convs.peek().is_some() {
                h = silu(h);
            }
        }
        h
    }
}

/// The `add_embedding` of either version. The variant adds nothing to the weight keys.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AddEmbedding {
    /// Kandinsky 2.1.
    TextImage(TextImageTimeEmbedding),
    /// Kandinsky 2.2.
    Image(ImageTimeEmbedding),
    /// Kandinsky 2.2 ControlNet.
    ImageHint(ImageHintTimeEmbedding),
}
