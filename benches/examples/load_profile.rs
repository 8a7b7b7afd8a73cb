//! Loading time and peak resident memory of the real-size weights, one component at a time:
//! `cargo run --release -p kandinsky-benches --example load_profile -- unet|movq|prior|text|image DIR`
//! (DIR: the component's folder, e.g. the `unet/` of the decoder folder written by
//! `tools/reference/reference.py --pipeline22-full`).

use std::time::Instant;

use kandinsky_benches::{bench_device, peak_rss_gb};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, dir] = args.as_slice() else {
        eprintln!("usage: load_profile unet|movq|prior|text|image DIR");
        std::process::exit(2);
    };
    let device = bench_device();
    let dir = std::path::Path::new(dir);
    let start = Instant::now();
    // Loads, then drops the model: only the time and the peak count.
    fn loaded<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), String> {
        r.map(drop).map_err(|e| e.to_string())
    }
    let result = match what.as_str() {
        "unet" => loaded(kandinsky_unet::UNet::load(dir, &device)),
        "movq" => loaded(kandinsky_movq::MoVQ::load(dir, &device)),
        "prior" => loaded(kandinsky_prior::PriorTransformer::load(dir, &device)),
        "text" => loaded(kandinsky_clip::ClipTextModel::load(dir, &device)),
        "image" => loaded(kandinsky_clip::ClipVisionModel::load(dir, &device)),
        other => Err(format!("unknown component {other}")),
    };
    match result {
        Ok(()) => println!(
            "{what}: loaded in {:.2} s, peak RSS {:.2} GB",
            start.elapsed().as_secs_f64(),
            peak_rss_gb().unwrap_or(f64::NAN)
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
