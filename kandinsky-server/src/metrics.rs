//! Counters for `GET /metrics` (Prometheus text format).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::jobs::{JobState, JobStore};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    submitted: AtomicU64,
    rejected: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    step_micros: AtomicU64,
    steps: AtomicU64,
}

impl Metrics {
    pub(crate) fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn step(&self, took: Duration) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.step_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, state: &JobState) {
        let counter = match state {
            JobState::Done { .. } => &self.done,
            JobState::Failed { .. } => &self.failed,
            _ => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus exposition of these counters, the queue's length and the jobs the store
    /// holds by state.
    pub fn render(&self, queue_length: usize, store: &JobStore) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP kandinsky_queue_length Jobs waiting.\n# TYPE kandinsky_queue_length gauge\nkandinsky_queue_length {queue_length}"
        );
        let _ = writeln!(
            out,
            "# HELP kandinsky_jobs Jobs the server holds, by state.\n# TYPE kandinsky_jobs gauge"
        );
        for (state, n) in store.count_by_state() {
            let _ = writeln!(out, "kandinsky_jobs{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP kandinsky_jobs_total Jobs by outcome since the start.\n# TYPE kandinsky_jobs_total counter"
        );
        for (outcome, c) in [
            ("submitted", &self.submitted),
            ("rejected", &self.rejected),
            ("done", &self.done),
            ("failed", &self.failed),
            ("cancelled", &self.cancelled),
        ] {
            let _ = writeln!(
                out,
                "kandinsky_jobs_total{{outcome=\"{outcome}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kandinsky_step_seconds Time of a denoising step (prior or decoder).\n# TYPE kandinsky_step_seconds summary\nkandinsky_step_seconds_sum {}\nkandinsky_step_seconds_count {}",
            get(&self.step_micros) as f64 / 1e6,
            get(&self.steps)
        );
        out
    }
}
