//! The pipeline API over pipeline folders ([`Kandinsky`]): generation from a prompt to a PNG,
//! models kept loaded between calls (or not), cancellation, requests checked before anything
//! loads, typed errors for incomplete folders and for a prior and decoder that do not fit
//! together, and a generation driven by a scheduler defined outside the crate.

use kandinsky_testing::{fixtures_dir, test_device};
use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::{Scheduler, SchedulerError, StepOutput};
use std::ops::ControlFlow;

use kandinsky_pipeline::{
    DecoderKind, DecoderOptions, DecoderStage, DecoderStart, Event, FusionInput, Hooks, Image,
    Kandinsky, PipelineError, PriorStage, Request, Residency, Rng, SamplerChoice, Stage, Version,
    decode_v22, to_rgb8,
};
use kandinsky_unet::UNet;

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A decoder repo assembled from the component fixtures; `unet` is `unet_22` (28-wide image
/// embeddings, not the small prior's) or `decoder_unet32` (32-wide, the small prior's).
fn decoder_repo_with(unet: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model_index.json"),
        r#"{"_class_name": "KandinskyV22Pipeline"}"#,
    )
    .unwrap();
    copy_dir(
        &fixtures().join(unet).join("unet"),
        &dir.path().join("unet"),
    );
    copy_dir(&fixtures().join("movq/movq"), &dir.path().join("movq"));
    copy_dir(
        &fixtures().join("schedulers/ddpm"),
        &dir.path().join("scheduler"),
    );
    dir
}

fn decoder_repo() -> tempfile::TempDir {
    decoder_repo_with("unet_22")
}

/// The whole chain on the small fixtures: prompt → prior → zero-image negative → decoder →
/// MoVQ → PNG. (Each stage's numbers are checked against the reference in the end-to-end
/// tests; this checks that they compose, and that a seed reproduces the image.)
#[test]
fn a_prompt_becomes_a_png() {
    let device = test_device();
    let decoder = decoder_repo_with("decoder_unet32");
    let prior = fixtures().join("prior_pipeline22");
    let mut pipeline = Kandinsky::from_folders(&prior, decoder.path(), &device).unwrap();
    assert_eq!(pipeline.version(), Some(Version::V22));
    let request = Request::text_to_image("a red cat")
        .with_prior_steps(3)
        .with_steps(2)
        .with_size(64, 100) // rounded up to 128, as the reference does
        .with_seed(11);
    let images = pipeline.generate(&request).unwrap().images().unwrap();
    assert_eq!((images[0].width, images[0].height), (64, 128));
    let again = pipeline.generate(&request).unwrap().images().unwrap();
    assert_eq!(images, again, "same seed, same image");
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("cat.png");
    images[0].save_png(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

/// The components loaded by each generation, from the `Loading` events.
fn loads(pipeline: &mut Kandinsky, request: &Request) -> Vec<&'static str> {
    let mut loaded = Vec::new();
    let mut on_event = |event: Event<'_>| {
        if let Event::Loading(component) = event {
            loaded.push(component);
        }
        ControlFlow::Continue(())
    };
    pipeline
        .generate_with(request, Hooks::default().on_event(&mut on_event))
        .unwrap();
    loaded
}

/// A resident pipeline loads each model once; a sequential one loads each stage every time.
#[test]
fn resident_stages_load_once() {
    let device = test_device();
    let decoder = decoder_repo_with("decoder_unet32");
    let prior = fixtures().join("prior_pipeline22");
    let request = Request::text_to_image("a red cat")
        .with_prior_steps(2)
        .with_steps(1)
        .with_size(64, 64);
    let mut resident = Kandinsky::from_folders(&prior, decoder.path(), &device).unwrap();
    assert_eq!(
        loads(&mut resident, &request),
        ["image_encoder", "prior", "unet"]
    );
    assert!(
        loads(&mut resident, &request).is_empty(),
        "nothing loads again"
    );
    let mut sequential = Kandinsky::from_folders(&prior, decoder.path(), &device)
        .unwrap()
        .with_residency(Residency::Sequential);
    assert_eq!(
        loads(&mut sequential, &request),
        ["image_encoder", "prior", "unet"]
    );
    // The zero-image embedding is kept: the image encoder is not needed again.
    assert_eq!(loads(&mut sequential, &request), ["prior", "unet"]);
}

