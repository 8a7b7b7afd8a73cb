//! AUTOMATIC1111's web UI API, so front-ends made for it work unchanged:
//! `POST /sdapi/v1/txt2img`, `POST /sdapi/v1/img2img` (answering when done, images as base64
//! PNGs), `GET /sdapi/v1/progress`, `POST /sdapi/v1/interrupt`, and the lists front-ends read
//! when they start: `GET /sdapi/v1/samplers`, `/sdapi/v1/sd-models`, `/sdapi/v1/options`.
//!
//! Honoured: `prompt`, `negative_prompt`, `steps`, `cfg_scale`, `width`, `height`, `seed`
//! (−1: random), `batch_size` × `n_iter` (made as one job of that many images, seeds drawn
//! by the pipeline from `seed`), `sampler_name` / `sampler_index` (A1111 names such as
//! `Euler a`, `DPM++ 2M Karras`, or ours), `scheduler` (`Karras` only), `init_images` (the
//! first), `denoising_strength` (image-to-image; default 0.75), `mask` (white: repaint →
//! inpainting, where the strength does not apply), `inpainting_mask_invert`. Ignored (A1111
//! features Kandinsky has no counterpart for): `styles`, `subseed*`, `seed_resize_*`,
//! `restore_faces`, `tiling`, `enable_hr` and the `hr_*` fields, `refiner_*`, `eta`,
//! `s_*`, `override_settings`, `script_*`, `alwayson_scripts`, `mask_blur`,
//! `inpainting_fill`, `inpaint_full_res*`, `resize_mode`, `image_cfg_scale`,
//! `send_images`, `save_images`, and any other field.
//!
//! `progress` reports the running job (of any API) and its latest preview;
//! `interrupt` cancels it.

use axum::Json;
use axum::extract::{Request, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, AppState, read_body};
use crate::jobs::JobState;
use crate::request::{JobBody, Mode};

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/sdapi/v1/txt2img", post(txt2img))
        .route("/sdapi/v1/img2img", post(img2img))
        .route("/sdapi/v1/progress", get(progress))
        .route("/sdapi/v1/interrupt", post(interrupt))
        .route("/sdapi/v1/samplers", get(samplers))
        .route("/sdapi/v1/sd-models", get(models))
        .route("/sdapi/v1/options", get(options))
}

/// The fields of txt2img and img2img that are honoured (the others are ignored).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct Body {
    prompt: String,
    negative_prompt: Option<String>,
    steps: Option<usize>,
    cfg_scale: Option<f64>,
    width: Option<usize>,
    height: Option<usize>,
    seed: Option<i64>,
    batch_size: Option<usize>,
    n_iter: Option<usize>,
    sampler_name: Option<String>,
    sampler_index: Option<String>,
    scheduler: Option<String>,
    init_images: Vec<String>,
    denoising_strength: Option<f64>,
    mask: Option<String>,
    inpainting_mask_invert: Option<u8>,
}

/// An A1111 sampler name as ours, and whether it asks for Karras sigmas: `DPM++ 2M Karras`
/// → (`dpm++2m`, true), `Euler a` → `euler-a`.
fn sampler(name: &str) -> (String, bool) {
    let lower = name.trim().to_lowercase();
    let (base, karras) = match lower.strip_suffix(" karras") {
        Some(base) => (base.to_string(), true),
        None => (lower, false),
    };
    (base.replace("dpm++ ", "dpm++").replace(' ', "-"), karras)
}

impl Body {
    fn job(&self, mode: Mode) -> Result<JobBody, ApiError> {
        let count = |v: Option<usize>| v.unwrap_or(1).max(1);
        let images = count(self.batch_size)
            .checked_mul(count(self.n_iter))
            .ok_or_else(|| ApiError::bad_request("batch_size × n_iter overflows"))?;
        let seed = match self.seed {
            None | Some(-1) => None,
            Some(s) if s >= 0 => Some(s as u64),
            Some(s) => return Err(ApiError::bad_request(format!("invalid seed {s}"))),
        };
        let (sampler, mut karras) = match self
            .sampler_name
            .as_deref()
            .or(self.sampler_index.as_deref())
        {
            Some(name) => {
                let (s, k) = sampler(name);
                (Some(s), k)
            }
            None => (None, false),
        };
        match self.scheduler.as_deref().map(str::to_lowercase).as_deref() {
            Some("karras") => karras = true,
            None | Some("automatic") | Some("uniform") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid scheduler {other:?}: this server has Automatic and Karras"
                )));
            }
        }
        if karras && sampler.is_none() {
            return Err(ApiError::bad_request(
                "the Karras schedule needs a sampler_name",
            ));
        }
        Ok(JobBody {
            mode,
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone().filter(|n| !n.is_empty()),
            width: self.width,
            height: self.height,
            steps: self.steps,
            guidance: self.cfg_scale,
            seed,
            num_images: Some(images),
            sampler,
            karras,
            ..JobBody::default()
        })
    }
}

/// Runs `job` and answers as A1111 does: `{"images": [...], "parameters": …, "info": "…"}`.
async fn run(state: &AppState, body: &Body, job: JobBody) -> Result<Json<Value>, ApiError> {
    let job = state.enqueue(job).await?;
    let seed = job.request.seed;
    let images = state.finished(job).await?;
    use base64::Engine;
    let images: Vec<String> = images
        .iter()
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png))
        .collect();
    let mut parameters = serde_json::to_value(body).unwrap_or_default();
    if let Value::Object(p) = &mut parameters {
        // The images are large and the client has them.
        p.remove("init_images");
        p.remove("mask");
    }
    let info = json!({"prompt": body.prompt, "seed": seed, "all_seeds": [seed]});
    Ok(Json(json!({
        "images": images,
        "parameters": parameters,
        "info": info.to_string(),
    })))
}

