//! The vector quantizer: nearest codebook entry by L2 distance.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor};

/// diffusers `VectorQuantizer` (legacy, no remap). Kandinsky's pipelines never quantize (they
/// decode with `force_not_quantize = true`); it is here for `decode(.., false)` and tooling.
#[derive(Module, Debug)]
pub struct VectorQuantizer {
    /// The codebook, (num_vq_embeddings, vq_embed_dim).
    pub(crate) embedding: Embedding,
}

impl VectorQuantizer {
    /// A codebook of `entries` vectors of width `dim`.
    pub fn new(entries: usize, dim: usize, device: &Device) -> Self {
        Self {
            embedding: EmbeddingConfig::new(entries, dim).init(device),
        }
    }

    /// Index of the nearest codebook entry for every position of `z` (B, D, H, W) → (B, H, W).
    pub fn indices(&self, z: Tensor<4>) -> Tensor<3, Int> {
        let [b, d, h, w] = z.dims();
        let flat = z.permute([0, 2, 3, 1]).reshape([b * h * w, d]);
        let codebook = self.embedding.weight.val(); // (K, D)
        let k = codebook.dims()[0];
        // |z - e|² = |z|² - 2 z·e + |e|², as torch.cdist computes it for these sizes.
        let z2 = flat.clone().powi_scalar(2).sum_dim(1); // (N, 1)
        let e2 = codebook.clone().powi_scalar(2).sum_dim(1).reshape([1, k]);
        let dist = z2 + e2 - flat.matmul(codebook.transpose()).mul_scalar(2.0);
        dist.argmin(1).reshape([b, h, w])
    }

    /// Replaces every vector of `z` by its nearest codebook entry; returns it with the indices.
    pub fn forward(&self, z: Tensor<4>) -> (Tensor<4>, Tensor<3, Int>) {
        let [b, d, h, w] = z.dims();
        let indices = self.indices(z);
        let codebook = self.embedding.weight.val();
        let quantized = codebook
            .select(0, indices.clone().reshape([b * h * w]))
            .reshape([b, h, w, d])
            .permute([0, 3, 1, 2]);
        (quantized, indices)
    }
}
