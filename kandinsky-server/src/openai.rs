//! The OpenAI Images API: `POST /v1/images/generations` (text-to-image, JSON),
//! `/v1/images/edits` (inpainting, multipart: `image` and an optional `mask` whose fully
//! transparent pixels are repainted) and `/v1/images/variations` (Kandinsky's image variations,
//! multipart `image`). Each answers when its job is done, as OpenAI's does; the job runs in the
//! same queue as the job API's.
//!
//! Honoured: `prompt`, `n`, `size` (`WIDTHxHEIGHT`; `auto` or absent: 512×512),
//! `response_format` (`b64_json`, the default here, or `url`: this server's job image URL),
//! `output_format` (`png` only). Ignored: `model`, `quality`, `style`, `user`, `background`,
//! `moderation`, `output_compression`, `input_fidelity`, `partial_images`, `stream`. Extras:
//! `negative_prompt`, `seed`, `steps`, `prior_steps`, `guidance_scale`,
//! `prior_guidance_scale`, `sampler`, `karras`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::routing::post;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, AppState, is_form, read_body};
use crate::form::Form;
use crate::request::{JobBody, Mode};

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/images/generations", post(generations))
        .route("/v1/images/edits", post(edits))
        .route("/v1/images/variations", post(variations))
}

/// The fields of the three endpoints (each uses the ones that apply); unknown fields are
/// ignored, as OpenAI clients send fields of models we do not have.
#[derive(Debug, Default, Deserialize)]
struct ImagesBody {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    output_format: Option<String>,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    steps: Option<usize>,
    #[serde(default)]
    prior_steps: Option<usize>,
    #[serde(default, alias = "guidance")]
    guidance_scale: Option<f64>,
    #[serde(default)]
    prior_guidance_scale: Option<f64>,
    #[serde(default)]
    sampler: Option<String>,
    #[serde(default)]
    karras: bool,
}

/// The text fields of a form (the others are read as JSON values).
const TEXT_FIELDS: &[&str] = &[
    "prompt",
    "size",
    "response_format",
    "output_format",
    "negative_prompt",
    "sampler",
    "model",
    "quality",
    "style",
    "user",
    "background",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    B64Json,
    Url,
}

impl ImagesBody {
    fn format(&self) -> Result<Format, ApiError> {
        if let Some(format) = self.output_format.as_deref()
            && !format.eq_ignore_ascii_case("png")
        {
            return Err(ApiError::bad_request(format!(
                "invalid output_format {format:?}: this server writes png"
            )));
        }
        match self.response_format.as_deref() {
            None | Some("b64_json") => Ok(Format::B64Json),
            Some("url") => Ok(Format::Url),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid response_format {other:?}: expected b64_json or url"
            ))),
        }
    }

    fn size(&self) -> Result<(Option<usize>, Option<usize>), ApiError> {
        let Some(size) = self.size.as_deref().filter(|s| *s != "auto") else {
            return Ok((None, None));
        };
        let parsed = size
            .split_once(['x', 'X'])
            .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
        match parsed {
            Some((w, h)) => Ok((Some(w), Some(h))),
            None => Err(ApiError::bad_request(format!(
                "invalid size {size:?}: expected WIDTHxHEIGHT, e.g. 512x512"
            ))),
        }
    }

    /// The job of `mode` these fields ask for.
    fn job(self, mode: Mode) -> Result<JobBody, ApiError> {
        let (width, height) = self.size()?;
        Ok(JobBody {
            mode,
            prompt: self.prompt.unwrap_or_default(),
            negative_prompt: self.negative_prompt,
            width,
            height,
            steps: self.steps,
            prior_steps: self.prior_steps,
            guidance: self.guidance_scale,
            prior_guidance: self.prior_guidance_scale,
            seed: self.seed,
            num_images: self.n,
            sampler: self.sampler,
            karras: self.karras,
            ..JobBody::default()
        })
    }
}

/// Runs `body` and answers as OpenAI does: `{"created": …, "data": [{"b64_json": …}]}` (or
/// `url`).
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    body: JobBody,
    format: Format,
) -> Result<Json<Value>, ApiError> {
    let job = state.enqueue(body).await?;
    let images = state.finished(job.clone()).await?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| state.config.addr.to_string());
    let data: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(n, png)| match format {
            Format::B64Json => {
                json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(png)})
            }
            Format::Url => json!({"url": format!("http://{host}/v1/jobs/{}/images/{n}", job.id())}),
        })
        .collect();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Json(json!({"created": created, "data": data})))
}

/// Reads a JSON or multipart body into the fields and, for a form, the form (for its files).
async fn fields(
    state: &AppState,
    request: Request,
) -> Result<(ImagesBody, Option<Form>), ApiError> {
    if is_form(&request) {
        let form = Form::read(read_body(state, request).await?).await?;
        let body = serde_json::from_value(Value::Object(form.to_json(TEXT_FIELDS)))
            .map_err(|e| ApiError::bad_request(format!("the form: {e}")))?;
        Ok((body, Some(form)))
    } else {
        let Json(body) = read_body::<Json<ImagesBody>>(state, request).await?;
        Ok((body, None))
    }
}

/// The uploaded file `name` of a form, base64 for the job.
fn upload(form: Option<&Form>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match form {
        Some(form) => form.bytes(name),
        None => Ok(None),
    }
}

fn required(bytes: Option<Vec<u8>>, name: &str) -> Result<Vec<u8>, ApiError> {
    bytes.ok_or_else(|| {
        ApiError::bad_request(format!("`{name}` is required (a multipart/form-data file)"))
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn generations(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (body, _) = fields(&state, request).await?;
    if body.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return Err(ApiError::bad_request("`prompt` is required"));
    }
    let format = body.format()?;
    let job = body.job(Mode::Text2img)?;
    run(&state, &headers, job, format).await
}

async fn edits(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (body, form) = fields(&state, request).await?;
    let format = body.format()?;
    let image = required(upload(form.as_ref(), "image")?, "image")?;
    let mask = upload(form.as_ref(), "mask")?;
    let max_side = state.config.limits.max_input_side;
    // The repaint mask from the mask's transparency, else the image's.
    let mask_png = tokio::task::spawn_blocking({
        let image = image.clone();
        move || -> Result<Vec<u8>, ApiError> {
            let (bytes, name) = match &mask {
                Some(mask) => (mask.as_slice(), "mask"),
                None => (image.as_slice(), "image"),
            };
            let mask = kandinsky_pipeline::Image::decode_transparency_mask(bytes, name, max_side)
                .map_err(|e| ApiError::bad_request(e.to_string()))?
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "the {name} has no alpha channel: its fully transparent pixels say \
                         where to repaint"
                    ))
                })?;
            mask.to_png(&[])
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    })
    .await
    .map_err(|_| ApiError::bad_request("the mask could not be read"))??;
    let mut job = body.job(Mode::Inpaint)?;
    job.image = Some(b64(&image));
    job.mask = Some(b64(&mask_png));
    run(&state, &headers, job, format).await
}

async fn variations(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (body, form) = fields(&state, request).await?;
    let format = body.format()?;
    let image = required(upload(form.as_ref(), "image")?, "image")?;
    let mut job = body.job(Mode::Variation)?;
    job.image = Some(b64(&image));
    run(&state, &headers, job, format).await
}
