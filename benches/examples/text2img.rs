//! A whole Kandinsky 2.2 generation from prior and decoder folders, reporting the time and the
//! process's peak resident memory (Linux), e.g. on the real-size random-weight folders written
//! by `tools/reference/reference.py --pipeline22-full DIR`:
//!
//! ```text
//! cargo run --release -p kandinsky-benches --example text2img -- PRIOR_DIR DECODER_DIR \
//!     [PRIOR_STEPS DECODER_STEPS SIZE]
//! ```

use std::time::Instant;

use kandinsky_benches::{backend_name, bench_device};
use kandinsky_pipeline::{Kandinsky, Request, Residency};

fn peak_rss_gb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0 / 1e9)
}

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
    match pipeline.generate(&request).and_then(|out| out.images()) {
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
