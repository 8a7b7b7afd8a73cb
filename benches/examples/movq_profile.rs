//! Time of each MoVQ decoder block for a 64×64 latent at the real config (random weights):
//! `cargo run --release -p kandinsky-benches --example movq_profile`. `SIDE` sets the latent's
//! side, `SCALE` its standard deviation (1 by default).

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device};
use kandinsky_movq::MoVQConfig;

fn main() {
    let device = bench_device();
    let movq = MoVQConfig::kandinsky().init(&device);
    let side: usize = std::env::var("SIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let scale: f64 = std::env::var("SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let latents = Tensor::<4>::random(
        [1, 4, side, side],
        Distribution::Normal(0.0, scale),
        &device,
    );
    let _ = movq.decode(latents.clone(), true).expect("warm-up");
    device.sync().expect("sync");
    println!("backend {}", backend_name());
    let start = Instant::now();
    let mut last = start;
    let _ = movq
        .decode_traced(latents, true, &mut |name, a| {
            let kandinsky_movq::Activation::Map(t) = a else {
                return;
            };
            t.device().sync().expect("sync");
            let now = Instant::now();
            println!(
                "{name:<24} {:>8.2} s  {:?}",
                (now - last).as_secs_f64(),
                t.dims()
            );
            last = now;
        })
        .expect("decode");
    println!("total {:.2} s", start.elapsed().as_secs_f64());
}
