//! The real `kandinsky` binary against small diffusers-layout folders assembled from the
//! fixtures (the small 2.2 prior pipeline and a decoder whose UNet takes its 32-wide
//! embeddings; the small 2.1 prior pipeline and a 2.1 decoder whose UNet takes its 20-wide
//! embeddings), as local folders and as Hub repositories in a Hugging Face cache: the PNG's
//! size and metadata, numbered outputs, downloads off or failing, the zero-image embedding's
//! disk cache, and the exit code of each error.
//!
//! Every run gets its own `HF_HOME` and `KANDINSKY_CACHE` and an `HF_ENDPOINT` that refuses
//! connections, so no test touches the network or the user's caches.

use std::path::{Path, PathBuf};

mod common;

use common::{copy_dir, decoder_repo, fixtures, stderr};
use std::process::Output;

const SIZE_ARGS: [&str; 10] = [
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
];

/// Runs `kandinsky generate` with `home` as HF_HOME and KANDINSKY_CACHE's parent.
fn run_in(home: &Path, prior: &Path, decoder: &Path, out: &Path, extra: &[&str]) -> Output {
    common::kandinsky(home)
        .args(["generate", "--prompt", "a red cat", "--prior"])
        .arg(prior)
        .arg("--decoder")
        .arg(decoder)
        .arg("--output")
        .arg(out)
        .args(SIZE_ARGS)
        .args(extra)
        .output()
        .unwrap()
}

fn run(decoder: &Path, out: &Path, extra: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    run_in(
        home.path(),
        &fixtures().join("prior_pipeline22"),
        decoder,
        out,
        extra,
    )
}

