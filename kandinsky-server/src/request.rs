//! The job API's request body: every mode in one JSON object, turned into a validated
//! [`Request`] within the server's [`Limits`].

use base64::Engine;
use kandinsky_pipeline::{FusionInput, Image, Request, SamplerChoice};
use serde::Deserialize;

use crate::config::Limits;

/// A generation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Text-to-image.
    #[default]
    Text2img,
    /// Image-to-image (`image`, `strength`).
    Img2img,
    /// Inpainting (`image`, `mask`; an inpainting decoder).
    Inpaint,
    /// Outpainting (`image`, `extend`; an inpainting decoder).
    Outpaint,
    /// Image fusion (`items`).
    Fusion,
    /// Variations of `image`.
    Variation,
    /// ControlNet-depth (`hint`, optionally `image` and `strength`).
    Controlnet,
    /// Embedding-to-embedding (`image`, `strength`).
    Emb2emb,
}

/// One item of a fusion: a text or an image, with its weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionItemBody {
    /// A prompt.
    #[serde(default)]
    pub text: Option<String>,
    /// An image, base64 (or a `data:` URL).
    #[serde(default)]
    pub image: Option<String>,
    /// Its weight.
    pub weight: f64,
}

/// `POST /v1/jobs`. Unknown fields are refused (a misspelt option is an error, not ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobBody {
    /// The mode (default `text2img`).
    #[serde(default = "text2img")]
    pub mode: Mode,
    /// The prompt.
    #[serde(default)]
    pub prompt: String,
    /// The negative prompt.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// Output width (512).
    #[serde(default)]
    pub width: Option<usize>,
    /// Output height (512).
    #[serde(default)]
    pub height: Option<usize>,
    /// Decoder steps (the pipeline's default, 100).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Prior steps (25).
    #[serde(default)]
    pub prior_steps: Option<usize>,
    /// Decoder guidance scale.
    #[serde(default)]
    pub guidance: Option<f64>,
    /// Prior guidance scale.
    #[serde(default)]
    pub prior_guidance: Option<f64>,
    /// Seed (random when absent).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Images to make (1).
    #[serde(default)]
    pub num_images: Option<usize>,
    /// The decoder's sampler (a name of `kandinsky generate --help`'s list).
    #[serde(default)]
    pub sampler: Option<String>,
    /// Karras sigmas for the sampler.
    #[serde(default)]
    pub karras: bool,
    /// The prior's sampler.
    #[serde(default)]
    pub prior_sampler: Option<String>,
    /// The input image, base64.
    #[serde(default)]
    pub image: Option<String>,
    /// The inpainting mask (white: repaint), base64.
    #[serde(default)]
    pub mask: Option<String>,
    /// The ControlNet depth map, base64.
    #[serde(default)]
    pub hint: Option<String>,
    /// Image-to-image / emb2emb / ControlNet strength.
    #[serde(default)]
    pub strength: Option<f64>,
    /// Outpainting: pixels added left, top, right, bottom.
    #[serde(default)]
    pub extend: Option<[usize; 4]>,
    /// Fusion items.
    #[serde(default)]
    pub items: Vec<FusionItemBody>,
}

fn text2img() -> Mode {
    Mode::Text2img
}

/// A request the server refuses (400), with what and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

/// Decodes a base64 image field (`name` names it in errors), within `max_side` pixels a side.
pub fn decode_image(name: &str, data: &str, max_side: u32) -> Result<Image, BadRequest> {
    let bytes = base64_payload(name, data)?;
    Image::decode_within(&bytes, name, max_side).map_err(|e| bad(format!("{e}")))
}

/// The bytes of a base64 field (plain, or a `data:` URL's payload).
pub fn base64_payload(name: &str, data: &str) -> Result<Vec<u8>, BadRequest> {
    let payload = match data.split_once(";base64,") {
        Some((head, payload)) if head.starts_with("data:") => payload,
        _ => data,
    };
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| bad(format!("{name}: not base64 ({e})")))
}

impl JobBody {
    fn image(
        &self,
        field: &str,
        value: &Option<String>,
        limits: &Limits,
    ) -> Result<Image, BadRequest> {
        let data = value
            .as_deref()
            .ok_or_else(|| bad(format!("mode {:?} needs `{field}`", self.mode)))?;
        decode_image(field, data, limits.max_input_side)
    }

