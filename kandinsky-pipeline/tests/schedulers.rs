//! Parity of the schedulers with diffusers 0.42.1 (`UnCLIPScheduler`, `DDIMScheduler`,
//! `DDPMScheduler`) on six configurations written by `tools/reference/reference.py`: the prior's,
//! the 2.1 decoder's, the 2.2 decoder's (with and without `clip_sample`), and two variants for
//! the other options (cosine betas with learned-range variance, trailing spacing and
//! v-prediction; scaled-linear betas with linspace spacing, x₀-prediction and clipping).
//!
//! - Betas and ᾱ, ours (f64 holding the reference's f32 values) against the reference's f32:
//!   bound 1e-6 absolute; measured ≤ 6e-8, one f32 ulp, where torch's f32 `linspace` rounds a
//!   beta differently.
//! - Timesteps for 1–100 steps (2–100 for unCLIP, which divides by steps − 1): identical.
//! - Four steps on a (2, 6) and a (2, 4, 3, 5) sample with given model outputs and noise, and
//!   `add_noise` at t = 500: prev_sample and x̂₀ within 1e-6 · max(1, max |reference|). The
//!   schedule is stored at the reference's f32 precision and the step scalars are computed in
//!   f32 in its order, so what remains is the rounding of the elementwise tensor operations in
//!   a different form: an ulp (1.2e-7 relative) here and there. Largest measured: 2.4e-7.

use kandinsky_common::tensors::ToHost;
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use kandinsky_common::tensors::read_safetensors;
use kandinsky_pipeline::scheduler::{
    DdimScheduler, DdpmScheduler, Scheduler, SchedulerConfig, SchedulerExt, UnclipScheduler,
    load_scheduler, schedule::NoiseSchedule,
};
use kandinsky_testing::{assert_close, fixtures_dir, test_device};

const STEP_TOLERANCE: f32 = 1e-6;

const CONFIGS: [&str; 6] = [
    "unclip",
    "ddim",
    "ddpm",
    "ddpm_clip",
    "ddpm_learned_trailing",
    "ddim_linspace_sample",
];

fn fixtures() -> PathBuf {
    fixtures_dir().join("schedulers")
}

fn reference() -> BTreeMap<String, TensorData> {
    read_safetensors(&fixtures().join("reference.safetensors")).unwrap()
}

