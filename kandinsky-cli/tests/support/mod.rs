//! `kandinsky serve` as a child process over the small fixture pipeline, for the server's
//! end-to-end tests.

#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kandinsky_testing::corpus::Workspace;

/// A fixture workspace: the prior, the plain decoder (`decoder/`), an inpainting decoder
/// (`inpaint/`) and a ControlNet-depth decoder (`controlnet/`).
pub fn workspace() -> Workspace {
    let work = Workspace::new("decoder_unet32");
    work.add_decoder("inpaint", "unet_22_inpaint");
    work.add_decoder("controlnet", "unet_22_controlnet32");
    work
}

/// The `kandinsky serve` command over `work`, with a private home and no network.
pub fn command(work: &Workspace, extra: &[&str]) -> Command {
    let home = work.path().join("home");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kandinsky"));
    cmd.arg("serve")
        .arg("--prior")
        .arg(work.prior())
        .arg("--decoder")
        .arg(work.decoder())
        .args(extra)
        .env("HOME", &home)
        .env("KANDINSKY_CACHE", home.join("kandinsky"))
        .env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("KANDINSKY_API_KEY");
    cmd
}

/// A running server.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub work: Workspace,
}

/// Starts `kandinsky serve` over [`workspace`] with its inpainting and ControlNet decoders on
/// a free loopback port, and waits for its URL.
pub fn start(extra: &[&str]) -> Served {
    let work = workspace();
    let inpaint = work.path().join("inpaint");
    let controlnet = work.path().join("controlnet");
    let mut args = vec![
        "--port",
        "0",
        "--quiet",
        "--inpaint-decoder",
        inpaint.to_str().unwrap(),
        "--controlnet-decoder",
        controlnet.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    start_in(work, &args)
}

/// Starts `kandinsky serve` over `work` with `args` and waits for the URL it prints.
pub fn start_in(work: Workspace, args: &[&str]) -> Served {
    let mut child = command(&work, args)
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
        .unwrap_or_else(|| panic!("no URL: {line:?}"))
        .to_string();
    Served { child, url, work }
}

impl Served {
    /// SIGTERM, then its exit status (within 20 s).
    pub fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The resident set size of the server process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture images, base64.
pub fn fixture_b64(name: &str) -> String {
    use base64::Engine;
    let bytes = std::fs::read(kandinsky_testing::fixtures_dir().join("modes").join(name)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Polls the job until it is final (within 120 s); its last state.
pub fn wait(url: &str, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let job: serde_json::Value = ureq::get(&format!("{url}/v1/jobs/{id}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if ["done", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
