//! Replaying diffusers runs through the top-level API only (`Kandinsky`, `PriorStage`,
//! `Request`, `Hooks`): the reference's noise draws, its starting latents and a scheduler the
//! caller builds, on the same fixtures and with the same bounds as the stage-level parity tests:
//! - the 2.2 decoder (`KandinskyV22Pipeline`, `tests/pipeline22.rs`): a decoder-only pipeline
//!   given the reference's image embeddings, DDPM built by the caller, 3 steps, 128×192;
//! - the 2.2 prior (`KandinskyV22PriorPipeline`, `tests/prior_pipelines.rs`): the prior stage
//!   of a pipeline folder, UnCLIP built by the caller, 3 steps.
//!
//! Bound (as those tests, the issue's): every step's latents and the outputs within
//! 1e-3 · max(1, max |reference|); the components agree to ~1e-6 relative and three guided
//! steps stay far below.

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use common::{Recorded, assert_steps, fixtures};
use kandinsky_common::tensors::{ToHost, read_safetensors};
use kandinsky_pipeline::scheduler::{DdpmScheduler, SchedulerConfig, UnclipScheduler};
use kandinsky_pipeline::{DecoderStage, Event, Hooks, Kandinsky, PriorStage, Request};
use kandinsky_testing::{assert_close, test_device};

const TOLERANCE: f32 = 1e-3;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_diffusers_decoder_run_replays_through_the_pipeline() {
    let device = test_device();
    let r: BTreeMap<String, TensorData> =
        read_safetensors(&fixtures().join("pipeline22/reference.safetensors")).unwrap();
    // A 2.2 decoder folder as published: model_index.json, unet, movq, scheduler.
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    std::fs::write(
        dir.join("model_index.json"),
        r#"{"_class_name": "KandinskyV22Pipeline"}"#,
    )
    .unwrap();
    copy_dir(&fixtures().join("unet_22/unet"), &dir.join("unet"));
    copy_dir(&fixtures().join("movq/movq"), &dir.join("movq"));
    copy_dir(&fixtures().join("schedulers/ddpm"), &dir.join("scheduler"));
    let decoder = DecoderStage::open(dir, &device).unwrap();
    let mut pipeline = Kandinsky::new(None, Some(decoder)).unwrap();

    // The caller's scheduler (here the one the reference used, built from its config).
    let config_path = fixtures().join("schedulers/ddpm/scheduler_config.json");
    let config = SchedulerConfig::from_file(&config_path).unwrap();
    let mut scheduler = DdpmScheduler::new(config, &config_path).unwrap();
    let mut noise = Recorded::from_reference(&r);
    let mut steps = Vec::new();
    let mut on_event = |event: Event<'_>| {
        if let Event::DecoderStep(step) = event {
            steps.push(step.latents.clone().to_host());
        }
        ControlFlow::Continue(())
    };
    let hooks = Hooks::default()
        .image_embeds(
            Tensor::from_data(r["image_embeds"].clone(), &device),
            Tensor::from_data(r["negative_image_embeds"].clone(), &device),
        )
        .latents(Tensor::from_data(r["latents"].clone(), &device))
        .noise(&mut noise)
        .scheduler(&mut scheduler)
        .on_event(&mut on_event);
    let request = Request::text_to_image("")
        .with_size(192, 128)
        .with_steps(3)
        .with_guidance(4.0);
    let out = pipeline.generate_with(&request, hooks).unwrap();
    assert!(noise.0.is_empty(), "every recorded noise draw is used");
    assert_eq!(steps.len(), 3);
    assert_steps(steps, &r, TOLERANCE);
    assert_close(
        "image",
        out.pixels().clone().to_host(),
        &r["image"],
        TOLERANCE,
    );
    let images = out.images().unwrap();
    assert_eq!((images[0].width, images[0].height), (192, 128));
    let floats = out.to_unit_f32().unwrap();
    assert_eq!(floats[0].len(), 128 * 192 * 3);
    assert!(floats[0].iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn a_diffusers_prior_run_replays_through_the_prior_stage() {
    let device = test_device();
    let dir = fixtures().join("prior_pipeline22");
    let r: BTreeMap<String, TensorData> =
        read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let prompt = std::fs::read_to_string(dir.join("prompt.txt")).unwrap();
    let mut prior = PriorStage::open(&dir, &device).unwrap();
    let config_path = dir.join("scheduler/scheduler_config.json");
    let config = SchedulerConfig::from_file(&config_path).unwrap();
    let mut scheduler = UnclipScheduler::new(config, &config_path).unwrap();
    let mut noise = Recorded::from_reference(&r);
    let mut steps = Vec::new();
    let mut on_event = |event: Event<'_>| {
        if let Event::PriorStep(step) = event {
            steps.push(step.latents.clone().to_host());
        }
        ControlFlow::Continue(())
    };
    let hooks = Hooks::default()
        .prior_latents(Tensor::from_data(r["latents"].clone(), &device))
        .noise(&mut noise)
        .prior_scheduler(&mut scheduler)
        .on_event(&mut on_event);
    let request = Request::text_to_image(prompt.trim_end()).with_prior_steps(3);
    let (embeds, negative) = prior.embed(&request, hooks).unwrap();
    assert!(noise.0.is_empty(), "every recorded noise draw is used");
    assert_eq!(steps.len(), 3);
    assert_steps(steps, &r, TOLERANCE);
    assert_close(
        "image_embeds",
        embeds.to_host(),
        &r["image_embeds"],
        TOLERANCE,
    );
    assert_close(
        "negative_image_embeds",
        negative.to_host(),
        &r["negative_image_embeds"],
        TOLERANCE,
    );
}
