//! A bounded load test of `kandinsky serve` on loopback: 50 clients submit 200 small jobs
//! (4 each, spread over about 6 s) against a queue of 8, some cancelling theirs, each
//! following its job to the end as a client does. Every submission is accepted (202) or
//! refused (429 with `Retry-After`); every accepted job ends done or cancelled, every done
//! job's image is fetched, the metrics agree, and the server's memory stays steady.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

const CLIENTS: usize = 50;
const JOBS: usize = 200;
const QUEUE: &str = "8";

#[derive(Default)]
struct Tally {
    /// Id, whether the client cancelled it, its final state.
    accepted: Vec<(String, bool, String)>,
    rejected: usize,
    other: Vec<String>,
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn fifty_clients_two_hundred_jobs_a_queue_of_eight() {
    let served = support::start(&["--queue", QUEUE]);
    let url = served.url.clone();
    let body = json!({"prompt": "a red cat", "width": 64, "height": 64, "steps": 2,
                      "prior_steps": 2});
    // Warm up (the zero-image embedding, the preview fit), then the memory to compare with.
    let warm: Value = ureq::post(&format!("{url}/v1/jobs"))
        .send_json(body.clone())
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(
        support::wait(&url, warm["id"].as_str().unwrap())["state"],
        "done"
    );
    let rss_before = served.rss_kib();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, body, tally) = (url.clone(), body.clone(), tally.clone());
            std::thread::spawn(move || {
                for n in 0..JOBS / CLIENTS {
                    // Submissions spread over about 6 s (a fixed pattern), so that the queue
                    // drains and fills again while they come.
                    let pause = (client * 131 + n * 977) % 1500;
                    std::thread::sleep(std::time::Duration::from_millis(pause as u64));
                    let mut body = body.clone();
                    body["seed"] = json!(client * 100 + n);
                    match ureq::post(&format!("{url}/v1/jobs")).send_json(body) {
                        Ok(r) => {
                            assert_eq!(r.status(), 202);
                            let job: Value = r.into_json().unwrap();
                            let id = job["id"].as_str().unwrap().to_string();
                            // Every seventh client cancels what it submitted.
                            let cancel = client % 7 == 0;
                            if cancel {
                                ureq::post(&format!("{url}/v1/jobs/{id}/cancel"))
                                    .call()
                                    .unwrap();
                            }
                            // As a client does: follow it to the end, fetch the result.
                            let job = support::wait(&url, &id);
                            let state = job["state"].as_str().unwrap().to_string();
                            if state == "done" {
                                let png = ureq::get(&format!("{url}/v1/jobs/{id}/images/0"))
                                    .call()
                                    .unwrap();
                                assert_eq!(png.content_type(), "image/png");
                            }
                            tally.lock().unwrap().accepted.push((id, cancel, state));
                        }
                        Err(ureq::Error::Status(429, r)) => {
                            assert_eq!(r.header("retry-after"), Some("5"));
                            tally.lock().unwrap().rejected += 1;
                        }
                        Err(e) => tally.lock().unwrap().other.push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    assert!(tally.other.is_empty(), "{:?}", tally.other);
    assert_eq!(
        tally.accepted.len() + tally.rejected,
        JOBS,
        "accepted + rejected = submitted"
    );
    assert!(
        tally.rejected > 0,
        "a queue of {QUEUE} refuses some of {JOBS} at once"
    );

    let (mut done, mut cancelled) = (0, 0);
    for (id, asked_to_cancel, state) in &tally.accepted {
        match state.as_str() {
            "done" => done += 1,
            // Only the jobs asked to be cancelled are (a running one may finish first).
            "cancelled" => {
                assert!(asked_to_cancel, "{id} was cancelled unasked");
                cancelled += 1;
            }
            other => panic!("{id}: {other}"),
        }
    }
    let all_in = started.elapsed();
    assert_eq!(done + cancelled, tally.accepted.len());

    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    // The warm-up job is counted too.
    assert_eq!(
        metric(&metrics, "kandinsky_jobs_total{outcome=\"submitted\"}") as usize,
        tally.accepted.len() + 1
    );
    assert_eq!(
        metric(&metrics, "kandinsky_jobs_total{outcome=\"rejected\"}") as usize,
        tally.rejected
    );
    assert_eq!(metric(&metrics, "kandinsky_queue_length "), 0.0);
    assert_eq!(
        metric(&metrics, "kandinsky_jobs_total{outcome=\"done\"}") as usize,
        done + 1
    );
    assert_eq!(
        metric(&metrics, "kandinsky_jobs_total{outcome=\"cancelled\"}") as usize,
        cancelled
    );

    let rss_after = served.rss_kib();
    eprintln!(
        "load: {JOBS} submitted by {CLIENTS} clients: {} accepted ({done} done, \
         {cancelled} cancelled), {} refused with 429; all finished in {:.1} s; RSS {} MiB \
         before, {} MiB after",
        tally.accepted.len(),
        tally.rejected,
        all_in.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024,
    );
    // Steady: the finished jobs kept (64 small PNGs) and allocator slack, not growth per job.
    assert!(
        rss_after < rss_before + rss_before / 4 + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
