//! Attention at the UNet's and the MoVQ's shapes, burn's fused kernel against
//! `kandinsky_common::attention::attention` (the path the models take):
//! `cargo run --release -p kandinsky-benches --example attention_profile`.

use burn::tensor::module::attention as sdpa;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device, median_seconds};
use kandinsky_common::attention::attention;

fn main() {
    let device = bench_device();
    println!("backend {}", backend_name());
    println!("{:<36} {:>9} {:>9} {:>7}", "shape", "burn", "ours", "ratio");
    // (what, batch, heads, queries, keys, head width)
    let shapes = [
        ("UNet level 1", 2, 12, 1024, 1024 + 32, 64),
        ("UNet level 2", 2, 18, 256, 256 + 32, 64),
        ("UNet level 3", 2, 24, 64, 64 + 32, 64),
        ("MoVQ mid block", 1, 1, 4096, 4096, 512),
    ];
    for (what, b, heads, l, s, d) in shapes {
        let random =
            |n| Tensor::<4>::random([b, heads, n, d], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (random(l), random(s), random(s));
        let fused = median_seconds(&device, 3, || {
            sdpa(
                q.clone(),
                k.clone(),
                v.clone(),
                None,
                None,
                AttentionModuleOptions::default(),
            )
        });
        let ours = median_seconds(&device, 3, || attention(q.clone(), k.clone(), v.clone()));
        println!(
            "{:<36} {:>8.3}s {:>8.3}s {:>6.2}x",
            format!("{what} {b}x{heads}x{l}x{d}, {s} keys"),
            fused,
            ours,
            ours / fused
        );
    }
}
