//! Every mode's subcommand, run as the real binary on the small pipelines: the small 2.2 prior
//! with decoders whose UNets take its 32-wide embeddings (plain, inpainting, ControlNet), the
//! small 2.1 prior with the small 2.1 inpainting decoder; the 64×64 fixture picture and mask.
//! Checked: success, the PNG's size and its mode metadata; each mode's bad input and its exit
//! code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{
    decoder_repo, decoder_repo_21, decoder_repo_with, fixtures, kandinsky, png_info, stderr,
};

fn picture() -> PathBuf {
    fixtures().join("modes/source.png")
}

/// Runs `subcommand` with the 2.2 prior, `decoder`, 64×64, 4 decoder steps, 4 prior steps.
fn run(home: &Path, subcommand: &str, decoder: &Path, out: &Path, extra: &[&str]) -> Output {
    kandinsky(home)
        .arg(subcommand)
        .arg("--prior")
        .arg(fixtures().join("prior_pipeline22"))
        .arg("--decoder")
        .arg(decoder)
        .arg("--output")
        .arg(out)
        .args([
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "4",
            "--prior-steps",
            "4",
            "--seed",
            "9",
        ])
        .args(extra)
        .output()
        .unwrap()
}

/// Runs a mode that should succeed and returns its PNG's size and metadata.
fn succeeds(
    subcommand: &str,
    decoder: &Path,
    extra: &[&str],
) -> ((u32, u32), Vec<(String, String)>) {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out.png");
    let r = run(home.path(), subcommand, decoder, &out, extra);
    assert!(r.status.success(), "{subcommand}: {}", stderr(&r));
    // Progress counts the steps that run (image-to-image runs only the last ones).
    let steps: Vec<(usize, usize)> = stderr(&r)
        .lines()
        .filter_map(|l| l.split("decoder step ").nth(1))
        .filter_map(|s| s.trim().split_once('/'))
        .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
        .collect();
    assert!(!steps.is_empty(), "{}", stderr(&r));
    assert!(steps.iter().all(|(a, b)| a <= b), "{steps:?}");
    assert_eq!(steps.last().map(|(a, b)| a == b), Some(true), "{steps:?}");
    let (size, chunks) = png_info(&out);
    assert!(
        chunks.contains(&(
            "mode".to_string(),
            subcommand.replace("generate", "text2img")
        )),
        "{chunks:?}"
    );
    (size, chunks)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn img2img() {
    let decoder = decoder_repo();
    let (size, chunks) = succeeds(
        "img2img",
        decoder.path(),
        &[
            "--prompt",
            "a red cat",
            "--image",
            path(&picture()),
            "--strength",
            "0.5",
        ],
    );
    assert_eq!(size, (64, 64));
    assert!(chunks.contains(&("strength".into(), "0.5".into())));
    assert!(
        chunks.contains(&("guidance".into(), "4".into())),
        "{chunks:?}"
    );
}

#[test]
fn inpaint() {
    let decoder = decoder_repo_with("unet_22_inpaint");
    let mask = fixtures().join("modes/mask.png");
    let (size, _) = succeeds(
        "inpaint",
        decoder.path(),
        &[
            "--prompt",
            "a red cat",
            "--image",
            path(&picture()),
            "--mask",
            path(&mask),
        ],
    );
    assert_eq!(size, (64, 64));
}

#[test]
fn outpaint_extends_the_canvas() {
    let decoder = decoder_repo_with("unet_22_inpaint");
    let (size, chunks) = succeeds(
        "outpaint",
        decoder.path(),
        &[
            "--prompt",
            "a red cat",
            "--image",
            path(&picture()),
            "--extend",
            "16,0,16,8",
        ],
    );
    assert_eq!(size, (128, 128), "96×72 rounds up to 128×128");
    assert!(chunks.contains(&("extend".into(), "16,0,16,8".into())));
}

#[test]
fn fuse_and_variation() {
    let decoder = decoder_repo();
    let image_item = format!("image:{}", path(&picture()));
    let (size, _) = succeeds(
        "fuse",
        decoder.path(),
        &[
            "--item",
            "text:a red cat",
            "--item",
            &image_item,
            "--weights",
            "0.3,0.7",
        ],
    );
    assert_eq!(size, (64, 64));
    let (size, _) = succeeds("variation", decoder.path(), &["--image", path(&picture())]);
    assert_eq!(size, (64, 64));
}

#[test]
fn controlnet() {
    let decoder = decoder_repo_with("unet_22_controlnet32");
    let hint = fixtures().join("modes/mask.png");
    let (size, _) = succeeds(
        "controlnet",
        decoder.path(),
        &["--prompt", "a red cat", "--hint", path(&hint)],
    );
    assert_eq!(size, (64, 64));
    // ControlNet image-to-image.
    let (_, chunks) = succeeds(
        "controlnet",
        decoder.path(),
        &[
            "--prompt",
            "a red cat",
            "--hint",
            path(&hint),
            "--image",
            path(&picture()),
            "--strength",
            "0.5",
        ],
    );
    assert!(chunks.contains(&("strength".into(), "0.5".into())));
}

#[test]
fn emb2emb() {
    let decoder = decoder_repo();
    let (size, _) = succeeds(
        "emb2emb",
        decoder.path(),
        &[
            "--prompt",
            "a red cat",
            "--image",
            path(&picture()),
            "--strength",
            "0.5",
        ],
    );
    assert_eq!(size, (64, 64));
}

#[test]
fn inpaint_with_2_1() {
    let decoder = decoder_repo_21("unet_21_inpaint");
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out.png");
    let mask = fixtures().join("modes/mask.png");
    let r = kandinsky(home.path())
        .args([
            "inpaint",
            "--model",
            "2.1",
            "--prompt",
            "a red cat",
            "--prior",
        ])
        .arg(fixtures().join("prior_pipeline21"))
        .arg("--decoder")
        .arg(decoder.path())
        .args(["--image", path(&picture()), "--mask", path(&mask)])
        .args([
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "3",
            "--prior-steps",
            "2",
        ])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(png_info(&out).0, (64, 64));
}

#[test]
fn bad_mode_input_gets_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("x.png");
    let decoder = decoder_repo();
    let picture = picture();
    let pic = path(&picture);
    let code = |subcommand: &str, decoder: &Path, extra: &[&str]| {
        let r = run(home.path(), subcommand, decoder, &out, extra);
        (r.status.code(), stderr(&r))
    };
    // An unreadable image (not an image at all).
    let not_image = home.path().join("notes.png");
    std::fs::write(&not_image, "not a picture").unwrap();
    let (c, err) = code(
        "img2img",
        decoder.path(),
        &["--prompt", "x", "--image", path(&not_image)],
    );
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("cannot read the image"), "{err}");
    // A missing one.
    let (c, _) = code(
        "variation",
        decoder.path(),
        &["--image", "/nonexistent.png"],
    );
    assert_eq!(c, Some(2));
    // Strength out of range.
    for strength in ["0", "1.5"] {
        let extra = ["--prompt", "x", "--image", pic, "--strength", strength];
        let (c, err) = code("img2img", decoder.path(), &extra);
        assert_eq!(c, Some(2), "{strength}: {err}");
    }
    // Weights that do not match the items, and a malformed item.
    let (c, err) = code(
        "fuse",
        decoder.path(),
        &["--item", "text:a", "--weights", "0.5,0.5"],
    );
    assert_eq!(c, Some(2), "{err}");
    let (c, err) = code(
        "fuse",
        decoder.path(),
        &["--item", "a cat", "--weights", "1"],
    );
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("text:PROMPT or image:PATH"), "{err}");
    // Inpainting with a decoder that is not an inpainting one.
    let mask = fixtures().join("modes/mask.png");
    let extra = ["--prompt", "x", "--image", pic, "--mask", path(&mask)];
    let (c, err) = code("inpaint", decoder.path(), &extra);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("inpainting UNet"), "{err}");
    // ControlNet with 2.1, and outpainting by nothing.
    let (c, _) = code(
        "controlnet",
        decoder.path(),
        &["--model", "2.1", "--prompt", "x", "--hint", path(&mask)],
    );
    assert_eq!(c, Some(2));
    let extra = ["--prompt", "x", "--image", pic, "--extend", "0,0,0,0"];
    let (c, err) = code("outpaint", decoder.path(), &extra);
    assert_eq!(c, Some(2), "{err}");
    let extra = ["--prompt", "x", "--image", pic, "--extend", "1,2"];
    let (c, _) = code("outpaint", decoder.path(), &extra);
    assert_eq!(c, Some(2));
}
