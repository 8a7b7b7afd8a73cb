//! End-to-end parity of the 2.1 decoder with diffusers' `KandinskyPipeline`, on the small UNet
//! and MoVQ fixtures, a small MultilingualCLIP that fits them with the XLM-R tokenizer fixture
//! (a Cyrillic prompt, the empty negative prompt), and the 2.1 DDIM scheduler: 3 steps,
//! guidance 4, a 128×192 image, the reference's initial latents supplied (DDIM with η = 0 draws
//! no noise).
//!
//! Bound (the issue's): latents after every step and the image within
//! 1e-3 · max(1, max |reference|), as for the 2.2 decoder.

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use kandinsky_clip::{MultilingualClip, TextTokenizer};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::load_scheduler;
use kandinsky_pipeline::{DecoderOptions, Rng, decode_v21};
use kandinsky_testing::{assert_close, fixtures_dir, test_device};
use kandinsky_unet::UNet;

const TOLERANCE: f32 = 1e-3;

#[test]
fn decoder_21_matches_the_reference_pipeline() {
    let fixtures = fixtures_dir();
    let dir = fixtures.join("pipeline21");
    let r: BTreeMap<String, TensorData> =
        read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let device = test_device();
    let unet = UNet::load(&fixtures.join("unet_21/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures.join("movq/movq"), &device).unwrap();
    let text_encoder = MultilingualClip::load(&dir.join("text_encoder"), &device).unwrap();
    let tokenizer = TextTokenizer::from_dir(&fixtures.join("tokenizers/xlmr")).unwrap();
    let mut scheduler =
        load_scheduler(&fixtures.join("schedulers/ddim/scheduler_config.json")).unwrap();
    let prompt = std::fs::read_to_string(dir.join("prompt.txt")).unwrap();
    let options = DecoderOptions {
        height: 128,
        width: 192,
        steps: 3,
        guidance_scale: 4.0,
    };
    let mut steps = Vec::new();
    // DDIM draws nothing from it.
    let mut noise = Rng::new(0);
    let image = decode_v21(
        &unet,
        &movq,
        &text_encoder,
        &tokenizer,
        scheduler.as_mut(),
        &[prompt.trim_end()],
        None,
        Tensor::from_data(r["image_embeds"].clone(), &device),
        Tensor::from_data(r["negative_image_embeds"].clone(), &device),
        Some(Tensor::from_data(r["latents"].clone(), &device)).into(),
        &options,
        &mut noise,
        &mut |_, latents| steps.push(latents.clone().to_host()),
    )
    .unwrap();
    assert_eq!(steps.len(), 3);
    for (i, latents) in steps.into_iter().enumerate() {
        assert_close(
            &format!("latents after step {i}"),
            latents,
            &r[&format!("latents.{i}")],
            TOLERANCE,
        );
    }
    assert_close("image", image.to_host(), &r["image"], TOLERANCE);
}
