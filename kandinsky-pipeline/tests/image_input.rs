//! Input images as users have them: PNG (grey, RGBA, 16-bit, with an EXIF orientation), JPEG
//! and WebP, and a file that is not an image.

use std::path::Path;

use kandinsky_pipeline::{Image, PipelineError};

fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    exif: Option<&[u8]>,
) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    let mut writer = encoder.write_header().unwrap();
    if let Some(exif) = exif {
        writer
            .write_chunk(png::chunk::ChunkType(*b"eXIf"), exif)
            .unwrap();
    }
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

#[test]
fn alpha_is_dropped_and_grey_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let rgba = dir.path().join("rgba.png");
    write_png(
        &rgba,
        1,
        1,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &[10, 20, 30, 0],
        None,
    );
    let image = Image::open(&rgba).unwrap();
    assert_eq!(
        image.rgb,
        [10, 20, 30],
        "PIL's convert(\"RGB\") drops alpha, no compositing"
    );
    let grey = dir.path().join("grey.png");
    write_png(
        &grey,
        2,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[7, 200],
        None,
    );
    assert_eq!(Image::open(&grey).unwrap().rgb, [7, 7, 7, 200, 200, 200]);
}

#[test]
fn sixteen_bit_samples_become_eight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.png");
    // Big-endian 16-bit RGB: 0x8080, 0xFFFF, 0x0000.
    write_png(
        &path,
        1,
        1,
        png::ColorType::Rgb,
        png::BitDepth::Sixteen,
        &[0x80, 0x80, 0xFF, 0xFF, 0, 0],
        None,
    );
    assert_eq!(Image::open(&path).unwrap().rgb, [128, 255, 0]);
}

#[test]
fn exif_orientation_is_applied() {
    // A 2×1 image (red, blue) tagged "rotate 90° clockwise" (orientation 6) reads as 1×2 with
    // red on top, as PIL's exif_transpose gives.
    let exif: Vec<u8> = [
        &b"MM\0\x2a\0\0\0\x08"[..], // big-endian TIFF header, first IFD at 8
        &[0, 1],                    // one entry
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0], // Orientation, SHORT, 1, value 6
        &[0, 0, 0, 0],              // no next IFD
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotated.png");
    write_png(
        &path,
        2,
        1,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &[255, 0, 0, 0, 0, 255],
        Some(&exif),
    );
    let image = Image::open(&path).unwrap();
    assert_eq!((image.width, image.height), (1, 2));
    assert_eq!(image.rgb, [255, 0, 0, 0, 0, 255]);
}

#[test]
fn jpeg_and_webp_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut pixels = image::RgbImage::new(16, 8);
    for (x, y, p) in pixels.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 16) as u8, (y * 32) as u8, 128]);
    }
    for name in ["a.jpg", "a.webp"] {
        let path = dir.path().join(name);
        pixels.save(&path).unwrap();
        let image = Image::open(&path).unwrap();
        assert_eq!((image.width, image.height), (16, 8), "{name}");
        // Lossless WebP is exact; JPEG within its quantization.
        let worst = image
            .rgb
            .iter()
            .zip(pixels.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(
            worst <= if name.ends_with("webp") { 0 } else { 24 },
            "{name}: {worst}"
        );
    }
}

#[test]
fn a_file_that_is_not_an_image_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.png");
    std::fs::write(&path, "hello").unwrap();
    match Image::open(&path) {
        Err(PipelineError::Image { path: p, .. }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Image::open(&dir.path().join("missing.png")),
        Err(PipelineError::Image { .. })
    ));
}

/// Outpainting extensions near the top of `usize` are refused, not wrapped around (issue 21,
/// item 4: `--extend` near 2^63 or 2^64 panicked or was silently ignored).
#[test]
fn huge_extensions_are_refused() {
    let image = Image::from_rgb(2, 2, vec![0; 12]).unwrap();
    for extend in [
        [usize::MAX - 10, 0, 0, 0],
        [0, 1 << 63, 0, 0],
        [0, 0, usize::MAX, usize::MAX],
        [1 << 62, 0, 1 << 62, 0],
        [0, 0, 0, 2047],
    ] {
        let err = image.extend(extend, 2048).unwrap_err();
        assert!(
            matches!(err, PipelineError::InvalidOption { .. }),
            "{extend:?}: {err}"
        );
    }
    let (extended, mask) = image.extend([62, 0, 0, 0], 2048).unwrap();
    assert_eq!((extended.width, extended.height), (64, 64));
    assert_eq!((mask.width, mask.height), (64, 64));
}