    fn strength(&self, default: f64) -> f64 {
        self.strength.unwrap_or(default)
    }

    /// The validated request, or why not; `seed` is used when the body has none.
    pub fn into_request(self, limits: &Limits, seed: u64) -> Result<Request, BadRequest> {
        let prompt = self.prompt.clone();
        let mut request = match self.mode {
            Mode::Text2img => Request::text_to_image(prompt),
            Mode::Img2img => Request::image_to_image(
                prompt,
                self.image("image", &self.image, limits)?,
                self.strength(0.3),
            ),
            Mode::Inpaint => Request::inpaint(
                prompt,
                self.image("image", &self.image, limits)?,
                self.image("mask", &self.mask, limits)?,
            ),
            Mode::Outpaint => {
                let extend = self
                    .extend
                    .ok_or_else(|| bad("mode outpaint needs `extend`"))?;
                let image = self.image("image", &self.image, limits)?;
                Request::outpaint(prompt, &image, extend).map_err(|e| bad(e.to_string()))?
            }
            Mode::Fusion => {
                if self.items.is_empty() {
                    return Err(bad("mode fusion needs `items`"));
                }
                let mut items = Vec::with_capacity(self.items.len());
                for (i, item) in self.items.iter().enumerate() {
                    let input = match (&item.text, &item.image) {
                        (Some(text), None) => FusionInput::Text(text.clone()),
                        (None, Some(data)) => FusionInput::Image(decode_image(
                            &format!("items[{i}].image"),
                            data,
                            limits.max_input_side,
                        )?),
                        _ => return Err(bad(format!("items[{i}]: expected `text` or `image`"))),
                    };
                    items.push((input, item.weight));
                }
                Request::fusion(items)
            }
            Mode::Variation => Request::variation(self.image("image", &self.image, limits)?),
            Mode::Controlnet => {
                let hint = self.image("hint", &self.hint, limits)?;
                let mut request = Request::controlnet(prompt, hint);
                if self.image.is_some() {
                    request.init = kandinsky_pipeline::Init::Image {
                        image: self.image("image", &self.image, limits)?,
                        strength: self.strength(0.5),
                    };
                }
                request
            }
            Mode::Emb2emb => Request::emb2emb(
                prompt,
                self.image("image", &self.image, limits)?,
                self.strength(0.3),
            ),
        };
        request.negative_prompt = self.negative_prompt;
        // The outpainting canvas sets its own size; otherwise the pipeline's default unless
        // given.
        if self.mode != Mode::Outpaint {
            request.width = self.width.unwrap_or(request.width);
            request.height = self.height.unwrap_or(request.height);
        }
        if let Some(steps) = self.steps {
            request.decoder.steps = steps;
        }
        if let Some(steps) = self.prior_steps {
            request.prior.steps = steps;
        }
        request.decoder.guidance_scale = self.guidance.or(request.decoder.guidance_scale);
        request.prior.guidance_scale = self.prior_guidance.or(request.prior.guidance_scale);
        request.num_images = self.num_images.unwrap_or(request.num_images);
        request.seed = self.seed.unwrap_or(seed);
        let sampler = |name: &Option<String>, karras: bool| {
            name.as_deref()
                .map(|n| SamplerChoice::parse(n, karras).map_err(|e| bad(e.to_string())))
                .transpose()
        };
        if self.karras && self.sampler.is_none() {
            return Err(bad("`karras` needs a `sampler`"));
        }
        request.decoder.sampler = sampler(&self.sampler, self.karras)?;
        request.prior.sampler = sampler(&self.prior_sampler, false)?;
        for (what, value, max) in [
            ("width", request.width, limits.max_side),
            ("height", request.height, limits.max_side),
            ("steps", request.decoder.steps, limits.max_steps),
            ("prior_steps", request.prior.steps, limits.max_steps),
            ("num_images", request.num_images, limits.max_images),
        ] {
            if value > max {
                return Err(bad(format!(
                    "invalid {what} {value}: this server allows at most {max}"
                )));
            }
        }
        request.validate().map_err(|e| bad(e.to_string()))?;
        Ok(request)
    }
}
