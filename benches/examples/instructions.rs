//! One small UNet or MoVQ call for instruction counting under callgrind
//! (`benches/instructions.sh`), where counts are repeatable on a noisy machine (unlike times):
//!
//! - `unet`: the 2.2 decoder UNet's architecture at a quarter of its widths (96, 192, 288, 384;
//!   head dim 32, 32 groups: every block type and op of the real one), batch 2, 8×8 latent;
//! - `movq`: the published MoVQ configuration, decode of a 1 × 4 × 8 × 8 latent → 64 × 64.
//!
//! Weights are random; one warm-up call materialises them (burn initialises lazily), then only
//! the call inside `measured` is counted (`--toggle-collect`). Under callgrind the random
//! initialisation and the warm-up dominate the run time (the MoVQ: 19 minutes on the
//! development machine), not the counted call.

use burn::tensor::{Device, Distribution, Tensor};
use kandinsky_benches::bench_device;
use kandinsky_common::tensors::f32_tensor;
use kandinsky_movq::MoVQConfig;
use kandinsky_unet::{Conditioning, UNetConfig};

#[inline(never)]
fn measured<T>(f: impl FnOnce() -> T) -> T {
    f()
}

fn unet(device: &Device) {
    let mut config = UNetConfig::kandinsky_2_2(4);
    config.block_out_channels = vec![96, 192, 288, 384];
    config.attention_head_dim = 32;
    let unet = config.init(device);
    let normal = Distribution::Normal(0.0, 1.0);
    let latents = Tensor::<4>::random([2, 4, 8, 8], normal, device);
    let image_embeds = Tensor::<2>::random([2, 1280], normal, device);
    let timestep = f32_tensor::<1>([999.0f32].into(), device);
    let call = || {
        let conditioning = Conditioning::Image {
            image_embeds: image_embeds.clone(),
        };
        let out = unet
            .forward(latents.clone(), timestep.clone(), conditioning)
            .expect("forward");
        device.sync().expect("sync");
        out
    };
    let _ = call();
    let out = measured(call);
    println!("unet: output {:?}", out.dims());
}

fn movq(device: &Device) {
    let movq = MoVQConfig::kandinsky().init(device);
    let latents = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 1.0), device);
    let call = || {
        let out = movq.decode(latents.clone(), true).expect("decode");
        device.sync().expect("sync");
        out
    };
    let _ = call();
    let out = measured(call);
    println!("movq: output {:?}", out.dims());
}

fn main() {
    let device = bench_device();
    match std::env::args().nth(1).as_deref() {
        Some("unet") => unet(&device),
        Some("movq") => movq(&device),
        _ => {
            eprintln!("usage: instructions unet|movq");
            std::process::exit(2);
        }
    }
}