/// The callback stops a run after a step: a typed error naming the stage and the step.
#[test]
fn the_callback_can_cancel() {
    let device = test_device();
    let decoder = decoder_repo_with("decoder_unet32");
    let prior = fixtures().join("prior_pipeline22");
    let mut pipeline = Kandinsky::from_folders(&prior, decoder.path(), &device).unwrap();
    let request = Request::text_to_image("a red cat")
        .with_prior_steps(2)
        .with_steps(3)
        .with_size(64, 64);
    let mut seen = Vec::new();
    let mut on_event = |event: Event<'_>| match event {
        Event::DecoderStep(step) => {
            seen.push((step.step, step.of, step.timestep));
            assert_eq!(step.latents.dims(), step.predicted_original.dims());
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    };
    let err = pipeline
        .generate_with(&request, Hooks::default().on_event(&mut on_event))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Cancelled {
                stage: Stage::Decoder,
                step: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(seen, [(1, 3, 667.0)]);
}

/// Invalid options and modes the decoder cannot run are refused before anything loads.
#[test]
fn requests_are_checked_before_loading() {
    let device = test_device();
    let decoder = decoder_repo_with("decoder_unet32");
    let prior = fixtures().join("prior_pipeline22");
    let mut pipeline = Kandinsky::from_folders(&prior, decoder.path(), &device).unwrap();
    let picture = Image::from_rgb(2, 2, vec![0; 12]).unwrap();
    let bad = [
        Request::text_to_image("x").with_size(0, 64),
        Request::text_to_image("x").with_steps(0),
        Request::image_to_image("x", picture.clone(), 1.5),
        Request::text_to_image("x").with_num_images(0),
        Request::inpaint("x", picture.clone(), picture.clone()),
        Request::controlnet("x", picture),
    ];
    for request in bad {
        let mut loaded = false;
        let mut on_event = |_: Event<'_>| {
            loaded = true;
            ControlFlow::Continue(())
        };
        let err = pipeline
            .generate_with(&request, Hooks::default().on_event(&mut on_event))
            .unwrap_err();
        assert!(
            err.is_invalid_input() || matches!(err, PipelineError::UnsupportedMode { .. }),
            "{err:?}"
        );
        assert!(!loaded, "{err}");
    }
}

#[test]
fn incomplete_folders_are_named() {
    let device = test_device();
    let decoder = decoder_repo();
    std::fs::remove_dir_all(decoder.path().join("movq")).unwrap();
    let err = DecoderStage::open(decoder.path(), &device).unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingComponent { component, .. } if component == "movq"),
        "{err:?}"
    );
    let err = PriorStage::open(&fixtures().join("unet_22"), &device).unwrap_err();
    assert!(err.to_string().contains("model_index.json"), "{err}");
    // A folder that is not there is said so (issue 21, item 11), not "model_index.json is
    // missing".
    let gone = decoder.path().join("no-such-folder");
    let err = DecoderStage::open(&gone, &device).unwrap_err();
    assert!(
        matches!(&err, PipelineError::NoFolder(dir) if dir == &gone),
        "{err:?}"
    );
}

/// The small prior makes 32-wide embeddings, the small UNet takes 28: a typed error naming both
/// folders when the pipeline is built, before anything loads.
#[test]
fn a_prior_and_decoder_that_do_not_match_are_an_error() {
    let device = test_device();
    let decoder = decoder_repo();
    let err = Kandinsky::from_folders(
        &fixtures().join("prior_pipeline22"),
        decoder.path(),
        &device,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            PipelineError::EmbeddingWidth {
                prior_width: 32,
                decoder_width: 28,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("width 32") && text.contains("takes 28"),
        "{text}"
    );
}

/// A scheduler of the caller's own (here: jump to the model's noise-free estimate in one step)
/// drives the decoder.
#[test]
fn a_scheduler_from_outside_the_crate_drives_a_generation() {
    struct Jump(Vec<f64>);
    impl Scheduler for Jump {
        fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
            self.0 = (0..steps as i64)
                .rev()
                .map(|i| (1 + i * (999 / steps as i64)) as f64)
                .collect();
            Ok(())
        }
        fn timesteps(&self) -> &[f64] {
            &self.0
        }
        fn needs_noise(&self, _: usize) -> bool {
            false
        }
        fn step(
            &mut self,
            _: usize,
            model_output: Tensor<2>,
            sample: Tensor<2>,
            _: Option<Tensor<2>>,
        ) -> Result<StepOutput, SchedulerError> {
            let x0 = sample - model_output * 0.1;
            Ok(StepOutput {
                prev_sample: x0.clone(),
                pred_original_sample: x0,
            })
        }
        fn add_noise(
            &self,
            original: Tensor<2>,
            _: Tensor<2>,
            _: usize,
        ) -> Result<Tensor<2>, SchedulerError> {
            Ok(original)
        }
        fn describe(&self) -> String {
            "Jump".into()
        }
    }
    let device = test_device();
    let unet = UNet::load(&fixtures().join("unet_22/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let mut rng = Rng::new(7);
    let embeds = rng.normal_tensor([1, 28], &device);
    let negative = rng.normal_tensor([1, 28], &device);
    let options = DecoderOptions {
        height: 64,
        width: 128,
        steps: 2,
        guidance_scale: 4.0,
    };
    let mut scheduler = Jump(Vec::new());
    let mut seen = 0;
    let image = decode_v22(
        &unet,
        &movq,
        &mut scheduler,
        embeds,
        negative,
        DecoderStart::Noise(None),
        &options,
        &mut rng,
        &mut |_, _| seen += 1,
    )
    .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(image.dims(), [1, 3, 64, 128]);
    let rgb = to_rgb8(image).unwrap();
    assert_eq!(rgb[0].len(), 64 * 128 * 3);
}

/// A 2.1 decoder repo assembled from the fixtures: MultilingualCLIP, XLM-R tokenizer, UNet
/// (20-wide image embeddings), MoVQ, DDIM.
fn decoder_repo_21() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model_index.json"),
        r#"{"_class_name": "KandinskyPipeline"}"#,
    )
    .unwrap();
    copy_dir(
        &fixtures().join("pipeline21/text_encoder"),
        &dir.path().join("text_encoder"),
    );
    copy_dir(
        &fixtures().join("tokenizers/xlmr"),
        &dir.path().join("tokenizer"),
    );
    copy_dir(&fixtures().join("unet_21/unet"), &dir.path().join("unet"));
    copy_dir(&fixtures().join("movq/movq"), &dir.path().join("movq"));
    copy_dir(
        &fixtures().join("schedulers/ddim"),
        &dir.path().join("scheduler"),
    );
    dir
}

