//! One prior forward at the real Kandinsky 2.2 config (random weights): batch 2 (the negative
//! and positive halves of classifier-free guidance), 77 text tokens of which the first 12 are
//! the prompt, timestep 999, as the prior loop calls it once per step.
//!
//! `step_with_prompt_batch2`: the same step as the loop runs it, the prompt's tokens encoded
//! once before (`encode_prompt`), only the step's three tokens through the transformer.
//!
//! Run with `benches/vs_pytorch.sh prior` to get the PyTorch timing of the same call beside it.

use burn::tensor::{Bool, Distribution, Int, Tensor};
use kandinsky_benches::{backend_name, bench_device};
use kandinsky_common::tensors::f32_tensor;
use kandinsky_common::{LinearLayout, with_linear_layout};
use kandinsky_prior::PriorConfig;

fn main() {
    eprintln!(
        "backend {}, {} rayon threads",
        backend_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    divan::main();
}

/// The inputs of one prior call: x_t, timestep, text embeddings, text hidden states, mask.
type Inputs = (Tensor<2>, Tensor<1>, Tensor<2>, Tensor<3>, Tensor<2, Bool>);

fn inputs(config: &PriorConfig, device: &burn::tensor::Device) -> Inputs {
    let normal = Distribution::Normal(0.0, 1.0);
    let e = config.embedding_dim;
    let x_t = Tensor::<2>::random([2, e], normal, device);
    let text_embeds = Tensor::<2>::random([2, e], normal, device);
    let text_hidden = Tensor::<3>::random([2, 77, e], normal, device);
    let mask: Tensor<2, Bool> = Tensor::<1, Int>::arange(0..77, device)
        .lower_elem(12)
        .unsqueeze_dim::<2>(0)
        .expand([2, 77]);
    let timestep = f32_tensor::<1>([999.0f32].into(), device);
    (x_t, timestep, text_embeds, text_hidden, mask)
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn step_with_prompt_batch2(bencher: divan::Bencher) {
    let device = bench_device();
    let config = PriorConfig::kandinsky_2_2();
    let prior = with_linear_layout(config.init(&device), LinearLayout::StoredView);
    let (x_t, timestep, text_embeds, text_hidden, mask) = inputs(&config, &device);
    let prompt = prior
        .encode_prompt(text_embeds, text_hidden, mask)
        .expect("prompt");
    let run = || {
        let x0 = prior
            .forward_with_prompt(&prompt, x_t.clone(), timestep.clone())
            .expect("step");
        device.sync().expect("sync");
        x0
    };
    let _ = run();
    bencher.bench_local(run);
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn forward_batch2(bencher: divan::Bencher) {
    let device = bench_device();
    let config = PriorConfig::kandinsky_2_2();
    let prior = with_linear_layout(config.init(&device), LinearLayout::StoredView);
    let (x_t, timestep, text_embeds, text_hidden, mask) = inputs(&config, &device);
    let run = || {
        let x0 = prior
            .forward(
                x_t.clone(),
                timestep.clone(),
                text_embeds.clone(),
                text_hidden.clone(),
                mask.clone(),
            )
            .expect("forward");
        device.sync().expect("sync");
        x0
    };
    // Warm-up: materialises the lazily initialised weights (and compiles kernels on GPUs).
    let _ = run();
    bencher.bench_local(run);
}
