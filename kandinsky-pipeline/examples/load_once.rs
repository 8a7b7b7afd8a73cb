//! One pipeline, two generations: with `resident` (the default) the models load during the
//! first generation and the second loads nothing; with `sequential` each stage loads for its
//! turn every time, for a lower peak memory. Prints the time spent loading and generating, and
//! the process's peak resident memory (Linux), e.g. on the real-size random-weight folders of
//! `tools/reference/reference.py --pipeline22-full DIR`:
//!
//! ```text
//! cargo run --release -p kandinsky-pipeline --example load_once -- \
//!     DIR/kandinsky-2-2-prior DIR/kandinsky-2-2-decoder [resident|sequential] \
//!     [PRIOR_STEPS DECODER_STEPS SIZE]
//! ```

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::Device;
use kandinsky_pipeline::{Event, Hooks, Kandinsky, Request, Residency};

fn peak_rss_gb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kib.map_or(f64::NAN, |k| k * 1024.0 / 1e9)
}

/// Runs `request`, returning (seconds in all, seconds loading, components loaded).
fn timed(
    pipeline: &mut Kandinsky,
    request: &Request,
) -> Result<(f64, f64, Vec<&'static str>), kandinsky_pipeline::PipelineError> {
    let start = Instant::now();
    let mut loading: Option<Instant> = None;
    let mut load_seconds = 0.0;
    let mut loaded = Vec::new();
    let mut on_event = |event: Event<'_>| {
        match event {
            Event::Loading(component) => {
                loaded.push(component);
                loading = Some(Instant::now());
            }
            Event::Loaded(_) => {
                if let Some(since) = loading.take() {
                    load_seconds += since.elapsed().as_secs_f64();
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    };
    let images = pipeline
        .generate_with(request, Hooks::default().on_event(&mut on_event))?
        .images()?;
    let path = std::env::temp_dir().join("kandinsky-load-once.png");
    images[0].save_png(&path)?;
    Ok((start.elapsed().as_secs_f64(), load_seconds, loaded))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [prior, decoder, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: load_once PRIOR_DIR DECODER_DIR [resident|sequential] \
             [PRIOR_STEPS DECODER_STEPS SIZE]"
        );
        std::process::exit(2);
    };
    let residency = match rest.first().map(String::as_str) {
        None | Some("resident") => Residency::Resident,
        Some("sequential") => Residency::Sequential,
        Some(other) => return Err(format!("unknown residency {other:?}").into()),
    };
    let number =
        |i: usize, default: usize| rest.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let size = number(3, 512);
    let request = Request::text_to_image("a red cat sitting on a windowsill")
        .with_prior_steps(number(1, 25))
        .with_steps(number(2, 100))
        .with_size(size, size);

    let device = Device::flex();
    let start = Instant::now();
    let mut pipeline = Kandinsky::from_folders(prior.as_ref(), decoder.as_ref(), &device)?
        .with_residency(residency);
    println!(
        "{residency:?}: opened in {:.2} s (nothing loaded yet)",
        start.elapsed().as_secs_f64()
    );
    for run in 1..=2 {
        let (all, loading, loaded) = timed(&mut pipeline, &request.clone().with_seed(run))?;
        println!(
            "generation {run}: {all:.1} s, of which loading {loading:.1} s ({}); peak RSS so far \
             {:.2} GB",
            if loaded.is_empty() {
                "nothing loaded".to_string()
            } else {
                loaded.join(", ")
            },
            peak_rss_gb()
        );
    }
    Ok(())
}
