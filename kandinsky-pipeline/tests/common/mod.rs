//! Shared by the end-to-end parity tests: the fixtures folder and the reference run's noise.

#![allow(dead_code)]

use kandinsky_testing::fixtures_dir;
use std::path::PathBuf;

use burn::tensor::TensorData;
use kandinsky_pipeline::NoiseSource;

pub fn fixtures() -> PathBuf {
    fixtures_dir()
}

/// Hands out the reference run's noise draws, in order, checking each one's size.
pub struct Recorded(pub Vec<TensorData>);

impl Recorded {
    /// The draws `noise.0`, `noise.1`, … of a reference file.
    pub fn from_reference(r: &std::collections::BTreeMap<String, TensorData>) -> Self {
        Self(
            (0..)
                .map_while(|i| r.get(&format!("noise.{i}")).cloned())
                .collect(),
        )
    }
}

impl NoiseSource for Recorded {
    fn normal(&mut self, shape: &[usize]) -> TensorData {
        assert!(
            !self.0.is_empty(),
            "more noise drawn than the reference drew"
        );
        let data = self.0.remove(0);
        let total = shape.iter().product::<usize>();
        assert_eq!(
            data.shape().iter().product::<usize>(),
            total,
            "noise of {shape:?}"
        );
        TensorData::new(
            data.convert::<f32>().try_into_vec::<f32>().unwrap(),
            shape.to_vec(),
        )
    }
}

/// Compares the latents after each step with the reference's `latents.{i}`, within
/// `tolerance` (see [`kandinsky_testing::assert_close`]).
pub fn assert_steps(
    steps: Vec<TensorData>,
    reference: &std::collections::BTreeMap<String, TensorData>,
    tolerance: f32,
) {
    for (i, latents) in steps.into_iter().enumerate() {
        kandinsky_testing::assert_close(
            &format!("latents after step {i}"),
            latents,
            &reference[&format!("latents.{i}")],
            tolerance,
        );
    }
}
