//! MoVQ decode of a 64×64 latent to a 512×512 image at the real Kandinsky config (random
//! weights), batch 1, as the pipelines call it (`force_not_quantize = true`).
//!
//! Run with `benches/vs_pytorch.sh movq` to get the PyTorch timing of the same call beside it.

use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device};
use kandinsky_movq::MoVQConfig;

fn main() {
    eprintln!(
        "backend {}, {} rayon threads",
        backend_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    divan::main();
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn decode_64x64_to_512x512(bencher: divan::Bencher) {
    let device = bench_device();
    let movq = MoVQConfig::kandinsky().init(&device);
    let latents = Tensor::<4>::random([1, 4, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    // Warm-up: materialises the lazily initialised weights (and compiles kernels on GPUs).
    let _ = movq.decode(latents.clone(), true).expect("decode");
    device.sync().expect("sync");
    bencher.bench_local(|| {
        let image = movq.decode(latents.clone(), true).expect("decode");
        device.sync().expect("sync");
        image
    });
}
