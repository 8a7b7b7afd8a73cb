//! End-to-end parity of the decoder modes with diffusers' pipelines on the small UNet and MoVQ
//! fixtures and a 64×64 source picture read from its PNG by [`Image::open`] (the reference
//! got the same file as a PIL image and ran its own preprocessing), guidance 4, every noise
//! draw of the reference supplied:
//! - image-to-image 2.2 (`KandinskyV22Img2ImgPipeline`, DDPM, 6 steps at strength 0.5);
//! - image-to-image 2.1 (`KandinskyImg2ImgPipeline`, DDIM, 6 steps at strength 0.5, its own
//!   noising at t = 498, the small MultilingualCLIP and XLM-R tokenizer);
//! - ControlNet-depth 2.2 (`KandinskyV22ControlnetPipeline`, DDPM, 3 steps, a random hint);
//! - inpainting 2.1 (`KandinskyInpaintPipeline`, DDIM) and 2.2 (`KandinskyV22InpaintPipeline`,
//!   DDPM, a 9-channel UNet stored as fp16), 3 steps, an 80×80 grey mask PNG that both resize
//!   to 64×64 with Lanczos: the keep mask must equal the reference's exactly.
//!
//! Bound (the issue's): the decoded image (and, for 2.2 inpainting, the latents after every
//! step) within 1e-3 · max(1, max |reference|); the UNet and MoVQ agree with the reference to
//! ~1e-6 relative and three guided steps stay far below. With these random weights the MoVQ
//! decode of large latents amplifies rounding: a 2e-5 perturbation of the 2.2 inpainting
//! latents moves the image by 7e-3 (measured), so image errors of ~1e-5 relative are expected. The
//! image-to-image pipelines return `output_type="pt"` images post-processed to [0, 1]
//! (x · 0.5 + 0.5, clamped), so ours are mapped the same way before comparing.

mod common;

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use common::{Recorded, fixtures};
use kandinsky_clip::{MultilingualClip, TextTokenizer};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::load_scheduler;
use kandinsky_pipeline::{
    DecoderOptions, DecoderStart, Image, decode_v21, decode_v22, decode_v22_hint,
};
use kandinsky_testing::{assert_close, test_device};
use kandinsky_unet::UNet;

const TOLERANCE: f32 = 1e-3;

/// diffusers' `VaeImageProcessor.postprocess(…, "pt")`: [−1, 1] → [0, 1], clamped.
fn postprocess(image: Tensor<4>) -> TensorData {
    (image * 0.5 + 0.5).clamp(0.0, 1.0).to_host()
}

fn reference(name: &str) -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join("modes").join(name)).unwrap()
}

fn options(steps: usize) -> DecoderOptions {
    DecoderOptions {
        height: 64,
        width: 64,
        steps,
        guidance_scale: 4.0,
    }
}

fn source(device: &Device) -> Tensor<4> {
    source_from("source.png", device)
}

/// A source picture of fixtures/modes brought to 64×64 as the pipelines do.
fn source_from(file: &str, device: &Device) -> Tensor<4> {
    let image = Image::open(&fixtures().join("modes").join(file)).unwrap();
    image.to_tensor(64, 64, device).unwrap()
}

fn embeds(r: &BTreeMap<String, TensorData>, device: &Device) -> (Tensor<2>, Tensor<2>) {
    (
        Tensor::from_data(r["image_embeds"].clone(), device),
        Tensor::from_data(r["negative_image_embeds"].clone(), device),
    )
}

#[test]
fn img2img_22_matches_the_reference_pipeline() {
    img2img_22("img2img22.safetensors", "source.png");
}

/// As above from a 157×139 source, which the reference's resize (Pillow BICUBIC,
/// `reducing_gap=1`) first box-averages by 2: the same preprocessing gives the same image.
#[test]
fn img2img_22_from_a_larger_source_matches_the_reference_pipeline() {
    img2img_22("img2img22_reduced.safetensors", "source_large.png");
}

