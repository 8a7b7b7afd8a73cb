//! Comparison with reference outputs, for the parity tests of the component crates.

use burn::tensor::TensorData;

/// Compares `ours` with `reference` and returns `(max |ours − reference|, max(1, max |reference|))`.
///
/// # Panics
/// If the shapes differ, a value is not finite, or the max abs error exceeds
/// `tolerance · max(1, max |reference|)`; the message names `name`. Prints the error either way,
/// so that `cargo test -- --nocapture` lists the measured figures.
pub fn assert_close(
    name: &str,
    ours: TensorData,
    reference: &TensorData,
    tolerance: f32,
) -> (f32, f32) {
    assert_eq!(
        ours.shape(),
        reference.shape(),
        "{name}: shape differs from the reference"
    );
    let ours = ours
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float data");
    let reference = reference
        .clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float data");
    assert!(
        ours.iter().all(|v| v.is_finite()),
        "{name}: non-finite output"
    );
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let max_err = ours
        .iter()
        .zip(&reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{name}: max abs error {max_err:.3e} (scale {scale:.3})");
    assert!(
        max_err <= tolerance * scale,
        "{name}: max abs error {max_err:e} exceeds {tolerance:e} x {scale}"
    );
    (max_err, scale)
}
