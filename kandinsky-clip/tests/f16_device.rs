//! The encoders on a f16 device within ROUNDING_LAYERS × f16's unit roundoff (see `half/mod.rs`).

mod half;

#[test]
fn f16_device_runs_within_the_f16_bound() {
    half::run(burn::tensor::FloatDType::F16);
}
