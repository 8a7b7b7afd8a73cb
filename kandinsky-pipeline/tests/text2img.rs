//! The 2.2 text-to-image API over pipeline folders: typed errors for incomplete folders and for
//! a prior and decoder that do not fit together, and a generation driven by a scheduler defined
//! outside the crate.

use kandinsky_common::testing::{fixtures_dir, test_device};
use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::{Scheduler, SchedulerError, StepOutput};
use kandinsky_pipeline::{
    DecoderOptions, DecoderStart, Kandinsky22, PipelineError, Rng, Text2ImageOptions, decode_v22,
    to_rgb8,
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
    let pipeline = Kandinsky22::new(
        &fixtures().join("prior_pipeline22"),
        decoder.path(),
        &device,
    )
    .unwrap();
    let mut options = Text2ImageOptions::default();
    options.prior.steps = 3;
    options.decoder = DecoderOptions {
        height: 100, // rounded up to 128, as the reference does
        width: 64,
        steps: 2,
        guidance_scale: 4.0,
    };
    options.seed = 11;
    let images = pipeline.generate(&["a red cat"], None, &options).unwrap();
    assert_eq!((images[0].width, images[0].height), (64, 128));
    let again = pipeline.generate(&["a red cat"], None, &options).unwrap();
    assert_eq!(images, again, "same seed, same image");
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("cat.png");
    images[0].save_png(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn incomplete_folders_are_named() {
    let device = test_device();
    let decoder = decoder_repo();
    std::fs::remove_dir_all(decoder.path().join("movq")).unwrap();
    let err = Kandinsky22::new(
        &fixtures().join("prior_pipeline22"),
        decoder.path(),
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingComponent { component, .. } if component == "movq"),
        "{err:?}"
    );
    let err = Kandinsky22::new(&fixtures().join("unet_22"), decoder.path(), &device).unwrap_err();
    assert!(err.to_string().contains("model_index.json"), "{err}");
}

/// The small prior makes 32-wide embeddings, the small UNet takes 28: a typed error after the
/// prior ran, naming both folders.
#[test]
fn a_prior_and_decoder_that_do_not_match_are_an_error() {
    let device = test_device();
    let decoder = decoder_repo();
    let pipeline = Kandinsky22::new(
        &fixtures().join("prior_pipeline22"),
        decoder.path(),
        &device,
    )
    .unwrap();
    let mut options = Text2ImageOptions::default();
    options.prior.steps = 2;
    options.decoder.steps = 2;
    let err = pipeline.generate(&["a cat"], None, &options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PipelineError::Mismatch(_)), "{text}");
    assert!(
        text.contains("width 32") && text.contains("takes 28"),
        "{text}"
    );
}

/// A scheduler of the caller's own (here: jump to the model's noise-free estimate in one step)
/// drives the decoder.
#[test]
fn a_scheduler_from_outside_the_crate_drives_a_generation() {
    struct Jump(Vec<i64>);
    impl Scheduler for Jump {
        fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
            self.0 = (0..steps as i64)
                .rev()
                .map(|i| 1 + i * (999 / steps as i64))
                .collect();
            Ok(())
        }
        fn timesteps(&self) -> &[i64] {
            &self.0
        }
        fn needs_noise(&self, _: usize) -> bool {
            false
        }
        fn step(
            &self,
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
            _: i64,
        ) -> Result<Tensor<2>, SchedulerError> {
            Ok(original)
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
    use kandinsky_pipeline::Kandinsky21;
    let device = test_device();
    let decoder = decoder_repo_21();
    let prior = fixtures().join("prior_pipeline22");
    let pipeline = Kandinsky21::new(&prior, decoder.path(), &device).unwrap();
    let mut options = Text2ImageOptions::default();
    options.prior.steps = 2;
    options.decoder.steps = 2;
    let err = pipeline
        .generate(&["a cat"], None, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("width 32") && err.contains("takes 20"),
        "{err}"
    );
    std::fs::remove_dir_all(decoder.path().join("tokenizer")).unwrap();
    let err = Kandinsky21::new(&prior, decoder.path(), &device).unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingComponent { component, .. } if component == "tokenizer"),
        "{err:?}"
    );
}
