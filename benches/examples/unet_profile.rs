//! Where the time of a UNet forward goes, at the real Kandinsky 2.2 config (random weights),
//! batch 2, 64×64 latent: `cargo run --release -p kandinsky-benches --example unet_profile`.
//!
//! Prints the time of each block of one traced forward, then, per level, the time of one
//! resnet, one of its 3×3 convs, one GroupNorm and one attention run alone at that level's
//! shape, with the conv's arithmetic rate.

use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device, median_seconds};
use kandinsky_common::conv::conv3x3;
use kandinsky_common::tensors::f32_tensor;
use kandinsky_unet::attention::Attention;
use kandinsky_unet::resnet::{Resample, ResnetBlock2D, ResnetSizes};
use kandinsky_unet::{Conditioning, UNetConfig};

const BATCH: usize = 2;
const REPEATS: usize = 3;

fn main() {
    let device = bench_device();
    let config = UNetConfig::kandinsky_2_2(4);
    let unet = config.init(&device);
    let normal = Distribution::Normal(0.0, 1.0);
    let latents = Tensor::<4>::random([BATCH, 4, 64, 64], normal, &device);
    let image_embeds = Tensor::<2>::random([BATCH, 1280], normal, &device);
    let timestep = f32_tensor::<1>([999.0f32].into(), &device);
    let conditioning = || Conditioning::Image {
        image_embeds: image_embeds.clone(),
    };
    let _ = unet
        .forward(latents.clone(), timestep.clone(), conditioning())
        .expect("warm-up");
    device.sync().expect("sync");
    println!("backend {}\n\nper block (one forward):", backend_name());
    let start = Instant::now();
    let mut last = start;
    let _ = unet
        .forward_traced(latents, timestep, conditioning(), &mut |name, _| {
            device.sync().expect("sync");
            let now = Instant::now();
            println!("  {name:<20} {:>7.2} s", (now - last).as_secs_f64());
            last = now;
        })
        .expect("forward");
    println!(
        "  total                {:>7.2} s",
        start.elapsed().as_secs_f64()
    );

    println!("\nper level, one op alone (batch {BATCH}, median of {REPEATS}):");
    println!("  level  shape          resnet   conv3x3  (GFLOP/s)  groupnorm  attention");
    let time_dim = config.time_embed_dim();
    let emb = Tensor::<2>::random([BATCH, time_dim], normal, &device);
    let context = Tensor::<3>::random([BATCH, 32, 768], normal, &device);
    for (level, &c) in config.block_out_channels.iter().enumerate() {
        let s = 64 >> level;
        let x = Tensor::<4>::random([BATCH, c, s, s], normal, &device);
        let sizes = ResnetSizes {
            groups: 32,
            eps: 1e-5,
            time: time_dim,
        };
        let resnet = ResnetBlock2D::new(c, c, sizes, Resample::None, &device);
        let conv = Conv2dConfig::new([c, c], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let norm = GroupNormConfig::new(32, c).with_epsilon(1e-5).init(&device);
        let attention = Attention::new(c, 64, 768, 32, &device);
        let t_resnet = median_seconds(&device, REPEATS, || resnet.forward(x.clone(), &emb));
        let t_conv = median_seconds(&device, REPEATS, || conv3x3(&conv, x.clone()));
        let t_norm = median_seconds(&device, REPEATS, || norm.forward(x.clone()));
        let t_attn = median_seconds(&device, REPEATS, || attention.forward(x.clone(), &context));
        let flop = 2.0 * (BATCH * s * s * c * c * 9) as f64;
        println!(
            "  {level}      {c:>4}×{s:>2}×{s:<2}    {t_resnet:>6.3} s  {t_conv:>6.3} s  ({:>5.1})    {t_norm:>6.3} s   {t_attn:>6.3} s",
            flop / t_conv / 1e9
        );
    }
}
