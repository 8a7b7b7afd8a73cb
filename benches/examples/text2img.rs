//! A whole Kandinsky 2.2 generation from prior and decoder folders, reporting the time and the
//! process's peak resident memory (Linux), e.g. on the real-size random-weight folders written
//! by `tools/reference/reference.py --pipeline22-full DIR`:
//!
//! ```text
//! cargo run --release -p kandinsky-benches --example text2img -- PRIOR_DIR DECODER_DIR \
//!     [PRIOR_STEPS DECODER_STEPS SIZE]
//! ```

use std::ops::ControlFlow;
use std::time::Instant;

use kandinsky_benches::{backend_name, bench_device, peak_rss_gb};
use kandinsky_pipeline::{Event, Hooks, Kandinsky, Request, Residency};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: text2img PRIOR_DIR DECODER_DIR [PRIOR_STEPS DECODER_STEPS SIZE]");
        std::process::exit(2);
    }
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let device = bench_device();
    // One generation: each stage loads for its turn, as a one-shot command does.
    let mut pipeline = match Kandinsky::from_folders(args[0].as_ref(), args[1].as_ref(), &device) {
        Ok(p) => p.with_residency(Residency::Sequential),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let size = number(4, 512);
    let request = Request::text_to_image("a red cat sitting on a windowsill")
        .with_prior_steps(number(2, 25))
        .with_steps(number(3, 100))
        .with_size(size, size);
    let start = Instant::now();
    // Where the time goes: loading each component, the prior's and the decoder's steps, the
    // MoVQ decode (printed to stderr; the last stdout line stays the summary).
    let mut phases: Vec<(String, f64)> = Vec::new();
    let mut mark = Instant::now();
    let mut current = String::from("start");
    let mut on_event = |event: Event<'_>| {
        let next = match event {
            Event::Loading(what) => format!("load {what}"),
            Event::Loaded(_) => "compute".to_string(),
            Event::PriorStep(_) => "prior steps".to_string(),
            Event::DecoderStep(_) => "decoder steps".to_string(),
            Event::Decoding => "movq decode".to_string(),
        };
        let took = mark.elapsed().as_secs_f64();
        mark = Instant::now();
        match phases.last_mut() {
            Some((name, t)) if *name == current => *t += took,
            _ => phases.push((current.clone(), took)),
        }
        current = next;
        ControlFlow::Continue(())
    };
    let result = pipeline
        .generate_with(&request, Hooks::default().on_event(&mut on_event))
        .and_then(|out| out.images());
    phases.push((current, mark.elapsed().as_secs_f64()));
    for (name, seconds) in &phases {
        eprintln!("  {name}: {seconds:.1} s");
    }
    match result {
        Ok(images) => {
            let path = std::env::temp_dir().join("kandinsky-text2img.png");
            images[0].save_png(&path).expect("write the PNG");
            println!(
                "{}: {}x{} image, prior {} steps, decoder {} steps, in {:.1} s; peak RSS {:.2} GB; {}",
                backend_name(),
                images[0].width,
                images[0].height,
                request.prior.steps,
                request.decoder.steps,
                start.elapsed().as_secs_f64(),
                peak_rss_gb().unwrap_or(f64::NAN),
                path.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
