//! An HTTP server for Kandinsky: the resident pipeline behind a job API with a bounded queue,
//! progress, previews, cancellation and result fetching, the OpenAI Images and AUTOMATIC1111
//! APIs on the same queue, and a web app (`kandinsky serve` runs it).
//!
//! **Policy.** One generation runs at a time, on one worker thread that owns the pipeline
//! (a [`Generator`]); jobs wait in a bounded first-in first-out queue ([`JobQueue`]; a
//! submission to a full queue gets 429 with `Retry-After`). A job's images stay in memory
//! until [`ServerConfig::keep_finished`] newer jobs have finished; nothing is written to
//! disk, and no request names a server path. On shutdown the server stops accepting,
//! cancels the waiting jobs and the running one (at its next step), and returns.
//!
//! **Safety.** It binds 127.0.0.1 by default; any other address needs an API key
//! (`Authorization: Bearer <key>` on every route but `/health` and the web app's static files)
//! unless the operator opts out
//! explicitly. Bodies are bounded ([`ServerConfig::max_body_bytes`], 413), uploaded images are
//! checked on their declared size before decoding, and every option is bounded
//! ([`Limits`]) before the request is queued; bodies must arrive within
//! [`ServerConfig::request_timeout`], and the synchronous APIs' jobs are cancelled after
//! [`ServerConfig::generation_timeout`] or when their client goes away.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the web app (every mode, mask brush, live preview, gallery; no key needed to load it) |
//! | `POST /v1/jobs` | submit a job (JSON or multipart, every mode: [`JobBody`]); 202 with its id and queue position |
//! | `GET /v1/jobs/{id}` | its state: `queued` (position), `running` (stage, step, of, preview URL), `done` (image URLs), `failed` (code, message), `cancelled` |
//! | `GET /v1/jobs/{id}/events` | the same as server-sent events until a final state |
//! | `GET /v1/jobs/{id}/preview` | the latest low-cost preview (a PNG at the latent resolution) |
//! | `POST /v1/jobs/{id}/cancel` | cancel it |
//! | `GET /v1/jobs/{id}/images/{n}` | the n-th PNG (with the generation's parameters as text chunks) |
//! | `POST /v1/images/generations`, `/edits`, `/variations` | the OpenAI Images API, answering when done |
//! | `POST /sdapi/v1/txt2img`, `/img2img`; `GET /sdapi/v1/progress`; `POST /sdapi/v1/interrupt` | AUTOMATIC1111's API (and its `samplers`, `sd-models`, `options` lists) |
//! | `GET /health` | `{"status": "ok", "queue_length": n}` |
//! | `GET /metrics` | Prometheus: queue length, jobs by state and outcome, step time |
//!
//! `docs/http-api.md` in the repository lists every field, and which OpenAI and A1111 fields
//! are honoured or ignored.
//!
//! ```no_run
//! use kandinsky_pipeline::Kandinsky;
//! use kandinsky_server::{PipelineGenerator, Server, ServerConfig, shutdown_signal};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let device = burn::tensor::Device::default();
//! let pipeline = Kandinsky::from_folders(
//!     "kandinsky-2-2-prior".as_ref(),
//!     "kandinsky-2-2-decoder".as_ref(),
//!     &device,
//! )?;
//! let generator = PipelineGenerator::new(pipeline, vec![]);
//! let server = Server::bind(ServerConfig::default(), Box::new(generator)).await?;
//! println!("http://{}", server.local_addr());
//! server.run(shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```

mod a1111;
mod api;
pub mod config;
mod form;
mod generator;
pub mod jobs;
mod metrics;
mod openai;
pub mod request;
mod web;
mod worker;

/// The routes that answer when their generation is done (bounded by
/// [`ServerConfig::generation_timeout`], not the request timeout).
const SYNCHRONOUS: &[&str] = &["/v1/images/", "/sdapi/v1/txt2img", "/sdapi/v1/img2img"];

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, Limits, ServerConfig};
pub use generator::{Generator, PipelineGenerator, Progress};
pub use jobs::{Job, JobQueue, JobState, JobStore, MemoryQueue};
pub use metrics::Metrics;
pub use request::{JobBody, Mode};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The settings are refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A bound server, ready to [`run`](Self::run).
pub struct Server {
    listener: tokio::net::TcpListener,
    state: api::AppState,
    worker: std::thread::JoinHandle<()>,
}

impl Server {
    /// Checks `config`, binds its address and starts the worker with `generator` and an
    /// in-memory queue of `config.queue_capacity` jobs.
    pub async fn bind(
        config: ServerConfig,
        generator: Box<dyn Generator>,
    ) -> Result<Self, ServeError> {
        let queue = Arc::new(MemoryQueue::new(config.queue_capacity));
        Self::with_queue(config, generator, queue).await
    }

    /// [`bind`](Self::bind) with another queue (e.g. one backed by an external broker).
    pub async fn with_queue(
        config: ServerConfig,
        generator: Box<dyn Generator>,
        queue: Arc<dyn JobQueue>,
    ) -> Result<Self, ServeError> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let store = Arc::new(JobStore::new(config.keep_finished));
        let metrics = Arc::new(Metrics::default());
        let worker = worker::spawn(queue.clone(), store.clone(), metrics.clone(), generator);
        let state = api::AppState {
            config: Arc::new(config),
            queue,
            store,
            metrics,
        };
        Ok(Self {
            listener,
            state,
            worker,
        })
    }

    /// The address it listens on (the port chosen when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.config.addr)
    }

    /// Serves until `shutdown` completes; then stops accepting, cancels the waiting jobs and
    /// the running one, waits for the worker and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            state,
            worker,
        } = self;
        let app = api::router(state.clone());
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        for job in state.queue.close() {
            job.cancel();
            job.set_state(JobState::Cancelled);
            state.metrics.finished(&JobState::Cancelled);
            state.store.finished(&job);
        }
        state.store.cancel_unfinished();
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        Ok(served?)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
