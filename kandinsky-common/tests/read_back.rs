//! Read-backs kept across later device work: `to_host` must keep its values, on every backend.
//!
//! On burn 0.22.1's wgpu backend (lavapipe), a `TensorData` from `Tensor::into_data` kept
//! while another tensor is read shows the newer tensor's values (the staging buffer it views is
//! reused); `raw_into_data_kept_across_a_read` records that, and `to_host` is the workaround
//! that every trace and pipeline read-back goes through.

use burn::tensor::{Tensor, TensorData};
use kandinsky_common::tensors::to_host;
use kandinsky_testing::test_device;

fn values(data: &TensorData) -> Vec<f32> {
    data.clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float data")
}

fn ramp(device: &burn::tensor::Device) -> Tensor<2> {
    let v: Vec<f32> = (0..128).map(|i| i as f32 * 0.25 - 3.0).collect();
    Tensor::from_data(TensorData::new(v, [2, 64]), device)
}

#[test]
fn to_host_values_survive_later_reads() {
    let device = test_device();
    let x = ramp(&device);
    let expected = values(&x.clone().into_data());
    let y = x.exp().log(); // computed on the device, so not the uploaded buffer
    let kept = to_host(y.clone());
    let doubled = to_host(y * 2.0);
    let kept = values(&kept);
    for (i, (k, e)) in kept.iter().zip(&expected).enumerate() {
        assert!(
            (k - e).abs() <= 1e-5 * e.abs().max(1.0),
            "kept[{i}] = {k}, expected {e}"
        );
    }
    let doubled = values(&doubled);
    for (d, e) in doubled.iter().zip(&expected) {
        assert!((d - 2.0 * e).abs() <= 2e-5 * e.abs().max(1.0));
    }
}

/// Not an assertion of a bug: prints whether the backend's raw `into_data` is affected, so the
/// workaround can go once burn fixes it (`cargo test -- --nocapture`).
#[test]
fn raw_into_data_kept_across_a_read() {
    let device = test_device();
    let y = ramp(&device).exp().log();
    let kept = y.clone().into_data();
    let _other = (y * 2.0).into_data();
    let expected = values(&ramp(&device).into_data());
    let affected = values(&kept)
        .iter()
        .zip(&expected)
        .any(|(k, e)| (k - e).abs() > 1e-5 * e.abs().max(1.0));
    println!("raw into_data overwritten by a later read on {device:?}: {affected}");
}
