//! The job API against a real server on a loopback port: a generation with the small fixture
//! pipeline, and — with a stand-in generator that steps only when the test lets it — the
//! queue (positions, 429 when full), cancellation of waiting and running jobs, progress, every
//! error path, the API key, and shutdown.

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kandinsky_pipeline::{Kandinsky, PipelineError, Request, Stage};
use kandinsky_server::{Generator, PipelineGenerator, Progress, Server, ServerConfig};
use serde_json::{Value, json};

/// A running server: its base URL, and what stops it.
struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(config: ServerConfig, generator: Box<dyn Generator>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(Server::bind(config, generator)).unwrap();
        let url = format!("http://{}", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime
                .block_on(server.run(async {
                    let _ = stopped.await;
                }))
                .unwrap();
        });
        Self {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the server and waits for it (at most `limit`).
    fn shut_down(&mut self, limit: Duration) {
        let _ = self.stop.take().map(|s| s.send(()));
        let thread = self.thread.take().unwrap();
        let start = Instant::now();
        while !thread.is_finished() {
            assert!(start.elapsed() < limit, "the server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shut_down(Duration::from_secs(30));
        }
    }
}

fn loopback() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

/// (status, body, Retry-After) of a request.
fn call(
    method: &str,
    url: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (u16, Vec<u8>, Option<String>) {
    let mut request = ureq::request(method, url);
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let retry = response.header("Retry-After").map(str::to_string);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).unwrap();
    (status, bytes, retry)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn post(url: &str, body: &Value) -> (u16, Value, Option<String>) {
    let (status, bytes, retry) = call("POST", url, Some(&body.to_string()), None);
    (status, json_of(&bytes), retry)
}

fn get(url: &str) -> (u16, Value) {
    let (status, bytes, _) = call("GET", url, None, None);
    (status, json_of(&bytes))
}

/// Polls a job until `done(state)`.
fn wait_for(url: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, job) = get(&format!("{url}/v1/jobs/{id}"));
        assert_eq!(status, 200, "{job}");
        if done(&job) {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "stuck: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_job_with_the_small_pipeline() {
    let work = kandinsky_testing::corpus::Workspace::new("decoder_unet32");
    let device = kandinsky_testing::test_device();
    let pipeline = Kandinsky::from_folders(&work.prior(), &work.decoder(), &device).unwrap();
    let generator = PipelineGenerator::new(pipeline, vec![("prior", "test-prior".into())]);
    let server = Running::start(loopback(), Box::new(generator));
    let url = &server.url;

    let (status, health) = get(&format!("{url}/health"));
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let ids: Vec<u64> = (0..2)
        .map(|_| {
            let response = ureq::get(&format!("{url}/health")).call().unwrap();
            response.header("x-request-id").unwrap().parse().unwrap()
        })
        .collect();
    assert!(ids[1] > ids[0], "{ids:?}");

    let body = json!({"prompt": "a red cat", "width": 64, "height": 64, "steps": 2,
                      "prior_steps": 2, "seed": 5, "sampler": "dpm++2m", "karras": true});
    let (status, job, _) = post(&format!("{url}/v1/jobs"), &body);
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let done = wait_for(url, &id, |j| j["state"] == "done");
    assert_eq!(done["images"], json!([format!("/v1/jobs/{id}/images/0")]));

    let (status, png, _) = call("GET", &format!("{url}/v1/jobs/{id}/images/0"), None, None);
    assert_eq!(status, 200);
    let reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (64, 64));
    let text: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    for expected in [
        ("prompt", "a red cat"),
        ("seed", "5"),
        ("steps", "2"),
        ("scheduler", "dpm++2m+karras"),
        ("prior", "test-prior"),
        ("model", "kandinsky-2.2"),
    ] {
        assert!(
            text.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {text:?}"
        );
    }

    // The progress stream of a finished job: its final state, then the end.
    let (status, events, _) = call("GET", &format!("{url}/v1/jobs/{id}/events"), None, None);
    let events = String::from_utf8(events).unwrap();
    assert_eq!(status, 200);
    assert!(
        events.contains("event: state") && events.contains("\"done\""),
        "{events}"
    );

    let (status, metrics, _) = call("GET", &format!("{url}/metrics"), None, None);
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(status, 200);
    for line in [
        "kandinsky_queue_length 0",
        "kandinsky_jobs_total{outcome=\"done\"} 1",
        "kandinsky_step_seconds_count 4",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// Steps only when the test sends a permit; polls for cancellation meanwhile.
struct Gate {
    permits: mpsc::Receiver<()>,
    steps: usize,
}

impl Generator for Gate {
    fn generate(
        &mut self,
        _request: &Request,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<Vec<u8>>, PipelineError> {
        let cancelled = |step| PipelineError::Cancelled {
            stage: Stage::Decoder,
            step,
        };
        let of = self.steps;
        for step in 1..=self.steps {
            loop {
                match self.permits.recv_timeout(Duration::from_millis(10)) {
                    Ok(()) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        // Asks whether to stop while staying in the state it is in, as a real
                        // generator does between steps (reporting `Loading` here would move
                        // the job's state back under a client that is reading it).
                        let still = match step {
                            1 => Progress::Loading("gate"),
                            _ => Progress::Step {
                                stage: "decoder",
                                step: step - 1,
                                of,
                            },
                        };
                        if progress(still).is_break() {
                            return Err(cancelled(step - 1));
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(cancelled(step - 1)),
                }
            }
            if progress(Progress::Step {
                stage: "decoder",
                step,
                of,
            })
            .is_break()
                || progress(Progress::Preview(format!("preview {step}").into_bytes())).is_break()
            {
                return Err(cancelled(step));
            }
        }
        Ok(vec![b"\x89PNG not really".to_vec()])
    }
}

fn gated(config: ServerConfig, steps: usize) -> (Running, mpsc::Sender<()>) {
    let (permit, permits) = mpsc::channel();
    (
        Running::start(config, Box::new(Gate { permits, steps })),
        permit,
    )
}

const SMALL: &str = r#"{"prompt": "x", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}"#;

#[test]
fn the_queue_positions_refuses_when_full_and_cancels() {
    let config = ServerConfig {
        queue_capacity: 2,
        ..loopback()
    };
    let (server, permit) = gated(config, 3);
    let url = &server.url;
    let submit = || {
        post(
            &format!("{url}/v1/jobs"),
            &serde_json::from_str(SMALL).unwrap(),
        )
    };
    let (_, a, _) = submit();
    let a = a["id"].as_str().unwrap().to_string();
    wait_for(url, &a, |j| j["state"] == "running");
    let ids: Vec<String> = (0..2)
        .map(|position| {
            let (status, job, _) = submit();
            assert_eq!(status, 202, "{job}");
            assert_eq!(job["state"], "queued");
            assert_eq!(job["position"], position);
            job["id"].as_str().unwrap().to_string()
        })
        .collect();
    let (b, c) = (&ids[0], &ids[1]);
    let (status, full, retry) = submit();
    assert_eq!(status, 429, "{full}");
    assert_eq!(full["error"]["code"], "queue_full");
    assert!(retry.is_some_and(|s| s.parse::<u64>().is_ok()));

    // Cancelling a waiting job takes it out; the one behind it moves up... and here the
    // first waiting one is cancelled, so the other is next.
    let (status, job, _) = post(&format!("{url}/v1/jobs/{b}/cancel"), &json!({}));
    assert_eq!((status, &job["state"]), (200, &json!("cancelled")));
    assert_eq!(get(&format!("{url}/v1/jobs/{c}")).1["position"], 0);

    // The running job reports its steps, and stops at its next step when cancelled.
    permit.send(()).unwrap();
    wait_for(url, &a, |j| {
        j["step"] == 1 && j["of"] == 3 && j["stage"] == "decoder"
    });
    post(&format!("{url}/v1/jobs/{a}/cancel"), &json!({}));
    wait_for(url, &a, |j| j["state"] == "cancelled");
    let (status, err, _) = call("GET", &format!("{url}/v1/jobs/{a}/images/0"), None, None);
    assert_eq!(
        (status, &json_of(&err)["error"]["code"]),
        (409, &json!("not_ready"))
    );

    // The next job runs to the end.
    for _ in 0..3 {
        permit.send(()).unwrap();
    }
    let done = wait_for(url, c, |j| j["state"] == "done");
    assert_eq!(done["images"].as_array().unwrap().len(), 1);
    let (status, png, _) = call("GET", &format!("{url}/v1/jobs/{c}/images/0"), None, None);
    assert_eq!((status, png.as_slice()), (200, &b"\x89PNG not really"[..]));
    let (status, _, _) = call("GET", &format!("{url}/v1/jobs/{c}/images/1"), None, None);
    assert_eq!(status, 404);
}

/// A 1×1 PNG whose header declares `side` × `side`.
fn png_declaring(side: u32) -> Vec<u8> {
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, 1, 1);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[1, 2, 3]).unwrap();
    }
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = !png[12..29].iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    });
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn every_error_is_json_with_its_status() {
    use base64::Engine;
    let config = ServerConfig {
        max_body_bytes: 64 << 10,
        ..loopback()
    };
    let (server, _permit) = gated(config, 1);
    let url = &server.url;
    let jobs = format!("{url}/v1/jobs");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("{not json".into(), 400, "invalid_request", ""),
        (r#"{"mode": "paint", "prompt": "x"}"#.into(), 400, "invalid_request", "text2img"),
        (r#"{"prompt": "x", "stpes": 3}"#.into(), 400, "invalid_request", "stpes"),
        (r#"{"prompt": "x", "width": 100000}"#.into(), 400, "invalid_request", "width"),
        (r#"{"prompt": "x", "steps": 0}"#.into(), 400, "invalid_request", "steps"),
        (r#"{"prompt": "x", "guidance": 1e300}"#.into(), 400, "invalid_request", "guidance"),
        (r#"{"prompt": "x", "num_images": 50}"#.into(), 400, "invalid_request", "num_images"),
        (r#"{"prompt": "x", "sampler": "nope"}"#.into(), 400, "invalid_request", "nope"),
        (r#"{"prompt": "x", "karras": true}"#.into(), 400, "invalid_request", "sampler"),
        (r#"{"mode": "img2img", "prompt": "x"}"#.into(), 400, "invalid_request", "image"),
        (json!({"mode": "img2img", "prompt": "x", "image": "%%%"}).to_string(), 400, "invalid_request", "base64"),
        (json!({"mode": "img2img", "prompt": "x", "image": b64(b"not an image")}).to_string(), 400, "invalid_request", "image"),
        (json!({"mode": "variation", "image": b64(&png_declaring(60_000))}).to_string(), 400, "invalid_request", "limit"),
        (json!({"mode": "fusion", "items": [{"weight": 1.0}]}).to_string(), 400, "invalid_request", "items[0]"),
        (json!({"mode": "outpaint", "prompt": "x", "image": b64(&png_declaring(1)), "extend": [u64::MAX, 0, 0, 0]}).to_string(), 400, "invalid_request", ""),
        // Just over the limit (a body the socket buffers whole: the server answers before
        // reading it).
        (format!(r#"{{"prompt": "{}"}}"#, "x".repeat(65 << 10)), 413, "payload_too_large", ""),
    ];
    for (body, status, code, word) in cases {
        let (got, bytes, _) = call("POST", &jobs, Some(&body), None);
        let error = json_of(&bytes);
        let shown = &body[..body.len().min(80)];
        assert_eq!(got, status, "{shown}: {error}");
        assert_eq!(error["error"]["code"], code, "{shown}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(word), "{shown}: {message} lacks {word}");
    }
    for path in [
        "/v1/jobs/0123",
        "/v1/jobs/0123/images/0",
        "/v1/jobs/0123/events",
        "/nope",
    ] {
        let (status, error) = get(&format!("{url}{path}"));
        assert_eq!(
            (status, &error["error"]["code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }
    let (status, _, _) = call(
        "POST",
        &format!("{url}/v1/jobs/0123/cancel"),
        Some("{}"),
        None,
    );
    assert_eq!(status, 404);
}

#[test]
fn an_api_key_guards_everything_but_health() {
    let config = ServerConfig {
        api_key: Some("s3cret".into()),
        ..loopback()
    };
    let (server, _permit) = gated(config, 1);
    let url = &server.url;
    assert_eq!(call("GET", &format!("{url}/health"), None, None).0, 200);
    for key in [None, Some("wrong"), Some("s3cre"), Some("s3cret!")] {
        let (status, body, _) = call("GET", &format!("{url}/v1/jobs/x"), None, key);
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(json_of(&body)["error"]["code"], "unauthorized");
        assert_eq!(call("GET", &format!("{url}/metrics"), None, key).0, 401);
    }
    assert_eq!(
        call("GET", &format!("{url}/v1/jobs/x"), None, Some("s3cret")).0,
        404
    );
    let (status, _, _) = call(
        "POST",
        &format!("{url}/v1/jobs"),
        Some(SMALL),
        Some("s3cret"),
    );
    assert_eq!(status, 202);
}

#[test]
fn a_public_address_needs_a_key() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = ServerConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let (_permit, permits) = mpsc::channel();
    let result = runtime.block_on(Server::bind(config, Box::new(Gate { permits, steps: 1 })));
    let err = result.err().expect("refused").to_string();
    assert!(err.contains("API key"), "{err}");
}

#[test]
fn shutdown_cancels_the_running_and_waiting_jobs() {
    let (mut server, _permit) = gated(loopback(), 100);
    let url = server.url.clone();
    let (_, a, _) = post(
        &format!("{url}/v1/jobs"),
        &serde_json::from_str(SMALL).unwrap(),
    );
    wait_for(&url, a["id"].as_str().unwrap(), |j| j["state"] == "running");
    let (status, _, _) = post(
        &format!("{url}/v1/jobs"),
        &serde_json::from_str(SMALL).unwrap(),
    );
    assert_eq!(status, 202);
    // The running job never gets a permit: only cancellation ends it.
    server.shut_down(Duration::from_secs(10));
    assert!(
        ureq::get(&format!("{url}/health")).call().is_err(),
        "no longer listening"
    );
}

/// A client that opens a request and never finishes its body gets 408 after the timeout.
#[test]
fn a_slow_request_times_out() {
    use std::io::{Read, Write};
    let config = ServerConfig {
        request_timeout: Duration::from_millis(300),
        ..loopback()
    };
    let (server, _permit) = gated(config, 1);
    let addr = server.url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
}

/// The preview of the running job: its URL in the job's state, its bytes, gone once done.
#[test]
fn the_latest_preview_is_served_while_running() {
    let (server, permit) = gated(loopback(), 3);
    let url = &server.url;
    let (_, job, _) = post(
        &format!("{url}/v1/jobs"),
        &serde_json::from_str(SMALL).unwrap(),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let (status, _) = get(&format!("{url}/v1/jobs/{id}/preview"));
    assert_eq!(status, 404, "no preview before a step");
    permit.send(()).unwrap();
    let job = wait_for(url, &id, |j| j["preview"].is_string());
    assert_eq!(job["preview"], format!("/v1/jobs/{id}/preview?step=1"));
    let (status, bytes, _) = call("GET", &format!("{url}/v1/jobs/{id}/preview"), None, None);
    assert_eq!((status, bytes.as_slice()), (200, b"preview 1".as_slice()));
    permit.send(()).unwrap();
    let job = wait_for(url, &id, |j| {
        j["preview"].as_str().is_some_and(|p| p.ends_with("=2"))
    });
    assert_eq!(job["step"], 2);
    permit.send(()).unwrap();
    let job = wait_for(url, &id, |j| j["state"] == "done");
    assert!(job.get("preview").is_none(), "{job}");
    assert_eq!(get(&format!("{url}/v1/jobs/{id}/preview")).0, 404);
}

/// The OpenAI and AUTOMATIC1111 routes sit behind the same key, body limit, queue bound and
/// timeouts as the job API; the web app's page needs no key.
#[test]
fn the_compatible_apis_share_the_guards() {
    let config = ServerConfig {
        api_key: Some("k".into()),
        max_body_bytes: 64 << 10,
        queue_capacity: 1,
        request_timeout: Duration::from_millis(500),
        generation_timeout: Duration::from_secs(2),
        ..loopback()
    };
    let (server, permit) = gated(config, 1);
    let url = &server.url;
    let key = Some("k");
    for (method, path) in [
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/images/edits"),
        ("POST", "/v1/images/variations"),
        ("POST", "/sdapi/v1/txt2img"),
        ("POST", "/sdapi/v1/img2img"),
        ("GET", "/sdapi/v1/progress"),
        ("POST", "/sdapi/v1/interrupt"),
        ("GET", "/sdapi/v1/samplers"),
        ("GET", "/v1/jobs/x/preview"),
    ] {
        let body = (method == "POST").then_some("{}");
        let (status, bytes, _) = call(method, &format!("{url}{path}"), body, None);
        assert_eq!(status, 401, "{path}");
        assert_eq!(json_of(&bytes)["error"]["code"], "unauthorized", "{path}");
    }
    // The page and its script and style: no key, a strict content policy.
    for path in ["/", "/app.js", "/app.css"] {
        let response = ureq::get(&format!("{url}{path}")).call().unwrap();
        let policy = response
            .header("content-security-policy")
            .unwrap()
            .to_string();
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(response.into_string().unwrap().len() > 500, "{path}");
    }

    // Too large, as JSON and as a form.
    let big = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(65 << 10));
    for path in ["/v1/images/generations", "/sdapi/v1/txt2img", "/v1/jobs"] {
        let (status, bytes, _) = call("POST", &format!("{url}{path}"), Some(&big), key);
        assert_eq!(status, 413, "{path}: {}", String::from_utf8_lossy(&bytes));
    }
    let boundary = "b0undary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    )
    .into_bytes();
    form.extend(std::iter::repeat_n(b'x', 70 << 10));
    form.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    for path in ["/v1/images/edits", "/v1/jobs"] {
        let response = ureq::post(&format!("{url}{path}"))
            .set("Authorization", "Bearer k")
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send_bytes(&form);
        let status = match response {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(status, 413, "{path}");
    }

    // A synchronous request reads its body within the request timeout too.
    {
        use std::io::{Read, Write};
        let addr = url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    // One job runs (no permit: it waits), one waits; the next synchronous one gets 429.
    let running = call("POST", &format!("{url}/v1/jobs"), Some(SMALL), key);
    assert_eq!(running.0, 202);
    let running_id = json_of(&running.1)["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let (_, bytes, _) = call("GET", &format!("{url}/v1/jobs/{running_id}"), None, key);
        if json_of(&bytes)["state"] == "running" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    // The waiting one is a synchronous generation, cancelled by the generation timeout (504).
    let waiter = {
        let url = url.clone();
        std::thread::spawn(move || {
            call(
                "POST",
                &format!("{url}/v1/images/generations"),
                Some(r#"{"prompt": "x", "size": "64x64"}"#),
                Some("k"),
            )
        })
    };
    let start = Instant::now();
    loop {
        let (_, bytes, _) = call("GET", &format!("{url}/health"), None, None);
        if json_of(&bytes)["queue_length"] == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, bytes, retry) = call(
        "POST",
        &format!("{url}/sdapi/v1/txt2img"),
        Some(r#"{"prompt": "x"}"#),
        key,
    );
    assert_eq!(
        (status, retry.as_deref()),
        (429, Some("5")),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let (status, bytes, _) = waiter.join().unwrap();
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(json_of(&bytes)["error"]["code"], "timeout");
    let (_, bytes, _) = call("GET", &format!("{url}/health"), None, None);
    assert_eq!(
        json_of(&bytes)["queue_length"],
        0,
        "the timed-out job left the queue"
    );

    // Interrupt cancels the running job.
    let (status, _, _) = call(
        "POST",
        &format!("{url}/sdapi/v1/interrupt"),
        Some("{}"),
        key,
    );
    assert_eq!(status, 200);
    let start = Instant::now();
    loop {
        let (_, bytes, _) = call("GET", &format!("{url}/v1/jobs/{running_id}"), None, key);
        if json_of(&bytes)["state"] == "cancelled" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(permit);
}
