//! Matrix products at the prior's, CLIP's and the UNet's linear-layer shapes, burn's matmul:
//! `cargo run --release -p kandinsky-benches --example matmul_profile`.

use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device, median_seconds};

fn main() {
    let device = bench_device();
    println!("backend {}", backend_name());
    // (what, rows, inner, columns)
    let shapes = [
        ("prior qkv/out", 162, 2048, 2048),
        ("prior ff up", 162, 2048, 8192),
        ("prior ff down", 162, 8192, 2048),
        ("prior step qkv", 6, 2048, 2048),
        ("prior step ff up", 6, 2048, 8192),
        ("prior step ff down", 6, 8192, 2048),
        ("clip bigG qkv", 154, 1280, 1280),
        ("clip bigG ff up", 154, 1280, 5120),
        ("clip bigG ff down", 154, 5120, 1280),
        ("unet l1 proj", 2048, 768, 768),
        ("unet l1 ff up", 2048, 768, 6144),
        ("square 2048", 2048, 2048, 2048),
    ];
    for (what, m, k, n) in shapes {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
        let t = median_seconds(&device, 5, || a.clone().matmul(b.clone()));
        let gflops = 2.0 * m as f64 * k as f64 * n as f64 / t / 1e9;
        println!(
            "{what:<20} {m}x{k}x{n}: {:>8.2} ms {gflops:>7.1} GFLOP/s",
            t * 1e3
        );
        // The weight as PyTorch stores it, (n, k), used through a transposed view.
        let bt = b.clone().transpose().into_data();
        let bt = Tensor::<2>::from_data(bt, &device).transpose();
        let t = median_seconds(&device, 5, || a.clone().matmul(bt.clone()));
        println!(
            "{:<20} (n, k) weight viewed transposed: {:>8.2} ms",
            "",
            t * 1e3
        );
        let w = bt.clone().transpose();
        let t = median_seconds(&device, 5, || {
            let out = w.clone().matmul(a.clone().transpose()).transpose();
            out + 0.0
        });
        println!(
            "{:<20} (n, k) weight times xT, transposed back: {:>8.2} ms",
            "",
            t * 1e3
        );
    }
}
