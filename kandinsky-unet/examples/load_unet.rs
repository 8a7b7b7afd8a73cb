//! Loads a diffusers `unet/` folder and reports the load time and the process's peak resident
//! memory (Linux), e.g. for the real-size checkpoint written by
//! `tools/reference/reference.py --unet-full DIR`:
//!
//! ```text
//! cargo run --release -p kandinsky-unet --example load_unet -- DIR
//! ```

use std::time::Instant;

use burn::tensor::Device;
use kandinsky_unet::UNet;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: load_unet UNET_DIR");
        std::process::exit(2);
    };
    let device = Device::flex();
    let start = Instant::now();
    let unet = match UNet::load(dir.as_ref(), &device) {
        Ok(unet) => unet,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let params = burn::module::Module::num_params(&unet);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!("loaded {params} parameters in {seconds:.1} s");
    if let Some(kib) = peak_rss_kib() {
        let peak = kib as f64 * 1024.0;
        println!(
            "peak RSS {:.2} GB for {:.2} GB of weights files: {:.2}x",
            peak / 1e9,
            bytes as f64 / 1e9,
            peak / bytes as f64
        );
    }
}
