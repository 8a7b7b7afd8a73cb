//! The HTTP routes: the native job API, `/health` and `/metrics`, behind the API key check
//! and the body limit. Every error is JSON: `{"error": {"code": …, "message": …}}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::config::ServerConfig;
use crate::jobs::{Job, JobQueue, JobState, JobStore};
use crate::metrics::Metrics;
use crate::request::JobBody;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub config: Arc<ServerConfig>,
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<JobStore>,
    pub metrics: Arc<Metrics>,
}

/// An error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // `type` for OpenAI clients, which read it beside `message`.
        let body = Json(json!({"error": {
            "code": self.code,
            "type": self.code,
            "message": self.message,
        }}));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The routes over `state`.
pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/jobs", post(submit))
        .route("/v1/jobs/{id}", get(status))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/images/{n}", get(image))
        .route("/v1/jobs/{id}/preview", get(preview))
        .route("/metrics", get(metrics))
        .merge(crate::openai::routes())
        .merge(crate::a1111::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health", get(health))
        .merge(crate::web::routes())
        .merge(protected)
        .fallback(|| async { ApiError::not_found("such route") })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Gives every request an id (the `x-request-id` response header), bounds the time to read
/// and answer it, and logs it as one JSON line when the server logs requests.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let start = std::time::Instant::now();
    let limit = state.config.request_timeout;
    // A synchronous generation bounds the reading of its body itself, and its run by
    // `generation_timeout`.
    let mut response = if crate::SYNCHRONOUS.iter().any(|p| path.starts_with(p)) {
        next.run(request).await
    } else {
        match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => timed_out(limit).into_response(),
        }
    };
    response
        .headers_mut()
        .insert("x-request-id", HeaderValue::from(id));
    if state.config.log_requests {
        let line = json!({
            "request_id": id,
            "method": method.as_str(),
            "path": path,
            "status": response.status().as_u16(),
            "ms": start.elapsed().as_secs_f64() * 1e3,
        });
        eprintln!("{line}");
    }
    response
}

fn timed_out(limit: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!("the request took longer than {limit:?}"),
    )
}

/// Reads a body with `T`'s extractor within the request timeout (for the synchronous
/// routes, which the timeout layer leaves alone).
pub(crate) async fn read_body<T>(state: &AppState, request: Request) -> Result<T, ApiError>
where
    T: axum::extract::FromRequest<AppState>,
    T::Rejection: Into<ApiError>,
{
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, T::from_request(request, state)).await {
        Ok(body) => body.map_err(Into::into),
        Err(_) => Err(timed_out(limit)),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        rejected(rejection)
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(rejection: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Requires `Authorization: Bearer <key>` when the server has a key.
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(key) = &state.config.api_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), key.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs `Authorization: Bearer <API key>`",
            ));
        }
    }
    Ok(next.run(request).await)
}

/// Compares without stopping at the first difference (no timing hint of a key's prefix).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "queue_length": state.queue.len()}))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.queue.len(), &state.store),
    )
}

/// A job as the API shows it.
#[derive(Serialize)]
struct JobView {
    id: String,
    #[serde(flatten)]
    state: JobState,
    /// The images' URLs, once done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    /// The latest preview's URL, while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
}

fn view(job: &Job) -> JobView {
    let state = job.state();
    let images = match state {
        JobState::Done { images } => (0..images)
            .map(|n| format!("/v1/jobs/{}/images/{n}", job.id()))
            .collect(),
        _ => Vec::new(),
    };
    let preview = job
        .preview()
        .map(|(step, _)| format!("/v1/jobs/{}/preview?step={step}", job.id()));
    JobView {
        id: job.id().to_string(),
        state,
        images,
        preview,
    }
}

/// The text fields of [`JobBody`] (a form's other fields are read as JSON values).
const TEXT_FIELDS: &[&str] = &[
    "mode",
    "prompt",
    "negative_prompt",
    "sampler",
    "prior_sampler",
];

/// `POST /v1/jobs`: a JSON body, or a form with the same fields (images as files).
async fn submit(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let body: JobBody = if is_form(&request) {
        let form = crate::form::Form::read(read_body(&state, request).await?).await?;
        serde_json::from_value(serde_json::Value::Object(form.to_json(TEXT_FIELDS)))
            .map_err(|e| ApiError::bad_request(format!("the form: {e}")))?
    } else {
        read_body::<Json<JobBody>>(&state, request).await?.0
    };
    let job = state.enqueue(body).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&job))))
}

/// Whether the body is `multipart/form-data`.
pub(crate) fn is_form(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// A refused JSON body as an error response (413 for one too large, else 400).
pub(crate) fn rejected(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(rejection.body_text()),
        _ => ApiError::bad_request(rejection.body_text()),
    }
}

pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
}

impl AppState {
    /// Validates `body` (decoding its images off the async threads) and queues it: the job, or
    /// 400 / 429 (`Retry-After`).
    pub(crate) async fn enqueue(&self, body: JobBody) -> Result<Arc<Job>, ApiError> {
        let limits = self.config.limits;
        let request = tokio::task::spawn_blocking(move || {
            body.into_request(&limits, crate::jobs::random_u64())
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "a panic"))?
        .map_err(|e| ApiError::bad_request(e.0))?;
        self.enqueue_request(request)
    }

    /// Queues a validated request.
    pub(crate) fn enqueue_request(
        &self,
        request: kandinsky_pipeline::Request,
    ) -> Result<Arc<Job>, ApiError> {
        let job = Job::new(request);
        self.store.insert(job.clone());
        if let Err(job) = self.queue.push(job.clone()) {
            self.store.remove(job.id());
            self.metrics.rejected();
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "the queue is full ({} jobs wait); retry later",
                    self.config.queue_capacity
                ),
            );
            error.retry_after = Some(5);
            return Err(error);
        }
        self.metrics.submitted();
        Ok(job)
    }

    /// Waits for `job` to finish (the synchronous APIs): its images, or the job's failure as
    /// an error response. The job is cancelled if the client goes away first (this future is
    /// dropped) or after [`ServerConfig::generation_timeout`].
    pub(crate) async fn finished(&self, job: Arc<Job>) -> Result<Vec<Vec<u8>>, ApiError> {
        struct CancelOnDrop(Option<Arc<Job>>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                if let Some(job) = self.0.take() {
                    job.cancel();
                }
            }
        }
        let mut guard = CancelOnDrop(Some(job.clone()));
        let mut receiver = job.subscribe();
        let limit = self.config.generation_timeout;
        let waited = tokio::time::timeout(limit, async {
            loop {
                if receiver.borrow_and_update().is_final() {
                    return;
                }
                if receiver.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if waited.is_err() {
            self.cancel(&job);
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("the generation took longer than {limit:?} and was cancelled"),
            ));
        }
        guard.0 = None;
        match job.state() {
            JobState::Done { .. } => Ok(job.images().map(<[_]>::to_vec).unwrap_or_default()),
            JobState::Failed { code, message } => Err(ApiError::new(
                match code {
                    "invalid_request" => StatusCode::BAD_REQUEST,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                },
                code,
                message,
            )),
            _ => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cancelled",
                "the job was cancelled (by a client or the server's shutdown)",
            )),
        }
    }

    /// Cancels a job: a waiting one at once, a running one at its next step.
    pub(crate) fn cancel(&self, job: &Job) {
        job.cancel();
        if let Some(waiting) = self.queue.remove(job.id()) {
            waiting.set_state(JobState::Cancelled);
            self.metrics.finished(&JobState::Cancelled);
            self.store.finished(&waiting);
        }
    }
}

fn job(state: &AppState, id: &str) -> Result<Arc<Job>, ApiError> {
    state
        .store
        .get(id)
        .ok_or_else(|| ApiError::not_found("such job"))
}

async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = job(&state, &id)?;
    Ok(Json(view(&job)))
}

/// The job's states as server-sent events (`event: state`, the job as JSON), from its state
/// now until a final one.
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let job = job(&state, &id)?;
    let receiver = job.subscribe();
    let stream = futures_util::stream::unfold(
        (job, receiver, false, true),
        |(job, mut receiver, finished, first)| async move {
            if finished || (!first && receiver.changed().await.is_err()) {
                return None;
            }
            receiver.borrow_and_update();
            let view = view(&job);
            let last = view.state.is_final();
            let event = Event::default().event("state").json_data(&view).ok()?;
            Some((Ok::<_, Infallible>(event), (job, receiver, last, false)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Cancels a job: a waiting one at once, a running one at its next step; a finished one is
/// left as it is. Answers with the job.
async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = job(&state, &id)?;
    state.cancel(&job);
    Ok(Json(view(&job)))
}

async fn image(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let job = job(&state, &id)?;
    let Some(images) = job.images() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("job {id} is {}", job.state().name()),
        ));
    };
    let png = images
        .get(n)
        .ok_or_else(|| ApiError::not_found("such image"))?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png.clone()).into_response())
}

/// The running job's latest preview (a small PNG at the latent resolution); 404 when there is
/// none (not running, or no decoder step yet).
async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = job(&state, &id)?;
    let (_, png) = job
        .preview()
        .ok_or_else(|| ApiError::not_found("preview (yet)"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png.to_vec(),
    )
        .into_response())
}
