//! What an operator sets: the address, the API key, and the bounds of the queue and of each
//! request.

use std::net::SocketAddr;

/// The server's settings. [`Default`] binds 127.0.0.1:7860 (AUTOMATIC1111's port, so clients
/// made for it find us) with no API key, a queue of 8 and the bounds below.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen. Any address but a loopback one needs an [`api_key`](Self::api_key)
    /// unless [`allow_unauthenticated`](Self::allow_unauthenticated) is set.
    pub addr: SocketAddr,
    /// When set, every request but `GET /health` and the web app's static files must carry
    /// `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The operator's explicit opt-out: serve a non-loopback address without a key.
    pub allow_unauthenticated: bool,
    /// Jobs waiting (not counting the running one); a submission beyond is refused with 429.
    pub queue_capacity: usize,
    /// Finished jobs (and their images) kept for clients to fetch; older ones are forgotten.
    pub keep_finished: usize,
    /// The largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// How long a request may take to be read and answered (408 beyond; a progress stream's
    /// events are not limited once it has started).
    pub request_timeout: std::time::Duration,
    /// How long a synchronous generation (the OpenAI and AUTOMATIC1111 APIs) may wait and run
    /// before it is cancelled (504).
    pub generation_timeout: std::time::Duration,
    /// Log one JSON line per request to stderr (request id, method, path, status, time).
    pub log_requests: bool,
    /// The per-request bounds.
    pub limits: Limits,
    /// What the model lists of the compatible APIs call the model (e.g. `kandinsky-2.2`).
    pub model_name: String,
}

/// Bounds on what one request may ask, below the pipeline's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The largest output side, in pixels.
    pub max_side: usize,
    /// The most steps of either stage.
    pub max_steps: usize,
    /// The most images of one request.
    pub max_images: usize,
    /// The largest side of an uploaded image, in pixels (checked before decoding).
    pub max_input_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_side: 1024,
            max_steps: 200,
            max_images: 4,
            max_input_side: 4096,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7860)),
            api_key: None,
            allow_unauthenticated: false,
            queue_capacity: 8,
            keep_finished: 64,
            max_body_bytes: 32 << 20,
            request_timeout: std::time::Duration::from_secs(30),
            generation_timeout: std::time::Duration::from_secs(3600),
            log_requests: false,
            limits: Limits::default(),
            model_name: "kandinsky-2.2".into(),
        }
    }
}

/// Settings the server refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A non-loopback address without an API key and without the explicit opt-out.
    #[error(
        "refusing to serve {addr} without an API key: set one (--api-key or KANDINSKY_API_KEY), bind a loopback address, or pass the explicit opt-out (--insecure-no-api-key)"
    )]
    OpenWithoutKey {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A value out of its range.
    #[error("invalid server setting {what}: {message}")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// Expected versus found.
        message: String,
    },
}

impl ServerConfig {
    /// Checks the settings: the bind policy, an API key that is not empty, positive bounds
    /// within the pipeline's.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.api_key
            && key.trim().is_empty()
        {
            return Err(ConfigError::Invalid {
                what: "api_key",
                message: "expected a non-empty key".into(),
            });
        }
        if !self.addr.ip().is_loopback() && self.api_key.is_none() && !self.allow_unauthenticated {
            return Err(ConfigError::OpenWithoutKey { addr: self.addr });
        }
        for (what, duration) in [
            ("request_timeout", self.request_timeout),
            ("generation_timeout", self.generation_timeout),
        ] {
            if duration.is_zero() {
                return Err(ConfigError::Invalid {
                    what,
                    message: "expected a positive duration".into(),
                });
            }
        }
        let l = &self.limits;
        for (what, value, max) in [
            ("queue_capacity", self.queue_capacity, 1 << 16),
            ("keep_finished", self.keep_finished, 1 << 16),
            ("max_body_bytes", self.max_body_bytes, 1 << 30),
            ("max_side", l.max_side, kandinsky_pipeline::MAX_SIDE),
            ("max_steps", l.max_steps, kandinsky_pipeline::MAX_STEPS),
            ("max_images", l.max_images, kandinsky_pipeline::MAX_IMAGES),
            ("max_input_side", l.max_input_side as usize, 16_384),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::Invalid {
                    what,
                    message: format!("expected 1 to {max}, found {value}"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_a_key() {
        let mut config = ServerConfig::default();
        assert!(config.check().is_ok());
        config.addr = "0.0.0.0:7860".parse().unwrap();
        assert!(matches!(
            config.check(),
            Err(ConfigError::OpenWithoutKey { .. })
        ));
        config.api_key = Some("secret".into());
        assert!(config.check().is_ok());
        config.api_key = Some(" ".into());
        assert!(config.check().is_err());
        config.api_key = None;
        config.allow_unauthenticated = true;
        assert!(config.check().is_ok());
        config.addr = "[::1]:7860".parse().unwrap();
        config.allow_unauthenticated = false;
        assert!(config.check().is_ok());
        config.queue_capacity = 0;
        assert!(config.check().is_err());
    }
}
