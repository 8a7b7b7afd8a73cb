//! `kandinsky serve` as a process: it refuses a public address without a key before loading
//! anything, serves a job with the small fixture pipeline on a loopback port, and stops on
//! SIGTERM with exit code 0.

mod support;

use std::time::{Duration, Instant};

use kandinsky_testing::corpus::Workspace;

fn serve(work: &Workspace, extra: &[&str]) -> std::process::Command {
    support::command(work, extra)
}

#[test]
fn a_public_address_without_a_key_is_refused_before_loading() {
    let work = Workspace::new("decoder_unet32");
    let out = serve(&work, &["--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("API key") && !err.contains("loading"), "{err}");
}

#[test]
fn serves_a_job_and_stops_on_sigterm() {
    let mut served = support::start_in(
        Workspace::new("decoder_unet32"),
        &["--port", "0", "--quiet"],
    );
    let url = served.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let body = serde_json::json!({"prompt": "a red cat", "width": 64, "height": 64,
                                  "steps": 2, "prior_steps": 2, "seed": 3});
    let job: serde_json::Value = ureq::post(&format!("{url}/v1/jobs"))
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let start = Instant::now();
    loop {
        let job: serde_json::Value = ureq::get(&format!("{url}/v1/jobs/{id}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if job["state"] == "done" {
            break;
        }
        assert!(job["state"] != "failed", "{job}");
        assert!(start.elapsed() < Duration::from_secs(120), "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let png = ureq::get(&format!("{url}/v1/jobs/{id}/images/0"))
        .call()
        .unwrap();
    assert_eq!(png.content_type(), "image/png");

    // SIGTERM: a clean stop.
    let status = served.stop();
    assert_eq!(status.code(), Some(0));
    // The zero-image embedding the job computed was kept for the next start.
    let cached = std::fs::read_dir(served.work.path().join("home/kandinsky/zero-image-embeds"))
        .unwrap()
        .count();
    assert_eq!(cached, 1);
}
