//! End-to-end parity of the fast samplers with diffusers 0.42.1, through the small 2.2 and 2.1
//! decoders (`reference.py sampler_pipelines`): each sampler built as the CLI builds it
//! ([`Sampler::build`] on the decoder's own scheduler config, Karras sigmas on or off), at 4 and
//! 10 steps, 64×64, guidance 4, the reference's initial latents and noise draws replayed. The
//! reference drives diffusers' own pipelines with `scale_model_input` added (they lack it).
//!
//! Bounds: the latents after every model evaluation within 1e-4 · max(1, max |reference|)
//! (the issue's): the UNet forward agrees to ~1e-6 relative (its parity tests), guidance 4
//! amplifies the difference of two predictions ~7×, and the samplers' own coefficients agree to
//! ~1e-6 (tests/samplers.rs); ten steps stay below 1e-4. The image within 1e-3 · max(1, max
//! |reference|) plus twice the decode's own float32 uncertainty: the random UNet drives the
//! latents to ~100, where the MoVQ amplifies rounding so much that PyTorch's float32 decode of
//! the very same latents differs from a float64 one by up to 0.15 (6e-4 of the range), and a
//! 1e-6 relative change of the latents (what ten float32 UNet passes leave: ours agree with the
//! reference's to ~1e-6 relative) moves the image by up to ~0.5. The fixture records the larger
//! of the two per run (`RUN.image_f32_gap`, computed in float64); no float32 implementation can
//! be held closer to PyTorch than that.

mod common;

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use common::{Recorded, fixtures};
use kandinsky_clip::{MultilingualClip, TextTokenizer};
use kandinsky_common::tensors::{ToHost, read_safetensors};
use kandinsky_movq::MoVQ;
use kandinsky_pipeline::scheduler::{Sampler, SchedulerConfig};
use kandinsky_pipeline::{DecoderOptions, decode_v21, decode_v22};
use kandinsky_testing::{assert_close, test_device};
use kandinsky_unet::UNet;

const LATENT_BOUND: f32 = 1e-4;
const IMAGE_BOUND: f32 = 1e-3;

/// (decoder, sampler, karras), as in reference.py's E2E_RUNS.
const RUNS: &[(&str, &str, bool)] = &[
    ("22", "dpm++2m", false),
    ("22", "dpm++2m-sde", false),
    ("22", "dpm++3m", false),
    ("22", "dpm++2s", false),
    ("22", "unipc", false),
    ("22", "deis", false),
    ("22", "pndm", false),
    ("22", "euler", false),
    ("22", "euler-a", false),
    ("22", "heun", false),
    ("22", "dpm2", false),
    ("22", "dpm2-a", false),
    ("22", "lms", false),
    ("22", "dpm++2m", true),
    ("22", "dpm++2m-sde", true),
    ("22", "unipc", true),
    ("22", "euler", true),
    ("22", "heun", true),
    ("22", "dpm2-a", true),
    ("22", "lms", true),
    ("21", "dpm++2m", true),
    ("21", "unipc", false),
    ("21", "euler-a", false),
    ("21", "heun", true),
];
const STEPS: [usize; 2] = [4, 10];

/// The run's noise draws, `RUN.noise.0`, `RUN.noise.1`, …
fn draws(r: &BTreeMap<String, TensorData>, run: &str) -> Recorded {
    Recorded(
        (0..)
            .map_while(|i| r.get(&format!("{run}.noise.{i}")).cloned())
            .collect(),
    )
}

#[test]
fn samplers_match_the_reference_pipelines() {
    let device = test_device();
    let dir = fixtures();
    let r = read_safetensors(&dir.join("sampler_pipelines/reference.safetensors")).unwrap();
    let movq = MoVQ::load(&dir.join("movq/movq"), &device).unwrap();
    let unet22 = UNet::load(&dir.join("unet_22/unet"), &device).unwrap();
    let unet21 = UNet::load(&dir.join("unet_21/unet"), &device).unwrap();
    let text_encoder =
        MultilingualClip::load(&dir.join("pipeline21/text_encoder"), &device).unwrap();
    let tokenizer = TextTokenizer::from_dir(&dir.join("tokenizers/xlmr")).unwrap();
    let t = |k: &str| Tensor::<2>::from_data(r[k].clone(), &device);
    for &(decoder, name, karras) in RUNS {
        let sampler = Sampler::find(name).unwrap();
        let base_path = dir.join(match decoder {
            "22" => "schedulers/ddpm/scheduler_config.json",
            _ => "schedulers/ddim/scheduler_config.json",
        });
        let base = SchedulerConfig::from_file(&base_path).unwrap();
        for steps in STEPS {
            let run = format!(
                "{decoder}.{name}{}.{steps}",
                if karras { ".karras" } else { "" }
            );
            let mut scheduler = sampler.build(&base, karras, &base_path).unwrap();
            let mut noise = draws(&r, &run);
            let options = DecoderOptions {
                height: 64,
                width: 64,
                steps,
                guidance_scale: 4.0,
            };
            let latents = Some(Tensor::from_data(r["latents"].clone(), &device)).into();
            let mut seen = Vec::new();
            let mut on_step = |_: usize, l: &Tensor<4>| seen.push(l.clone().to_host());
            let (embeds, negative) = (
                t(&format!("image_embeds.{decoder}")),
                t(&format!("negative_image_embeds.{decoder}")),
            );
            let image = match decoder {
                "22" => decode_v22(
                    &unet22,
                    &movq,
                    scheduler.as_mut(),
                    embeds,
                    negative,
                    latents,
                    &options,
                    &mut noise,
                    &mut on_step,
                ),
                _ => decode_v21(
                    &unet21,
                    &movq,
                    &text_encoder,
                    &tokenizer,
                    scheduler.as_mut(),
                    &["a red cat"],
                    None,
                    embeds,
                    negative,
                    latents,
                    &options,
                    &mut noise,
                    &mut on_step,
                ),
            }
            .unwrap_or_else(|e| panic!("{run}: {e}"));
            assert!(
                noise.0.is_empty(),
                "{run}: every recorded noise draw is used"
            );
            let expected = (0..)
                .take_while(|i| r.contains_key(&format!("{run}.latents.{i}")))
                .count();
            assert_eq!(seen.len(), expected, "{run}: model evaluations");
            let mut worst = 0.0f32;
            for (i, latents) in seen.into_iter().enumerate() {
                let (err, scale) = assert_close(
                    &format!("{run}: latents after evaluation {i}"),
                    latents,
                    &r[&format!("{run}.latents.{i}")],
                    LATENT_BOUND,
                );
                worst = worst.max(err / scale);
            }
            let reference = &r[&format!("{run}.image")];
            let scale = reference
                .clone()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
                .iter()
                .fold(1.0f32, |m, v| m.max(v.abs()));
            let gap = r[&format!("{run}.image_f32_gap")]
                .clone()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()[0];
            let (image_err, _) = assert_close(
                &format!("{run}: image"),
                image.to_host(),
                reference,
                IMAGE_BOUND + 2.0 * gap / scale,
            );
            println!(
                "RESULT {run:26} latents {worst:.1e}  image {:.1e} (f32 gap {:.1e})  {}",
                image_err / scale,
                gap / scale,
                scheduler.describe()
            );
        }
    }
}