#[test]
fn kandinsky_21_checks_its_folders_and_widths() {
    let device = test_device();
    let decoder = decoder_repo_21();
    let stage = DecoderStage::open(decoder.path(), &device).unwrap();
    assert_eq!(stage.layout().version, Version::V21);
    assert_eq!(stage.layout().kind, DecoderKind::Plain);
    let prior = fixtures().join("prior_pipeline22");
    let err = Kandinsky::from_folders(&prior, decoder.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("width 32") && err.contains("takes 20"),
        "{err}"
    );
    std::fs::remove_dir_all(decoder.path().join("tokenizer")).unwrap();
    let err = DecoderStage::open(decoder.path(), &device).unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingComponent { component, .. } if component == "tokenizer"),
        "{err:?}"
    );
}

/// The published UNet configs (the real-size manifests' configs) are read as the model and
/// decoder kind they are, and take the embedding width of the prior they go with.
#[test]
fn published_decoders_are_recognized() {
    use kandinsky_pipeline::layout::unet_embedding_width;
    use kandinsky_pipeline::prior_model::PriorConfig;
    use kandinsky_pipeline::unet::UNetConfig;
    let manifests = fixtures().join("manifests");
    let width = |prior: &str| {
        PriorConfig::from_file(&manifests.join(format!("{prior}.config.json")))
            .unwrap()
            .embedding_dim
    };
    for (unet, version, kind, prior) in [
        ("unet_21", Version::V21, DecoderKind::Plain, "prior_21"),
        (
            "unet_21_inpaint",
            Version::V21,
            DecoderKind::Inpaint,
            "prior_21",
        ),
        ("unet_22", Version::V22, DecoderKind::Plain, "prior_22"),
        (
            "unet_22_inpaint",
            Version::V22,
            DecoderKind::Inpaint,
            "prior_22",
        ),
        (
            "unet_22_controlnet",
            Version::V22,
            DecoderKind::ControlNetDepth,
            "prior_22",
        ),
    ] {
        let config = UNetConfig::from_file(&manifests.join(format!("{unet}.config.json"))).unwrap();
        let layout = kandinsky_pipeline::DecoderLayout::of_unet(&config);
        assert_eq!((layout.version, layout.kind), (version, kind), "{unet}");
        assert_eq!(unet_embedding_width(&config), width(prior), "{unet}");
    }
}

