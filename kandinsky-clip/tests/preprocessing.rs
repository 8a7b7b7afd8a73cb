//! CLIP image preprocessing against the reference (transformers' `CLIPImageProcessor`, PIL
//! backend, with the prior repos' configuration) on three synthesized images: a non-square
//! photo-like image (shapes, a gradient, a hard edge, noise; downscaled), pure gradients
//! (portrait; downscaled) and uniform noise (upscaled).
//!
//! Bound: the mean absolute difference, measured in the [0, 1] pixel range (the normalized
//! difference times the channel's std), stays below 1/255. PIL resizes with fixed-point
//! coefficients and rounds to 8 bits after each pass; we use f32 weights and round at the same
//! points, so a pixel can differ by one level where a value falls near .5.

use kandinsky_common::tensors::ToHost;
use kandinsky_testing::{fixtures_dir, test_device};

use kandinsky_clip::{ClipImageProcessor, RgbImage};
use kandinsky_common::tensors::read_safetensors;

#[test]
fn matches_the_reference_image_processor() {
    let dir = fixtures_dir().join("clip_image_processor");
    let processor = ClipImageProcessor::from_file(&dir.join("preprocessor_config.json")).unwrap();
    assert_eq!(processor, ClipImageProcessor::default());
    let r = read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let device = test_device();
    for name in ["photo_480x320", "gradient_230x300", "noise_96x128"] {
        let image = &r[&format!("{name}.image")];
        let (h, w) = (image.shape()[0], image.shape()[1]);
        let bytes: Vec<u8> = image.clone().convert::<u8>().try_to_vec::<u8>().unwrap();
        let ours = processor
            .preprocess(
                &[RgbImage {
                    width: w,
                    height: h,
                    data: &bytes,
                }],
                &device,
            )
            .unwrap();
        let expected = &r[&format!("{name}.pixel_values")];
        assert_eq!(ours.dims().to_vec(), expected.shape().to_vec(), "{name}");
        let ours = ours.to_host().try_to_vec::<f32>().unwrap();
        let expected = expected.clone().try_to_vec::<f32>().unwrap();
        let plane = 224 * 224;
        let (mut sum, mut max) = (0.0f64, 0.0f32);
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            let d = (a - b).abs() * processor.image_std[i / plane];
            sum += d as f64;
            max = max.max(d);
        }
        let mean = sum / ours.len() as f64;
        println!(
            "{name}: mean |difference| {:.4}/255, max {:.2}/255 (pixel range)",
            mean * 255.0,
            max * 255.0
        );
        assert!(mean < 1.0 / 255.0, "{name}: mean difference {mean} ≥ 1/255");
    }
}

#[test]
fn a_buffer_of_the_wrong_size_is_an_error() {
    let err = ClipImageProcessor::default()
        .preprocess(
            &[RgbImage {
                width: 4,
                height: 3,
                data: &[0; 35],
            }],
            &test_device(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("36 bytes"), "{err}");
}
