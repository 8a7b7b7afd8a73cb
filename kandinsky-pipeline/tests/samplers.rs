//! Parity of the fast samplers with diffusers 0.42.1, on the configs `reference.py samplers`
//! wrote (fixtures/samplers/NAME/scheduler_config.json: each sampler built with
//! `from_config` on the 2.2 decoder's scheduler config, a few on other bases): at 6 and 20
//! steps, the timesteps, `init_noise_sigma`, and a whole run on a (2, 4, 3, 5) sample with the
//! reference's model outputs and noise draws, our own samples carried from step to step (so
//! errors compound as in a generation); then `add_noise` at the third step.
//!
//! Bounds:
//! - timesteps: 1e-3 absolute (fractional ones are f32 values near 1000, ulp 6e-5; integer
//!   ones are identical);
//! - `init_noise_sigma`, the scaled model input, every step's sample and `add_noise`: 1e-4 ·
//!   max(1, max |reference|). The reference computes the step coefficients from f32 sigmas in
//!   f32 (e.g. e^(−h) − 1 for h ≈ 0.1 keeps ~6 digits); we compute them in f64 from the same f32
//!   sigmas, so each coefficient differs by up to ~1e-6 relative, and 20 steps compound it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use kandinsky_common::tensors::{ToHost, read_safetensors};
use kandinsky_pipeline::scheduler::load_scheduler;
use kandinsky_testing::{fixtures_dir, test_device};

const SAMPLERS: &[&str] = &[
    "dpmpp2m",
    "dpmpp2m_karras",
    "dpmpp2m_exponential",
    "dpmpp2m_beta",
    "dpmpp2m_heun_leading",
    "dpmpp3m",
    "dpmpp3m_karras_nolof",
    "dpmpp2m_sde",
    "dpmpp2m_sde_karras",
    "dpmpp3m_sde",
    "dpm2m_sigma_min",
    "dpmpp2m_vpred_trailing",
    "dpmpp2m_sample_clip",
    "unipc",
    "unipc_bh1_karras",
    "unipc3_leading",
    "unipc_noise_pred",
    "deis",
    "deis3_karras",
    "dpmpp2s",
    "dpmpp3s_karras",
    "pndm",
    "pndm_prk",
    "euler",
    "euler_karras",
    "euler_leading_vpred",
    "euler_a",
    "euler_a_leading",
    "heun",
    "heun_karras",
    "kdpm2",
    "kdpm2_karras",
    "kdpm2_a",
    "kdpm2_a_karras",
    "lms",
    "lms_karras",
];

const STEPS: [usize; 2] = [6, 20];
const BOUND: f32 = 1e-4;

fn fixtures() -> PathBuf {
    fixtures_dir().join("samplers")
}

fn floats(d: &TensorData) -> Vec<f32> {
    d.clone().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// A reference tensor flattened to (B, N).
fn flat(d: &TensorData) -> TensorData {
    let b = d.shape()[0];
    let n = d.shape().iter().skip(1).product::<usize>();
    TensorData::new(floats(d), [b, n])
}

/// max |ours − theirs| / max(1, max |theirs|).
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    if ours.iter().chain(theirs).any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    diff / scale
}

fn check_sampler(name: &str, r: &BTreeMap<String, TensorData>) -> f32 {
    let device = test_device();
    let path = fixtures().join(name).join("scheduler_config.json");
    let mut scheduler = load_scheduler(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut worst = 0.0f32;
    for steps in STEPS {
        let key = |what: &str| format!("{name}.{steps}.{what}");
        scheduler.set_timesteps(steps).unwrap();
        let expected = r[&key("timesteps")]
            .clone()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        let ours = scheduler.timesteps().to_vec();
        assert_eq!(ours.len(), expected.len(), "{name} {steps}: timestep count");
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3,
                "{name} {steps}: timestep {i}: {a} vs {b}"
            );
        }
        let sigma = floats(&r[&key("init_noise_sigma")])[0];
        let e = relative_error(&[scheduler.init_noise_sigma() as f32], &[sigma]);
        assert!(
            e <= BOUND,
            "{name} {steps}: init_noise_sigma {} vs {sigma}",
            scheduler.init_noise_sigma()
        );

        let mut sample = Tensor::<2>::from_data(flat(&r[&key("sample")]), &device);
        for i in 0..ours.len() {
            let at = |what: &str| key(&format!("{i}.{what}"));
            let scaled = scheduler.scale_model_input(i, sample.clone()).unwrap();
            let e = relative_error(&floats(&scaled.to_host()), &floats(&r[&at("scaled")]));
            assert!(e <= BOUND, "{name} {steps}: step {i} scaled input: {e:e}");
            worst = worst.max(e);
            let output = Tensor::<2>::from_data(flat(&r[&at("model_output")]), &device);
            let noise = &r[&at("noise")];
            let noise =
                (noise.num_elements() > 0).then(|| Tensor::<2>::from_data(flat(noise), &device));
            assert_eq!(
                scheduler.needs_noise(i),
                noise.is_some(),
                "{name} {steps}: step {i} noise use"
            );
            let out = scheduler
                .step(i, output, sample, noise)
                .unwrap_or_else(|e| panic!("{name} {steps}: step {i}: {e}"));
            let e = relative_error(
                &floats(&out.prev_sample.clone().to_host()),
                &floats(&r[&at("prev_sample")]),
            );
            assert!(e <= BOUND, "{name} {steps}: step {i} sample: {e:e}");
            worst = worst.max(e);
            sample = out.prev_sample;
        }

        scheduler.set_timesteps(steps).unwrap();
        let index = r[&key("add_noise.index")]
            .clone()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap()[0] as usize;
        let x0 = Tensor::<2>::from_data(flat(&r[&key("add_noise.original")]), &device);
        let noise = Tensor::<2>::from_data(flat(&r[&key("add_noise.noise")]), &device);
        let noised = scheduler.add_noise(x0, noise, index).unwrap();
        let e = relative_error(
            &floats(&noised.to_host()),
            &floats(&r[&key("add_noise.noised")]),
        );
        assert!(e <= BOUND, "{name} {steps}: add_noise: {e:e}");
        worst = worst.max(e);
    }
    worst
}

#[test]
fn samplers_match_diffusers() {
    let r = read_safetensors(&fixtures().join("reference.safetensors")).unwrap();
    for name in SAMPLERS {
        let worst = check_sampler(name, &r);
        println!("{name:28} {worst:.1e}");
    }
}
