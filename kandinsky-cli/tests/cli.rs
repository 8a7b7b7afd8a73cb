//! The real `kandinsky` binary against small diffusers-layout folders assembled from the
//! fixtures (the small 2.2 prior pipeline and a decoder whose UNet takes its 32-wide
//! embeddings): the PNG's size and metadata, numbered outputs, and the exit code of each error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn decoder_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model_index.json"), "{}").unwrap();
    copy_dir(
        &fixtures().join("decoder_unet32/unet"),
        &dir.path().join("unet"),
    );
    copy_dir(&fixtures().join("movq/movq"), &dir.path().join("movq"));
    copy_dir(
        &fixtures().join("schedulers/ddpm"),
        &dir.path().join("scheduler"),
    );
    dir
}

fn run(decoder: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kandinsky"));
    cmd.args(["generate", "--prompt", "a red cat", "--prior"])
        .arg(fixtures().join("prior_pipeline22"))
        .arg("--decoder")
        .arg(decoder)
        .arg("--output")
        .arg(out)
        .args([
            "--width",
            "64",
            "--height",
            "100",
            "--steps",
            "2",
            "--prior-steps",
            "2",
            "--seed",
            "5",
        ])
        .args(extra);
    cmd.output().unwrap()
}

fn text_chunks(path: &Path) -> Vec<(String, String)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!(
        (info.width, info.height),
        (64, 128),
        "100 rounds up to 128, as the reference"
    );
    info.uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect()
}

#[test]
fn generates_a_png_with_its_parameters() {
    let decoder = decoder_repo();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("cat.png");
    let result = run(decoder.path(), &path, &["--negative-prompt", "blurry"]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let chunks = text_chunks(&path);
    for (key, value) in [
        ("prompt", "a red cat"),
        ("negative_prompt", "blurry"),
        ("seed", "5"),
        ("model", "kandinsky-2.2"),
        ("size", "64x100"),
    ] {
        assert!(
            chunks.contains(&(key.to_string(), value.to_string())),
            "{key}: {chunks:?}"
        );
    }
    // An existing file is kept without --force (exit 3), replaced with it.
    let again = run(decoder.path(), &path, &[]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(decoder.path(), &path, &["--force"]).status.success());
}

#[test]
fn several_images_get_numbered_names() {
    let decoder = decoder_repo();
    let out = tempfile::tempdir().unwrap();
    let result = run(
        decoder.path(),
        &out.path().join("cat.png"),
        &["--num-images", "2"],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for name in ["cat-1.png", "cat-2.png"] {
        assert!(!text_chunks(&out.path().join(name)).is_empty(), "{name}");
    }
}

#[test]
fn bad_input_gets_distinct_exit_codes() {
    let decoder = decoder_repo();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("x.png");
    let code = |extra: &[&str], dec: &Path, out: &Path| {
        let r = run(dec, out, extra);
        (
            r.status.code(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    };
    // Invalid sizes: zero, beyond the maximum, not a number (clap), negative (clap).
    for size in ["0", "4096", "abc", "-5"] {
        let (c, err) = code(&["--width", size], decoder.path(), &path);
        assert_eq!(c, Some(2), "--width {size}: {err}");
    }
    // Unknown backend (clap) and a backend not compiled in.
    let (c, _) = code(&["--backend", "tpu"], decoder.path(), &path);
    assert_eq!(c, Some(2));
    if !cfg!(feature = "cuda") {
        let (c, err) = code(&["--backend", "cuda"], decoder.path(), &path);
        assert_eq!(c, Some(2));
        assert!(err.contains("not compiled in"), "{err}");
    }
    // Missing weights: a decoder folder without its UNet weights.
    std::fs::remove_file(
        decoder
            .path()
            .join("unet/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let (c, err) = code(&[], decoder.path(), &path);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("diffusion_pytorch_model"), "{err}");
    // Unwritable output: its folder does not exist.
    let decoder = decoder_repo();
    let (c, err) = code(&[], decoder.path(), &out.path().join("missing/dir/x.png"));
    assert_eq!(c, Some(3), "{err}");
}

/// Half precision: the f32 files are cast on load and the whole generation runs in f16.
#[test]
fn generates_in_f16() {
    let decoder = decoder_repo();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("cat16.png");
    let result = run(decoder.path(), &path, &["--dtype", "f16"]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(!text_chunks(&path).is_empty());
}