fn text_chunks(path: &Path) -> Vec<(String, String)> {
    let (size, chunks) = common::png_info(path);
    assert_eq!(size, (64, 128), "100 rounds up to 128, as the reference");
    chunks
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
        ("mode", "text2img"),
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
fn any_sampler_drives_the_decoder_and_is_recorded() {
    let decoder = decoder_repo();
    let out = tempfile::tempdir().unwrap();
    for (args, label) in [
        (
            &["--scheduler", "dpm++2m", "--karras"][..],
            "dpm++2m+karras",
        ),
        (&["--scheduler", "HeunDiscreteScheduler"][..], "heun"),
        (
            &["--scheduler", "euler-a", "--prior-scheduler", "dpm++2m"][..],
            "euler-a",
        ),
    ] {
        let path = out.path().join(format!("{label}.png"));
        let result = run(decoder.path(), &path, args);
        assert!(
            result.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let chunks = text_chunks(&path);
        assert!(
            chunks.contains(&("scheduler".to_string(), label.to_string())),
            "{args:?}: {chunks:?}"
        );
    }
    // A wrong name or Karras sigmas where there are none: usage errors (exit 2) naming the
    // valid samplers.
    for args in [
        &["--scheduler", "dpm-fast"][..],
        &["--scheduler", "euler-a", "--karras"][..],
    ] {
        let result = run(decoder.path(), &out.path().join("x.png"), args);
        assert_eq!(result.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&result.stderr).contains("dpm++2m"),
            "{args:?}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
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
    // Corrupt weights: a truncated MoVQ file.
    let decoder = decoder_repo();
    let movq = decoder
        .path()
        .join("movq/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&movq).unwrap();
    std::fs::write(&movq, &bytes[..bytes.len() / 2]).unwrap();
    let (c, err) = code(&[], decoder.path(), &path);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("movq"), "{err}");
    // Invalid guidance.
    let (c, err) = code(&["--guidance", "NaN"], decoder.path(), &path);
    assert_eq!(c, Some(2), "{err}");
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

/// The 2.1 chain: the small 2.1 prior pipeline, then a 2.1 decoder (MultilingualCLIP, the
/// XLM-R tokenizer, the small 2.1 UNet, MoVQ, DDIM).
#[test]
fn generates_with_2_1() {
    let decoder = common::decoder_repo_21("unet_21");
    let d = decoder.path();
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("cat21.png");
    let result = run_in(
        home.path(),
        &fixtures().join("prior_pipeline21"),
        d,
        &path,
        &["--model", "2.1", "--negative-prompt", "размытый"],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let chunks = text_chunks(&path);
    for (key, value) in [("model", "kandinsky-2.1"), ("negative_prompt", "размытый")] {
        assert!(
            chunks.contains(&(key.to_string(), value.to_string())),
            "{key}: {chunks:?}"
        );
    }
}

/// Puts `dir`'s files into a Hugging Face cache at `hf` as repository `id` at a commit, in
/// huggingface_hub's layout (blobs are plain copies here; symlinks work the same).
fn cache_repo(hf: &Path, id: &str, dir: &Path, skip: &[&str]) -> PathBuf {
    let repo = hf
        .join("hub")
        .join(format!("models--{}", id.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &snapshot.join(&name));
        } else {
            std::fs::copy(entry.path(), snapshot.join(&name)).unwrap();
        }
    }
    snapshot
}

/// Hub repository ids resolved through a cache filled as Python's huggingface_hub does, with
/// downloads off: the image encoder is needed only for the zero-image embedding, which is then
/// kept on disk so later runs need no image encoder at all.
#[test]
fn hub_repositories_from_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let hf = home.path().join("hf");
    let prior = cache_repo(
        &hf,
        "test/prior-22",
        &fixtures().join("prior_pipeline22"),
        &["image_encoder", "reference.safetensors"],
    );
    let decoder = decoder_repo();
    cache_repo(&hf, "test/decoder-22", decoder.path(), &[]);
    let (prior_id, decoder_id) = (Path::new("test/prior-22"), Path::new("test/decoder-22"));
    let out = |name: &str| home.path().join(name);

    // A negative prompt needs no zero-image embedding, so no image encoder.
    let r = run_in(
        home.path(),
        prior_id,
        decoder_id,
        &out("a.png"),
        &["--offline", "--negative-prompt", "blurry"],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(text_chunks(&out("a.png")).contains(&("prior".into(), "test/prior-22".into())));

    // Without one it does: the error names the repository, the files and where they go.
    let r = run_in(
        home.path(),
        prior_id,
        decoder_id,
        &out("b.png"),
        &["--offline"],
    );
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    for needed in [
        "test/prior-22",
        "image_encoder/config.json",
        "image_encoder/model.safetensors",
        "huggingface-cli download test/prior-22",
        "--offline",
    ] {
        assert!(err.contains(needed), "{needed}: {err}");
    }

    // With the image encoder in the cache, the embedding is computed once and kept on disk
    // (HF_HUB_OFFLINE=1 instead of --offline this time).
    copy_dir(
        &fixtures().join("prior_pipeline22/image_encoder"),
        &prior.join("image_encoder"),
    );
    let cmd_env = |name: &str| {
        let mut cmd = common::kandinsky(home.path());
        cmd.env("HF_HUB_OFFLINE", "1")
            .args(["generate", "--prompt", "a red cat"])
            .args(["--prior", "test/prior-22", "--decoder", "test/decoder-22"])
            .arg("--output")
            .arg(out(name))
            .args(SIZE_ARGS);
        cmd.output().unwrap()
    };
    let r = cmd_env("c.png");
    assert!(r.status.success(), "{}", stderr(&r));
    let cached: Vec<_> = std::fs::read_dir(home.path().join("kandinsky/zero-image-embeds"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
    std::fs::remove_dir_all(prior.join("image_encoder")).unwrap();
    let r = cmd_env("d.png");
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        !stderr(&r).contains("loading image_encoder"),
        "{}",
        stderr(&r)
    );
    assert_eq!(
        std::fs::read(out("c.png")).unwrap(),
        std::fs::read(out("d.png")).unwrap(),
        "the cached embedding gives the same image"
    );
}

/// The zero-image embedding's cache entry of a local prior is keyed by its image encoder's
/// files: replacing them makes a new entry. An entry that is broken (wrong width, NaN) is
/// reported with its path and computed again, and the image is the same.
#[test]
fn the_zero_embedding_cache_follows_the_encoder_and_checks_entries() {
    let home = tempfile::tempdir().unwrap();
    let prior = home.path().join("prior");
    for component in [
        "image_encoder",
        "image_processor",
        "prior",
        "scheduler",
        "text_encoder",
        "tokenizer",
    ] {
        copy_dir(
            &fixtures().join("prior_pipeline22").join(component),
            &prior.join(component),
        );
    }
    std::fs::write(prior.join("model_index.json"), "{}").unwrap();
    let decoder = decoder_repo();
    let out = |name: &str| home.path().join(name);
    let entries = || -> Vec<PathBuf> {
        let mut e: Vec<_> = std::fs::read_dir(home.path().join("kandinsky/zero-image-embeds"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        e.sort();
        e
    };
    let r = run_in(home.path(), &prior, decoder.path(), &out("a.png"), &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    let first = entries();
    assert_eq!(first.len(), 1);

    // The same file rewritten (a new modification time): a new entry.
    let weights = prior.join("image_encoder/model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::remove_file(&weights).unwrap();
    std::fs::write(&weights, &bytes).unwrap();
    let r = run_in(home.path(), &prior, decoder.path(), &out("b.png"), &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("loading image_encoder"),
        "{}",
        stderr(&r)
    );
    let second = entries();
    assert_eq!(second.len(), 2, "{second:?}");
    let entry = second.iter().find(|e| !first.contains(e)).unwrap().clone();

    // A NaN in the entry, then a truncated entry: warned about by path, computed again.
    let mut broken = std::fs::read(&entry).unwrap();
    broken[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    for (name, bytes) in [("c.png", broken.clone()), ("d.png", broken[..12].to_vec())] {
        std::fs::write(&entry, bytes).unwrap();
        let r = run_in(home.path(), &prior, decoder.path(), &out(name), &[]);
        assert!(r.status.success(), "{}", stderr(&r));
        let err = stderr(&r);
        assert!(err.contains(&entry.display().to_string()), "{err}");
        assert!(err.contains("computing the embedding again"), "{err}");
        assert_eq!(
            std::fs::read(out("a.png")).unwrap(),
            std::fs::read(out(name)).unwrap()
        );
    }
    // The entry was rewritten whole: the next run uses it.
    let r = run_in(home.path(), &prior, decoder.path(), &out("e.png"), &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        !stderr(&r).contains("loading image_encoder"),
        "{}",
        stderr(&r)
    );
}

/// A repository neither cached nor downloadable: the error says what is needed and where.
#[test]
fn a_failed_download_says_what_is_needed() {
    let home = tempfile::tempdir().unwrap();
    let r = run_in(
        home.path(),
        Path::new("test/not-cached"),
        Path::new("test/decoder"),
        &home.path().join("x.png"),
        &[],
    );
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    for needed in [
        "the Hub could not be reached for test/not-cached",
        "prior/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/*",
        &home.path().join("hf/hub").display().to_string(),
    ] {
        assert!(err.contains(needed), "{needed}: {err}");
    }
}

/// Outputs that are not regular files, or cannot be written, are refused before any model
/// loads (exit 3), and nothing replaces them (issue 21, items 1 and 10).
#[test]
fn outputs_are_regular_files_checked_first() {
    let decoder = decoder_repo();
    let out = tempfile::tempdir().unwrap();
    let fifo = out.path().join("pipe.png");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let folder = out.path().join("folder.png");
    std::fs::create_dir(&folder).unwrap();
    let missing = out.path().join("no/such/folder/cat.png");
    for (path, force) in [(&fifo, true), (&folder, true), (&missing, false)] {
        let result = run(
            decoder.path(),
            path,
            if force { &["--force"][..] } else { &[][..] },
        );
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(
            result.status.code(),
            Some(3),
            "{}: {stderr}",
            path.display()
        );
        assert!(
            !stderr.contains("loading"),
            "checked before loading: {stderr}"
        );
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::metadata(&folder).unwrap().is_dir());
}

/// SIGTERM during a generation ends it with exit 130 and leaves neither an image nor a
/// temporary file (issue 21, item 8).
#[test]
fn a_terminated_run_leaves_nothing() {
    let decoder = decoder_repo();
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let child = common::kandinsky(home.path())
        .args(["generate", "--prompt", "a red cat", "--prior"])
        .arg(fixtures().join("prior_pipeline22"))
        .arg("--decoder")
        .arg(decoder.path())
        .arg("--output")
        .arg(out.path().join("cat.png"))
        .args([
            "--steps", "900", "--width", "64", "--height", "64", "--seed", "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let result = child.wait_with_output().unwrap();
    assert_eq!(
        result.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