/// 2.2 image-to-image of `source` (a file of fixtures/modes) against `reference`.
fn img2img_22(reference_file: &str, source: &str) {
    let device = test_device();
    let r = reference(reference_file);
    let unet = UNet::load(&fixtures().join("unet_22/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let mut scheduler =
        load_scheduler(&fixtures().join("schedulers/ddpm/scheduler_config.json")).unwrap();
    let mut noise = Recorded::from_reference(&r);
    let (embeds, negative) = embeds(&r, &device);
    let mut steps = 0;
    let image = decode_v22(
        &unet,
        &movq,
        scheduler.as_mut(),
        embeds,
        negative,
        DecoderStart::Image {
            image: source_from(source, &device),
            strength: 0.5,
        },
        &options(6),
        &mut noise,
        &mut |_, _| steps += 1,
    )
    .unwrap();
    assert_eq!(steps, 3, "strength 0.5 of 6 steps runs the last 3");
    assert!(noise.0.is_empty(), "every recorded noise draw is used");
    assert_close("image", postprocess(image), &r["image"], TOLERANCE);
}

#[test]
fn img2img_21_matches_the_reference_pipeline() {
    let device = test_device();
    let r = reference("img2img21.safetensors");
    let unet = UNet::load(&fixtures().join("unet_21/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let text_encoder =
        MultilingualClip::load(&fixtures().join("pipeline21/text_encoder"), &device).unwrap();
    let tokenizer = TextTokenizer::from_dir(&fixtures().join("tokenizers/xlmr")).unwrap();
    let mut scheduler =
        load_scheduler(&fixtures().join("schedulers/ddim/scheduler_config.json")).unwrap();
    let mut noise = Recorded::from_reference(&r);
    let (embeds, negative) = embeds(&r, &device);
    let image = decode_v21(
        &unet,
        &movq,
        &text_encoder,
        &tokenizer,
        scheduler.as_mut(),
        &["a red cat"],
        None,
        embeds,
        negative,
        DecoderStart::Image {
            image: source(&device),
            strength: 0.5,
        },
        &options(6),
        &mut noise,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(noise.0.is_empty(), "every recorded noise draw is used");
    assert_close("image", postprocess(image), &r["image"], TOLERANCE);
}

#[test]
fn controlnet_22_matches_the_reference_pipeline() {
    let device = test_device();
    let r = reference("controlnet22.safetensors");
    let unet = UNet::load(&fixtures().join("unet_22_controlnet32/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let mut scheduler =
        load_scheduler(&fixtures().join("schedulers/ddpm/scheduler_config.json")).unwrap();
    let mut noise = Recorded::from_reference(&r);
    let (embeds, negative) = embeds(&r, &device);
    let image = decode_v22_hint(
        &unet,
        &movq,
        scheduler.as_mut(),
        embeds,
        negative,
        Some(Tensor::from_data(r["hint"].clone(), &device)),
        DecoderStart::Noise(None),
        &options(3),
        &mut noise,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(noise.0.is_empty(), "every recorded noise draw is used");
    assert_close("image", image.to_host(), &r["image"], TOLERANCE);
}

#[test]
fn bad_strengths_and_sizes_are_errors() {
    use kandinsky_pipeline::image_start_index;
    assert_eq!(image_start_index(100, 0.3).unwrap(), 70);
    assert_eq!(image_start_index(6, 1.0).unwrap(), 0);
    for strength in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(image_start_index(10, strength).is_err(), "{strength}");
    }
    let err = image_start_index(3, 0.2).unwrap_err().to_string();
    assert!(err.contains("runs no step"), "{err}");
}

fn inpaint(version: &str) -> (TensorData, BTreeMap<String, TensorData>) {
    inpaint_from(version, "", "source.png", "mask.png")
}

/// Inpainting of `source` with `mask` (files of fixtures/modes) against the reference
/// `inpaint{version}{suffix}.safetensors`.
fn inpaint_from(
    version: &str,
    suffix: &str,
    source: &str,
    mask: &str,
) -> (TensorData, BTreeMap<String, TensorData>) {
    let device = test_device();
    let r = reference(&format!("inpaint{version}{suffix}.safetensors"));
    let mask = Image::open(&fixtures().join("modes").join(mask)).unwrap();
    let keep = mask.to_keep_mask(64, 64, &device).unwrap();
    assert_eq!(
        keep.clone().to_host(),
        r["keep"],
        "the keep mask equals the reference's"
    );
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let mut noise = Recorded::from_reference(&r);
    let (embeds, negative) = embeds(&r, &device);
    let start = DecoderStart::Inpaint {
        image: source_from(source, &device),
        keep,
        latents: None,
    };
    let image = if version == "21" {
        let unet = UNet::load(&fixtures().join("unet_21_inpaint/unet"), &device).unwrap();
        let text_encoder =
            MultilingualClip::load(&fixtures().join("pipeline21/text_encoder"), &device).unwrap();
        let tokenizer = TextTokenizer::from_dir(&fixtures().join("tokenizers/xlmr")).unwrap();
        let mut scheduler =
            load_scheduler(&fixtures().join("schedulers/ddim/scheduler_config.json")).unwrap();
        decode_v21(
            &unet,
            &movq,
            &text_encoder,
            &tokenizer,
            scheduler.as_mut(),
            &["a red cat"],
            None,
            embeds,
            negative,
            start,
            &options(3),
            &mut noise,
            &mut |_, _| {},
        )
    } else {
        let unet = UNet::load(&fixtures().join("unet_22_inpaint/unet"), &device).unwrap();
        let mut scheduler =
            load_scheduler(&fixtures().join("schedulers/ddpm/scheduler_config.json")).unwrap();
        let mut steps = Vec::new();
        let image = decode_v22(
            &unet,
            &movq,
            scheduler.as_mut(),
            embeds,
            negative,
            start,
            &options(3),
            &mut noise,
            &mut |_, latents| steps.push(latents.clone().to_host()),
        );
        for (i, latents) in steps.into_iter().enumerate() {
            assert_close(
                &format!("latents after step {i}"),
                latents,
                &r[&format!("latents.{i}")],
                TOLERANCE,
            );
        }
        image
    }
    .unwrap();
    assert!(noise.0.is_empty(), "every recorded noise draw is used");
    // The inpainting pipelines return "pt" images raw, as the text-to-image ones.
    (image.to_host(), r)
}

#[test]
fn inpaint_21_matches_the_reference_pipeline() {
    let (image, r) = inpaint("21");
    assert_close("image", image, &r["image"], TOLERANCE);
}

#[test]
fn inpaint_22_matches_the_reference_pipeline() {
    let (image, r) = inpaint("22");
    assert_close("image", image, &r["image"], TOLERANCE);
}

/// As above from the 157×139 source (reduced by 2 before the bicubic pass) and a 200×200 mask
/// (Lanczos over a 3.1× shrink): the keep mask equals the reference's exactly.
#[test]
fn inpaint_22_from_a_larger_source_and_mask_matches_the_reference_pipeline() {
    let (image, r) = inpaint_from("22", "_reduced", "source_large.png", "mask_large.png");
    assert_close("image", image, &r["image"], TOLERANCE);
}

#[test]
fn inpainting_needs_an_inpainting_unet() {
    let device = test_device();
    let unet = UNet::load(&fixtures().join("unet_22/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let mut scheduler =
        load_scheduler(&fixtures().join("schedulers/ddpm/scheduler_config.json")).unwrap();
    let embeds = Tensor::<2>::zeros([1, 28], &device);
    let err = decode_v22(
        &unet,
        &movq,
        scheduler.as_mut(),
        embeds.clone(),
        embeds,
        DecoderStart::Inpaint {
            image: source(&device),
            keep: Tensor::ones([1, 1, 64, 64], &device),
            latents: None,
        },
        &options(3),
        &mut kandinsky_pipeline::Rng::new(0),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("inpainting UNet (9 input channels)"), "{err}");
}
