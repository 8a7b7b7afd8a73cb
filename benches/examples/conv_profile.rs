//! The 3×3 convolutions of the UNet and the MoVQ decoder at their real shapes, burn's `conv2d`
//! against the path the models take (`kandinsky_common::conv::conv3x3` for the UNet,
//! `conv3x3_large_tiles` for the MoVQ decoder), with the largest difference between the two
//! relative to the output's largest value:
//! `cargo run --release -p kandinsky-benches --example conv_profile`.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Distribution, Tensor};
use kandinsky_benches::{backend_name, bench_device, median_seconds};
use kandinsky_common::conv::{conv3x3, conv3x3_large_tiles};

fn main() {
    let device = bench_device();
    println!("backend {}", backend_name());
    println!(
        "{:<34} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "shape", "conv2d", "ours", "ratio", "GFLOP/s", "error"
    );
    // (what, batch, C_in, C_out, side)
    let shapes = [
        ("UNet level 0", 2, 384, 384, 64),
        ("UNet level 1", 2, 768, 768, 32),
        ("UNet level 2", 2, 1152, 1152, 16),
        ("UNet level 3", 2, 1536, 1536, 8),
        ("MoVQ mid / up 0", 1, 512, 512, 64),
        ("MoVQ up 0", 1, 512, 512, 128),
        ("MoVQ up 1", 1, 256, 256, 256),
        ("MoVQ up 2 (512 -> 256)", 1, 512, 256, 256),
        ("MoVQ up 2 upsample", 1, 256, 256, 512),
        ("MoVQ up 3 (256 -> 128)", 1, 256, 128, 512),
        ("MoVQ up 3", 1, 128, 128, 512),
        ("MoVQ conv_out", 1, 128, 3, 512),
        ("UNet conv_in", 2, 8, 384, 64),
        ("UNet conv_out", 2, 384, 8, 64),
    ];
    for (what, b, c_in, c_out, side) in shapes {
        let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random(
            [b, c_in, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let direct = median_seconds(&device, 3, || conv.forward(x.clone()));
        let path = match what.starts_with("MoVQ") {
            true => conv3x3_large_tiles,
            false => conv3x3,
        };
        let ours = median_seconds(&device, 3, || path(&conv, x.clone()));
        let reference = conv.forward(x.clone());
        let scale = reference.clone().abs().max().into_scalar::<f32>();
        let error = (path(&conv, x.clone()) - reference)
            .abs()
            .max()
            .into_scalar::<f32>()
            / scale;
        let flop = 2.0 * 9.0 * (b * c_in * c_out * side * side) as f64;
        println!(
            "{:<34} {:>8.3}s {:>8.3}s {:>6.2}x {:>9.0} {:>9.1e}",
            format!("{what} {b}x{c_in}x{side}² -> {c_out}"),
            direct,
            ours,
            ours / direct,
            flop / ours / 1e9,
            error
        );
    }
}
