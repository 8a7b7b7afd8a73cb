//! The MoVQ on a bf16 device within ROUNDING_LAYERS × bf16's unit roundoff (see `half/mod.rs`).

mod half;

#[test]
fn bf16_device_runs_within_the_bf16_bound() {
    half::run(burn::tensor::FloatDType::BF16);
}
