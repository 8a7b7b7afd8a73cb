//! The host resize is Pillow's, byte for byte: every case of the corpus that
//! `tools/reference/reference.py resize` wrote with Pillow 13 (`fixtures/resize/`) — pattern
//! images of many sizes up- and downscaled with BOX, BICUBIC and LANCZOS, with and without
//! `reducing_gap`, and PNG files (RGBA, grey, 16-bit RGB, a photo) read as diffusers'
//! `load_image` reads them — must give identical bytes. No tolerance: any difference fails.

mod common;

use std::path::Path;

use common::fixtures;
use kandinsky_common::tensors::read_safetensors;
use kandinsky_pipeline::Image;
use kandinsky_pipeline::clip::resample::{Pixels, Resample, resize_pixels};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    source: Source,
    width: usize,
    height: usize,
    filter: String,
    reducing_gap: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    /// width, height, seed of `pattern`.
    Pattern([usize; 3]),
    /// A PNG file of fixtures/resize.
    Png(String),
}

/// `pattern_image` of reference.py: gradients plus hashed noise, in 32-bit arithmetic.
fn pattern(width: usize, height: usize, seed: usize) -> Pixels {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            for c in 0..3u32 {
                let mut h = (x as u32).wrapping_mul(73_856_093)
                    ^ (y as u32).wrapping_mul(19_349_663)
                    ^ c.wrapping_mul(83_492_791)
                    ^ (seed as u32).wrapping_mul(2_654_435_761);
                h ^= h >> 13;
                h = h.wrapping_mul(0x5BD1_E995);
                h ^= h >> 15;
                let noise = i64::from(h & 63);
                let grad = (x * 160 / width + y * 96 / height) as i64;
                data.push((grad + noise - 32 + i64::from(c) * 10).clamp(0, 255) as u8);
            }
        }
    }
    Pixels {
        width,
        height,
        channels: 3,
        data,
    }
}

fn source(source: &Source, dir: &Path) -> Pixels {
    match source {
        Source::Pattern([w, h, seed]) => pattern(*w, *h, *seed),
        Source::Png(file) => {
            let image = Image::open(&dir.join(file)).unwrap();
            Pixels {
                width: image.width,
                height: image.height,
                channels: 3,
                data: image.rgb,
            }
        }
    }
}

#[test]
fn every_case_is_byte_identical_to_pillow() {
    let dir = fixtures().join("resize");
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let expected = read_safetensors(&dir.join("corpus.safetensors")).unwrap();
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for case in &cases {
        let filter = match case.filter.as_str() {
            "box" => Resample::Box,
            "bicubic" => Resample::Bicubic,
            "lanczos" => Resample::Lanczos,
            other => panic!("unknown filter {other}"),
        };
        let input = source(&case.source, &dir);
        let out = resize_pixels(&input, case.width, case.height, filter, case.reducing_gap);
        let reference = &expected[&case.name];
        assert_eq!(reference.shape().to_vec(), [case.height, case.width, 3]);
        let reference = reference.as_bytes();
        let differing = out
            .data
            .iter()
            .zip(reference)
            .filter(|(a, b)| a != b)
            .count();
        if (out.width, out.height) != (case.width, case.height) || differing > 0 {
            failures.push(format!("{}: {differing} bytes differ", case.name));
        }
        *counts.entry(case.filter.clone()).or_default() += 1;
    }
    println!("{} cases byte-identical to Pillow: {counts:?}", cases.len());
    assert!(failures.is_empty(), "{failures:#?}");
}
