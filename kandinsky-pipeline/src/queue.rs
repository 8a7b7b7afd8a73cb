//! Device queue handling in the denoising loops.

use burn::tensor::Device;

use crate::PipelineError;

/// Hands the device's queued operations over for execution (`Device::flush`, no wait) between
/// the classifier-free guidance and the scheduler step of a denoising loop.
///
/// A workaround: with burn 0.22.1's fusion on wgpu (measured on Mesa's lavapipe), the graph
/// fused across guidance and the UnCLIP step of embedding-to-embedding gave image embeddings off
/// by 5.7 at scale 3.9 from the first step, while each operation alone, and the same loop with
/// the queue handed over here, match the reference (`tests/prior_modes.rs` on
/// `scripts/test-backend.sh wgpu`). It costs one hand-over per step, next to a whole UNet or
/// prior forward pass; CPU backends execute eagerly and do nothing here.
pub(crate) fn hand_over(device: &Device) -> Result<(), PipelineError> {
    device
        .flush()
        .map_err(|e| PipelineError::Device(format!("{e:?}")))
}
