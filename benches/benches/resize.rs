//! The host resize (Pillow's, byte for byte: `kandinsky_clip::resample`) of a 4096×3072 photo-
//! sized RGB image, as the pipelines resize their inputs: to 512×512 with BICUBIC and
//! `reducing_gap=1` (image-to-image and inpainting images), with LANCZOS and no gap (inpainting
//! masks), and to 298×224 with BICUBIC and no gap (CLIP preprocessing: fusion, variations,
//! emb2emb). Single-threaded; compare with a UNet step (BENCHMARKS.md).

use kandinsky_clip::resample::{Pixels, Resample, resize_pixels};

fn main() {
    divan::main();
}

/// A 4096×3072 RGB image of gradients and hashed noise.
fn photo() -> Pixels {
    let (width, height) = (4096, 3072);
    let data = (0..width * height * 3)
        .map(|i: usize| {
            let h = (i as u32).wrapping_mul(0x9E37_79B1) >> 24;
            ((i / 3 % width) * 160 / width + (i / 3 / width) * 96 / height + h as usize / 4) as u8
        })
        .collect();
    Pixels {
        width,
        height,
        channels: 3,
        data,
    }
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn bicubic_gap1_4096x3072_to_512x512(bencher: divan::Bencher) {
    let image = photo();
    bencher.bench_local(|| resize_pixels(&image, 512, 512, Resample::Bicubic, Some(1.0)));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn lanczos_4096x3072_to_512x512(bencher: divan::Bencher) {
    let image = photo();
    bencher.bench_local(|| resize_pixels(&image, 512, 512, Resample::Lanczos, None));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn bicubic_4096x3072_to_298x224(bencher: divan::Bencher) {
    let image = photo();
    bencher.bench_local(|| resize_pixels(&image, 298, 224, Resample::Bicubic, None));
}
