//! One UNet forward at the real Kandinsky 2.2 decoder config (random weights): batch 2 (the
//! negative and positive halves of classifier-free guidance), a 64×64 latent (512×512 image),
//! timestep 999, as the decoder loop calls it once per step.
//!
//! Run with `benches/vs_pytorch.sh unet` to get the PyTorch timing of the same call beside it.

use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device};
use kandinsky_common::tensors::f32_tensor;
use kandinsky_unet::{Conditioning, UNetConfig};

fn main() {
    eprintln!(
        "backend {}, {} rayon threads",
        backend_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    divan::main();
}

#[divan::bench(sample_count = 2, sample_size = 1)]
fn forward_batch2_64x64(bencher: divan::Bencher) {
    let device = bench_device();
    let unet = UNetConfig::kandinsky_2_2(4).init(&device);
    let normal = Distribution::Normal(0.0, 1.0);
    let latents = Tensor::<4>::random([2, 4, 64, 64], normal, &device);
    let image_embeds = Tensor::<2>::random([2, 1280], normal, &device);
    let timestep = f32_tensor::<1>([999.0f32].into(), &device);
    let run = || {
        let conditioning = Conditioning::Image {
            image_embeds: image_embeds.clone(),
        };
        let out = unet
            .forward(latents.clone(), timestep.clone(), conditioning)
            .expect("forward");
        device.sync().expect("sync");
        out
    };
    // Warm-up: materialises the lazily initialised weights (and compiles kernels on GPUs).
    let _ = run();
    bencher.bench_local(run);
}
