//! Time of each MoVQ decoder block for a 64×64 latent at the real config (random weights):
//! `cargo run --release -p kandinsky-benches --example movq_profile`.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device};
use kandinsky_movq::MoVQConfig;

fn main() {
    let device = bench_device();
    let movq = MoVQConfig::kandinsky().init(&device);
    let latents = Tensor::<4>::random([1, 4, 64, 64], Distribution::Normal(0.0, 1.0), &device);
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