/// CRC-32 (PNG's) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

/// A decompression bomb — a tiny file declaring a 20000×20000 or 16000×16000 16-bit RGBA
/// image — is refused from its header, before anything is decoded (issue 21, item 2).
#[test]
fn declared_sizes_are_checked_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    for (side, depth, colour) in [(20_000u32, 8u8, 2u8), (16_000, 16, 6)] {
        let mut ihdr = side.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&[depth, colour, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        // One zlib stream of a few zero rows: decoding all of it would need gigabytes.
        png.extend(chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
        ));
        png.extend(chunk(b"IEND", &[]));
        let path = dir.path().join(format!("bomb-{side}.png"));
        std::fs::write(&path, png).unwrap();
        let err = Image::open(&path).unwrap_err();
        assert!(
            matches!(
                &err,
                PipelineError::Image {
                    source: image::ImageError::Limits(_),
                    ..
                }
            ),
            "{side}: {err}"
        );
    }
}

/// Without replacing, an existing file is kept and the save fails (atomically: of two writers
/// of one name, one fails; issue 21, item 7); a FIFO is never written over.
#[test]
fn saving_never_clobbers_unless_asked() {
    use kandinsky_pipeline::IfExists;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cat.png");
    std::fs::write(&path, b"first").unwrap();
    let image = Image::from_rgb(1, 1, vec![1, 2, 3]).unwrap();
    let err = image
        .save_png_with_text(&path, &[], IfExists::Fail)
        .unwrap_err();
    assert!(matches!(err, PipelineError::Output { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    image
        .save_png_with_text(&path, &[], IfExists::Replace)
        .unwrap();
    assert_eq!(Image::open(&path).unwrap(), image);
    let fresh = dir.path().join("new.png");
    image
        .save_png_with_text(&fresh, &[], IfExists::Fail)
        .unwrap();
    assert_eq!(Image::open(&fresh).unwrap(), image);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A temporary file a killed process left (its pid no longer runs) is removed by the next save
/// into the same folder; one of a running process is not (issue 21, item 8).
#[cfg(target_os = "linux")]
#[test]
fn stale_temporaries_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cat.png");
    // Above the kernel's pid_max (4194304 at most): never a running process.
    let stale = kandinsky_pipeline::temporary_path(&path, 4_194_305);
    let live = kandinsky_pipeline::temporary_path(&path, 1);
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    let image = Image::from_rgb(1, 1, vec![1, 2, 3]).unwrap();
    image.save_png(&path).unwrap();
    assert!(!stale.exists());
    assert!(live.exists());
}

/// Two writers racing for one new name without replacing (issue 21, item 7): in every round
/// exactly one succeeds, and the file is whole.
#[test]
fn of_two_racing_writers_one_fails() {
    use kandinsky_pipeline::IfExists;
    let dir = tempfile::tempdir().unwrap();
    let images = [
        Image::from_rgb(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap(),
        Image::from_rgb(2, 1, vec![9, 8, 7, 6, 5, 4]).unwrap(),
    ];
    for round in 0..50 {
        let path = dir.path().join(format!("{round}.png"));
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<bool> = std::thread::scope(|s| {
            let writers: Vec<_> = images
                .iter()
                .map(|image| {
                    let (path, barrier) = (&path, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        image.save_png_with_text(path, &[], IfExists::Fail).is_ok()
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {results:?}"
        );
        let written = Image::open(&path).unwrap();
        let winner = results.iter().position(|ok| *ok).unwrap();
        assert_eq!(written, images[winner]);
    }
    // Only the 50 images: no temporary file left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 50);
}