fn floats(d: &TensorData) -> Vec<f64> {
    d.clone().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn schedule_of(name: &str) -> NoiseSchedule {
    let path = fixtures().join(name).join("scheduler_config.json");
    let config = SchedulerConfig::from_file(&path).unwrap();
    match config.class_name.as_str() {
        "UnCLIPScheduler" => UnclipScheduler::new(config, &path)
            .unwrap()
            .schedule()
            .clone(),
        "DDIMScheduler" => DdimScheduler::new(config, &path)
            .unwrap()
            .schedule()
            .clone(),
        _ => DdpmScheduler::new(config, &path)
            .unwrap()
            .schedule()
            .clone(),
    }
}

#[test]
fn betas_and_cumulative_alphas_match() {
    let r = reference();
    for name in CONFIGS {
        let s = schedule_of(name);
        for (what, ours, theirs) in [
            ("betas", &s.betas, floats(&r[&format!("{name}.betas")])),
            (
                "alphas_cumprod",
                &s.alphas_cumprod,
                floats(&r[&format!("{name}.alphas_cumprod")]),
            ),
        ] {
            assert_eq!(ours.len(), theirs.len(), "{name} {what}");
            let err = ours
                .iter()
                .zip(&theirs)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            println!("{name} {what}: max abs error {err:.2e}");
            assert!(err <= 1e-6, "{name} {what}: {err}");
        }
    }
}

#[test]
fn timesteps_match_for_1_to_100_steps() {
    let r = reference();
    for name in CONFIGS {
        let path = fixtures().join(name).join("scheduler_config.json");
        let mut scheduler = load_scheduler(&path).unwrap();
        let table = r[&format!("{name}.timesteps")]
            .clone()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        let first = if name == "unclip" { 2 } else { 1 };
        for n in first..=100 {
            scheduler.set_timesteps(n).unwrap();
            let row: Vec<f64> = table[(n - 1) * 128..n * 128]
                .iter()
                .copied()
                .filter(|&t| t > -1000)
                .map(|t| t as f64)
                .collect();
            assert_eq!(scheduler.timesteps(), row.as_slice(), "{name}: {n} steps");
        }
        if name == "unclip" {
            assert!(
                scheduler.set_timesteps(1).is_err(),
                "unCLIP refuses one step"
            );
        }
        assert!(scheduler.set_timesteps(0).is_err());
    }
}

/// A reference tensor flattened to (B, N), as the scheduler trait takes it.
fn flat(d: &TensorData) -> TensorData {
    let b = d.shape()[0];
    let n = d.shape().iter().skip(1).product::<usize>();
    TensorData::new(
        d.clone().convert::<f32>().try_to_vec::<f32>().unwrap(),
        [b, n],
    )
}

#[test]
fn steps_match_given_the_same_noise() {
    let r = reference();
    let device = test_device();
    let t = |k: &str| flat(&r[k]);
    for name in CONFIGS {
        let path = fixtures().join(name).join("scheduler_config.json");
        let mut scheduler = load_scheduler(&path).unwrap();
        scheduler.set_timesteps(4).unwrap();
        for shape in ["vector", "latent"] {
            let key = |i: usize, what: &str| format!("{name}.{shape}.{i}.{what}");
            let mut sample = Tensor::<2>::from_data(t(&format!("{name}.{shape}.sample")), &device);
            for i in 0..4 {
                let output = Tensor::<2>::from_data(t(&key(i, "model_output")), &device);
                let noise_data = &r[&key(i, "noise")];
                let noise = (noise_data.num_elements() > 0)
                    .then(|| Tensor::<2>::from_data(flat(noise_data), &device));
                assert_eq!(
                    noise.is_some(),
                    scheduler.needs_noise(i),
                    "{name} step {i}: noise use"
                );
                let out = scheduler.step(i, output, sample, noise).unwrap();
                for (what, ours) in [
                    ("prev_sample", out.prev_sample.clone()),
                    ("pred_original_sample", out.pred_original_sample),
                ] {
                    assert_close(
                        &key(i, what),
                        ours.to_host(),
                        &t(&key(i, what)),
                        STEP_TOLERANCE,
                    );
                }
                sample = out.prev_sample;
            }
        }
        if name != "unclip" {
            let x0 = Tensor::<2>::from_data(t(&format!("{name}.add_noise.original")), &device);
            let noise = Tensor::<2>::from_data(t(&format!("{name}.add_noise.noise")), &device);
            let path = fixtures().join(name).join("scheduler_config.json");
            let config = SchedulerConfig::from_file(&path).unwrap();
            let noised = match config.class_name.as_str() {
                "DDIMScheduler" => DdimScheduler::new(config, &path)
                    .unwrap()
                    .add_noise_at(x0, noise, 500),
                _ => DdpmScheduler::new(config, &path)
                    .unwrap()
                    .add_noise_at(x0, noise, 500),
            }
            .unwrap();
            let expected = t(&format!("{name}.add_noise.t500"));
            assert_close(
                &format!("{name} add_noise"),
                noised.to_host(),
                &expected,
                1e-6,
            );
        }
    }
}

/// A scheduler defined outside the crate plugs into the same trait: here a toy sampler that
/// jumps straight to the model's x₀ estimate.
#[test]
fn schedulers_can_be_implemented_outside_the_crate() {
    use kandinsky_pipeline::scheduler::{SchedulerError, StepOutput};

    struct OneShot(Vec<f64>);
    impl Scheduler for OneShot {
        fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
            self.0 = (0..steps).rev().map(|i| (i * 10) as f64).collect();
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
            _: Tensor<2>,
            _: Option<Tensor<2>>,
        ) -> Result<StepOutput, SchedulerError> {
            Ok(StepOutput {
                prev_sample: model_output.clone(),
                pred_original_sample: model_output,
            })
        }
        fn add_noise(
            &self,
            original: Tensor<2>,
            noise: Tensor<2>,
            _: usize,
        ) -> Result<Tensor<2>, SchedulerError> {
            Ok(original + noise)
        }
        fn describe(&self) -> String {
            "OneShot".into()
        }
    }
    let device = test_device();
    let mut scheduler: Box<dyn Scheduler> = Box::new(OneShot(Vec::new()));
    scheduler.set_timesteps(3).unwrap();
    assert_eq!(scheduler.timesteps(), &[20.0, 10.0, 0.0]);
    let x = Tensor::<4>::ones([1, 4, 2, 2], &device);
    let out = scheduler.step_nd(0, x.clone() * 2.0, x, None).unwrap();
    assert_eq!(
        out.prev_sample.to_host().try_to_vec::<f32>().unwrap(),
        vec![2.0; 16]
    );
}

/// `steps_offset 1` with leading spacing puts the last of 1000 steps at timestep 1000, past the
/// table (diffusers raises an IndexError there): an error naming the cause, not a panic.
#[test]
fn timesteps_past_the_schedule_are_refused() {
    for name in ["ddim", "ddpm"] {
        let path = fixtures().join(name).join("scheduler_config.json");
        let mut scheduler = load_scheduler(&path).unwrap();
        let err = scheduler.set_timesteps(1000).unwrap_err().to_string();
        assert!(
            err.contains("timestep 1000") && err.contains("steps_offset 1"),
            "{err}"
        );
        scheduler.set_timesteps(999).unwrap();
    }
}

/// Values no real schedule has are config errors naming the field, before any table is built
/// (issue 21: a negative clip range panicked in `clamp`, a huge `num_train_timesteps`
/// allocated before failing).
#[test]
fn impossible_config_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler_config.json");
    for (class, field, value) in [
        ("DDPMScheduler", "clip_sample_range", "-1.0"),
        ("DDIMScheduler", "steps_offset", "1000"),
        ("DDPMScheduler", "num_train_timesteps", "1000000000000"),
        ("DDPMScheduler", "beta_end", "2.0"),
        ("EulerDiscreteScheduler", "sigma_min", "0"),
        ("DPMSolverMultistepScheduler", "solver_order", "4"),
        ("UnCLIPScheduler", "clip_sample_range", "0"),
    ] {
        std::fs::write(
            &path,
            format!(r#"{{"_class_name": "{class}", "clip_sample": true, "{field}": {value}}}"#),
        )
        .unwrap();
        let err = load_scheduler(&path).err().unwrap().to_string();
        assert!(err.contains(field), "{class} {field} {value}: {err}");
    }
}
