//! The worker thread: owns the [`Generator`] and runs one job at a time from the queue.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use kandinsky_pipeline::PipelineError;

use crate::generator::{Generator, Progress};
use crate::jobs::{Job, JobQueue, JobState, JobStore};
use crate::metrics::Metrics;

/// Starts the worker; it ends when the queue is closed.
pub(crate) fn spawn(
    queue: Arc<dyn JobQueue>,
    store: Arc<JobStore>,
    metrics: Arc<Metrics>,
    mut generator: Box<dyn Generator>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("kandinsky-worker".into())
        .spawn(move || {
            while let Some(job) = queue.pop() {
                run(&job, generator.as_mut(), &metrics);
                metrics.finished(&job.state());
                store.finished(&job);
            }
        })
        .expect("a worker thread")
}

fn running(stage: &'static str, step: usize, of: usize) -> JobState {
    JobState::Running { stage, step, of }
}

fn run(job: &Job, generator: &mut dyn Generator, metrics: &Metrics) {
    if job.is_cancelled() {
        job.set_state(JobState::Cancelled);
        return;
    }
    job.set_state(running("loading", 0, 0));
    let mut last = Instant::now();
    let mut progress = |p: Progress| {
        match p {
            Progress::Loading(_) => job.set_state(running("loading", 0, 0)),
            Progress::Step { stage, step, of } => {
                metrics.step(last.elapsed());
                last = Instant::now();
                job.set_state(running(stage, step, of));
            }
            Progress::Preview(png) => {
                if let JobState::Running { step, .. } = job.state() {
                    job.set_preview(step, png);
                }
            }
            Progress::Decoding => job.set_state(running("decoding", 0, 0)),
        }
        match job.is_cancelled() {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    };
    // A panic in a generation fails that job, not the server.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        generator.generate(&job.request, &mut progress)
    }));
    match result {
        Ok(Ok(images)) => job.finish(images),
        Ok(Err(PipelineError::Cancelled { .. })) => job.set_state(JobState::Cancelled),
        Ok(Err(e)) => job.set_state(JobState::Failed {
            code: match e.is_invalid_input() {
                true => "invalid_request",
                false => "generation_failed",
            },
            message: chain(&e),
        }),
        Err(_) => job.set_state(JobState::Failed {
            code: "generation_failed",
            message: "the generation panicked (a bug: please report it)".into(),
        }),
    }
}

/// An error with its sources, as one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
