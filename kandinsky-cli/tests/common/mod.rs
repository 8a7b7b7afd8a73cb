//! Helpers of the binary's tests: fixture folders assembled into pipeline repositories, and
//! reading back the PNGs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A 2.2 decoder repository with `unet` (a UNet folder of the fixtures) taking the small
/// prior's 32-wide embeddings.
pub fn decoder_repo_with(unet: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model_index.json"), "{}").unwrap();
    copy_dir(
        &fixtures().join(unet).join("unet"),
        &dir.path().join("unet"),
    );
    copy_dir(&fixtures().join("movq/movq"), &dir.path().join("movq"));
    copy_dir(
        &fixtures().join("schedulers/ddpm"),
        &dir.path().join("scheduler"),
    );
    dir
}

/// The plain 2.2 decoder repository.
pub fn decoder_repo() -> tempfile::TempDir {
    decoder_repo_with("decoder_unet32")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The PNG's (width, height) and its text chunks (tEXt and iTXt).
pub fn png_info(path: &Path) -> ((u32, u32), Vec<(String, String)>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let latin1 = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()));
    let utf8 = info
        .utf8_text
        .iter()
        .map(|t| (t.keyword.clone(), t.get_text().unwrap()));
    ((info.width, info.height), latin1.chain(utf8).collect())
}

/// The binary with `home` as HF_HOME's and KANDINSKY_CACHE's parent, and an HF_ENDPOINT that
/// refuses connections: no test touches the network or the user's caches.
pub fn kandinsky(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kandinsky"));
    cmd.env("HF_HOME", home.join("hf"))
        .env("KANDINSKY_CACHE", home.join("kandinsky"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE");
    cmd
}

/// A 2.1 decoder repository: the small MultilingualCLIP, the XLM-R tokenizer, `unet` (a UNet
/// folder of the fixtures taking the small 2.1 prior's 20-wide embeddings), MoVQ, DDIM.
pub fn decoder_repo_21(unet: &str) -> tempfile::TempDir {
    let decoder = tempfile::tempdir().unwrap();
    let d = decoder.path();
    std::fs::write(d.join("model_index.json"), "{}").unwrap();
    copy_dir(
        &fixtures().join("pipeline21/text_encoder"),
        &d.join("text_encoder"),
    );
    copy_dir(&fixtures().join("tokenizers/xlmr"), &d.join("tokenizer"));
    copy_dir(&fixtures().join(unet).join("unet"), &d.join("unet"));
    copy_dir(&fixtures().join("movq/movq"), &d.join("movq"));
    copy_dir(&fixtures().join("schedulers/ddim"), &d.join("scheduler"));
    decoder
}