/// Every mode runs with any sampler: first-order, second-order (two evaluations per step),
/// stochastic and multistep ones, on the plain decoder (text-to-image, image-to-image at
/// strength 0.5, fusion), the ControlNet-depth decoder and the inpainting decoder (its kept region re-noised after every
/// evaluation at the sampler's own noise level). Each run sees one decoder step event per
/// model evaluation the sampler lists and ends with finite pixels.
#[test]
fn every_mode_takes_any_sampler() {
    let device = test_device();
    let prior = fixtures().join("prior_pipeline22");
    let plain = decoder_repo_with("decoder_unet32");
    let inpaint = decoder_repo_with("unet_22_inpaint");
    let control = decoder_repo_with("unet_22_controlnet32");
    let mut pipeline = Kandinsky::from_folders(&prior, plain.path(), &device).unwrap();
    let mut controlled = Kandinsky::from_folders(&prior, control.path(), &device).unwrap();
    let mut inpainting = Kandinsky::new(
        None,
        Some(DecoderStage::open(inpaint.path(), &device).unwrap()),
    )
    .unwrap();
    let source = Image::open(&fixtures().join("modes/source.png")).unwrap();
    let mask = Image::open(&fixtures().join("modes/mask.png")).unwrap();
    for (name, karras) in [
        ("euler-a", false),
        ("heun", true),
        ("dpm++2m", true),
        ("unipc", false),
        ("dpm2-a", false),
        ("pndm", false),
        ("dpm++2m-sde", false),
    ] {
        let choice = SamplerChoice::parse(name, karras).unwrap();
        let order = if matches!(name, "heun" | "dpm2-a") {
            2
        } else {
            1
        };
        let requests = [
            ("text-to-image", Request::text_to_image("a red cat"), 4),
            (
                "controlnet",
                Request::controlnet("a red cat", source.clone()),
                4,
            ),
            (
                "image-to-image",
                Request::image_to_image("a red cat", source.clone(), 0.5),
                2,
            ),
            (
                "fusion",
                Request::fusion(vec![
                    (FusionInput::Text("a cat".into()), 0.5),
                    (FusionInput::Text("a dog".into()), 0.5),
                ]),
                4,
            ),
        ];
        for (mode, request, steps_run) in requests {
            let request = request
                .with_prior_steps(3)
                .with_steps(4)
                .with_size(64, 64)
                .with_seed(3)
                .with_sampler(choice)
                .with_prior_sampler(SamplerChoice::parse("dpm++2m", false).unwrap());
            let mut evaluations = 0;
            let mut on_event = |event: Event<'_>| {
                if let Event::DecoderStep(_) = event {
                    evaluations += 1;
                }
                ControlFlow::Continue(())
            };
            let target = match mode {
                "controlnet" => &mut controlled,
                _ => &mut pipeline,
            };
            let out = target
                .generate_with(&request, Hooks::default().on_event(&mut on_event))
                .unwrap_or_else(|e| panic!("{name} {mode}: {e}"));
            // A sampler of order 2 evaluates twice per step but once for the last; PLMS's
            // first step takes two evaluations.
            let expected = match (name, mode) {
                ("pndm", "image-to-image") => steps_run,
                ("pndm", _) => steps_run + 1,
                _ => order * steps_run - (order - 1),
            };
            assert_eq!(evaluations, expected, "{name} {mode}: model evaluations");
            let pixels = out.to_unit_f32().unwrap();
            assert!(
                pixels.iter().flatten().all(|v| v.is_finite()),
                "{name} {mode}"
            );
        }
        let mut rng = Rng::new(9);
        let embeds = rng.normal_tensor([1, 32], &device);
        let negative = rng.normal_tensor([1, 32], &device);
        let request = Request::inpaint("a red cat", source.clone(), mask.clone())
            .with_steps(4)
            .with_size(64, 64)
            .with_seed(3)
            .with_sampler(choice);
        let out = inpainting
            .generate_with(&request, Hooks::default().image_embeds(embeds, negative))
            .unwrap_or_else(|e| panic!("{name} inpainting: {e}"));
        let pixels = out.to_unit_f32().unwrap();
        assert!(
            pixels.iter().flatten().all(|v| v.is_finite()),
            "{name} inpainting"
        );
    }
}

/// Latents that stop being finite (here: a guidance scale that overflows the prediction) end
/// the run with an error naming the step, not a black image (issue 21, item 9).
#[test]
fn non_finite_latents_are_an_error() {
    let device = test_device();
    let unet = UNet::load(&fixtures().join("unet_22/unet"), &device).unwrap();
    let movq = MoVQ::load(&fixtures().join("movq/movq"), &device).unwrap();
    let mut rng = Rng::new(7);
    let embeds = rng.normal_tensor([1, 28], &device);
    let negative = rng.normal_tensor([1, 28], &device);
    let options = DecoderOptions {
        height: 64,
        width: 64,
        steps: 3,
        guidance_scale: 1e38,
    };
    let mut scheduler = kandinsky_pipeline::scheduler::load_scheduler(
        &fixtures().join("schedulers/ddpm/scheduler_config.json"),
    )
    .unwrap();
    let err = decode_v22(
        &unet,
        &movq,
        scheduler.as_mut(),
        embeds,
        negative,
        None.into(),
        &options,
        &mut rng,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::NonFinite {
                stage: Stage::Decoder,
                step: 1,
                ..
            }
        ),
        "{err}"
    );
}
