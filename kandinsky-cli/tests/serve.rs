//! `kandinsky serve` as a process: it refuses a public address without a key before loading
//! anything, serves a job with the small fixture pipeline on a loopback port, and stops on
//! SIGTERM with exit code 0.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
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
    let work = Workspace::new("decoder_unet32");
    let mut child = serve(&work, &["--port", "0", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
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
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The zero-image embedding the job computed was kept for the next start.
    let cached = std::fs::read_dir(work.path().join("home/kandinsky/zero-image-embeds"))
        .unwrap()
        .count();
    assert_eq!(cached, 1);
}
