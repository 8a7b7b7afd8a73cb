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
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
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
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health", get(health))
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
    let mut response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the request took longer than {limit:?}"),
        )
        .into_response(),
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
}

fn view(job: &Job) -> JobView {
    let state = job.state();
    let images = match state {
        JobState::Done { images } => (0..images)
            .map(|n| format!("/v1/jobs/{}/images/{n}", job.id()))
            .collect(),
        _ => Vec::new(),
    };
    JobView {
        id: job.id().to_string(),
        state,
        images,
    }
}

async fn submit(
    State(state): State<AppState>,
    body: Result<Json<JobBody>, JsonRejection>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let Json(body) = body.map_err(|rejection| {
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "invalid_request",
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    let limits = state.config.limits;
    // Decoding uploaded images is work: off the async threads.
    let request =
        tokio::task::spawn_blocking(move || body.into_request(&limits, crate::jobs::random_u64()))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "a panic"))?
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.0))?;
    let job = Job::new(request);
    state.store.insert(job.clone());
    if let Err(job) = state.queue.push(job.clone()) {
        state.store.remove(job.id());
        state.metrics.rejected();
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!(
                "the queue is full ({} jobs wait); retry later",
                state.config.queue_capacity
            ),
        );
        error.retry_after = Some(5);
        return Err(error);
    }
    state.metrics.submitted();
    Ok((StatusCode::ACCEPTED, Json(view(&job))))
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
    job.cancel();
    if let Some(waiting) = state.queue.remove(&id) {
        waiting.set_state(JobState::Cancelled);
        state.metrics.finished(&JobState::Cancelled);
        state.store.finished(&waiting);
    }
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
