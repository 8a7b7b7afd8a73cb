//! The Kandinsky 2.2 prior's text encoder, CLIP ViT-bigG/14 text tower with projection (random
//! weights): batch 2 (the prompt and the negative prompt) × 77 tokens, as the prior pipeline
//! calls it once per generation.
//!
//! Run with `benches/vs_pytorch.sh clip` to get the PyTorch timing of the same call beside it.

use burn::tensor::{Int, Tensor};
use kandinsky_benches::{backend_name, bench_device};
use kandinsky_clip::config::{ClipTextConfig, HiddenAct};

fn main() {
    eprintln!(
        "backend {}, {} rayon threads",
        backend_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    divan::main();
}

/// The published bigG text config (laion/CLIP-ViT-bigG-14-laion2B-39B-b160k).
fn big_g() -> ClipTextConfig {
    ClipTextConfig {
        vocab_size: 49408,
        hidden_size: 1280,
        intermediate_size: 5120,
        projection_dim: 1280,
        num_hidden_layers: 32,
        num_attention_heads: 20,
        max_position_embeddings: 77,
        hidden_act: HiddenAct::Gelu,
        layer_norm_eps: 1e-5,
        eos_token_id: 2,
    }
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn text_bigg_batch2x77(bencher: divan::Bencher) {
    let device = bench_device();
    let encoder = big_g().init(&device);
    // SOT, 10 prompt tokens, EOT, then EOT padding (the 2.2 tokenizer's pad token).
    let row: Vec<i64> = (0..77)
        .map(|i| match i {
            0 => 49406,
            1..=10 => 320 + i,
            _ => 49407,
        })
        .collect();
    let ids = Tensor::<1, Int>::from_ints(row.as_slice(), &device)
        .unsqueeze_dim::<2>(0)
        .expand([2, 77]);
    let run = || {
        let out = encoder.forward(ids.clone()).expect("forward");
        device.sync().expect("sync");
        out
    };
    // Warm-up: materialises the lazily initialised weights (and compiles kernels on GPUs).
    let _ = run();
    bencher.bench_local(run);
}