async fn txt2img(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let Json(body) = read_body::<Json<Body>>(&state, request).await?;
    let job = body.job(Mode::Text2img)?;
    run(&state, &body, job).await
}

async fn img2img(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let Json(body) = read_body::<Json<Body>>(&state, request).await?;
    let image = body
        .init_images
        .first()
        .cloned()
        .ok_or_else(|| ApiError::bad_request("`init_images` needs an image"))?;
    let mut job = match &body.mask {
        Some(mask) => {
            let mut job = body.job(Mode::Inpaint)?;
            job.mask = Some(match body.inpainting_mask_invert {
                Some(1) => invert(mask, state.config.limits.max_input_side).await?,
                _ => mask.clone(),
            });
            job
        }
        None => {
            let mut job = body.job(Mode::Img2img)?;
            job.strength = Some(body.denoising_strength.unwrap_or(0.75));
            job
        }
    };
    job.image = Some(image);
    run(&state, &body, job).await
}

/// A base64 mask with black and white swapped, base64 again.
async fn invert(mask: &str, max_side: u32) -> Result<String, ApiError> {
    let mask = mask.to_string();
    tokio::task::spawn_blocking(move || {
        let image = crate::request::decode_image("mask", &mask, max_side)
            .map_err(|e| ApiError::bad_request(e.0))?;
        let (w, h) = (image.width, image.height);
        let inverted: Vec<u8> = image.rgb.iter().map(|v| 255 - v).collect();
        let png = kandinsky_pipeline::Image::from_rgb(w, h, inverted)
            .and_then(|i| i.to_png(&[]))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD.encode(png))
    })
    .await
    .map_err(|_| ApiError::bad_request("the mask could not be read"))?
}

/// The running job's progress, as A1111 reports it.
async fn progress(State(state): State<AppState>) -> Json<Value> {
    let running = state.store.running();
    let waiting = state.queue.len();
    let (fraction, step, of, preview) = match &running {
        Some(job) => {
            let request = &job.request;
            let prior = request.prior.steps;
            let decoder = request.decoder.steps;
            let (done, step, of) = match job.state() {
                JobState::Running {
                    stage: "prior",
                    step,
                    of,
                } => (step, step, of),
                JobState::Running {
                    stage: "decoder",
                    step,
                    of,
                } => (prior + step, step, of),
                JobState::Running {
                    stage: "decoding", ..
                } => (prior + decoder, 0, 0),
                _ => (0, 0, 0),
            };
            let total = (prior + decoder).max(1);
            let preview = job.preview().map(|(_, png)| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(&png[..])
            });
            ((done as f64 / total as f64).min(1.0), step, of, preview)
        }
        None => (0.0, 0, 0, None),
    };
    let jobs = waiting + usize::from(running.is_some());
    Json(json!({
        "progress": fraction,
        "eta_relative": 0.0,
        "state": {
            "skipped": false,
            "interrupted": running.as_ref().is_some_and(|j| j.is_cancelled()),
            "job": running.as_ref().map(|j| j.id().to_string()).unwrap_or_default(),
            "job_count": jobs,
            "job_timestamp": "",
            "job_no": 0,
            "sampling_step": step,
            "sampling_steps": of,
        },
        "current_image": preview,
        "textinfo": Value::Null,
    }))
}

/// Cancels the running job (at its next step).
async fn interrupt(State(state): State<AppState>) -> Json<Value> {
    if let Some(job) = state.store.running() {
        state.cancel(&job);
    }
    Json(json!({}))
}

async fn samplers() -> Json<Value> {
    let list: Vec<Value> = kandinsky_pipeline::scheduler::SAMPLERS
        .iter()
        .map(|s| json!({"name": s.name, "aliases": s.aliases, "options": {}}))
        .collect();
    Json(Value::Array(list))
}

async fn models(State(state): State<AppState>) -> Json<Value> {
    let name = state.config.model_name.clone();
    Json(
        json!([{"title": name, "model_name": name, "hash": null, "sha256": null,
                 "filename": "", "config": null}]),
    )
}

async fn options(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"sd_model_checkpoint": state.config.model_name}))
}

#[cfg(test)]
mod tests {
    use super::sampler;

    #[test]
    fn a1111_sampler_names() {
        assert_eq!(sampler("Euler a"), ("euler-a".into(), false));
        assert_eq!(sampler("DPM++ 2M Karras"), ("dpm++2m".into(), true));
        assert_eq!(sampler("DPM++ 2M SDE"), ("dpm++2m-sde".into(), false));
        assert_eq!(sampler("DPM2 a"), ("dpm2-a".into(), false));
        assert_eq!(sampler("UniPC"), ("unipc".into(), false));
        for name in [
            "Euler a",
            "DPM++ 2M Karras",
            "DPM++ 2M SDE",
            "DPM2 a",
            "Heun",
            "LMS",
            "DDIM",
            "PLMS",
            "UniPC",
            "DPM++ 3M SDE Karras",
        ] {
            let (ours, _) = sampler(name);
            assert!(
                kandinsky_pipeline::scheduler::Sampler::find(&ours).is_some(),
                "{name}"
            );
        }
    }
}
