//! The bodies of the fuzz targets (`fuzz_targets/*.rs` call them; `tests/replay.rs` runs the
//! stored corpus through them on stable). Each takes arbitrary bytes and must return — an
//! error is fine, a panic, an abort, a hang or an unbounded allocation is a finding.
//!
//! Files are written to one folder per process under the temporary folder, since the
//! loaders under test read files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};

/// The CPU device of every target.
fn device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(Device::flex)
}

/// `name` in this process's scratch folder, holding `data`.
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kandinsky-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    });
    let path = dir.join(name);
    std::fs::write(&path, data).expect("a scratch file");
    path
}

/// A safetensors file loaded into a small module (a Linear 2 → 3 with bias): the header
/// parser, the checks against the module, the mapped and positioned reads and dtype conversions.
pub fn safetensors(data: &[u8]) {
    use burn::nn::LinearConfig;
    let path = scratch("model.safetensors", data);
    let module = LinearConfig::new(2, 3).init(device());
    if let Ok(module) = kandinsky_common::weights::load_safetensors(module, &path, device()) {
        let _ = module.weight.val().into_data();
    }
    let _ = kandinsky_common::tensors::read_safetensors(&path);
}

/// A config file (the first byte picks which of the eight kinds), parsed and validated; a
/// valid model config is then built (lazily, as loading does) and its expected tensors
/// listed, so the sizes it declares are exercised.
pub fn configs(data: &[u8]) {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let path = scratch("config.json", text);
    let d = device();
    let tensors = match kind % 8 {
        0 => kandinsky_unet::UNetConfig::from_file(&path)
            .map(|c| kandinsky_common::expected_tensors(&c.init(d)).len()),
        1 => kandinsky_movq::MoVQConfig::from_file(&path)
            .map(|c| kandinsky_common::expected_tensors(&c.init(d)).len()),
        2 => kandinsky_prior::PriorConfig::from_file(&path)
            .map(|c| kandinsky_common::expected_tensors(&c.init(d)).len()),
        3 => kandinsky_clip::config::ClipTextConfig::from_file(&path)
            .map(|c| kandinsky_common::expected_tensors(&c.init(d)).len()),
        4 => kandinsky_clip::config::ClipVisionConfig::from_file(&path)
            .map(|c| kandinsky_common::expected_tensors(&c.init(d)).len()),
        5 => kandinsky_clip::config::MClipConfig::from_file(&path)
            .map(|c| kandinsky_common::expected_tensors(&c.init(d)).len()),
        6 => kandinsky_clip::ClipImageProcessor::from_file(&path).map(|_| 0),
        _ => kandinsky_pipeline::scheduler::SchedulerConfig::from_file(&path).map(|_| 0),
    };
    let _ = tensors;
}

/// A scheduler config run end to end: loaded as its class, or as a sampler of the registry
/// built on it (the first byte), with a number of steps (the second), then every step taken
/// on a small sample.
pub fn scheduler(data: &[u8]) {
    use kandinsky_pipeline::scheduler::{SAMPLERS, SchedulerConfig, load_scheduler};
    let [choice, steps, text @ ..] = data else {
        return;
    };
    let path = scratch("scheduler_config.json", text);
    let scheduler = match usize::from(*choice) {
        0 => load_scheduler(&path),
        n => SchedulerConfig::from_file(&path)
            .map_err(Into::into)
            .and_then(|base| {
                let sampler = &SAMPLERS[(n - 1) % SAMPLERS.len()];
                sampler.build(&base, n > 128 && sampler.karras, &path)
            }),
    };
    let Ok(mut scheduler) = scheduler else {
        return;
    };
    if scheduler
        .set_timesteps(1 + usize::from(*steps) % 64)
        .is_err()
    {
        return;
    }
    let d = device();
    let width = 4;
    let sample = |v: f32| Tensor::<2>::from_data(TensorData::new(vec![v; width], [1, width]), d);
    let mut latents = sample(scheduler.init_noise_sigma() as f32);
    let _ = scheduler.add_noise(sample(0.5), sample(1.0), 0);
    let start = scheduler.first_index(0);
    for index in start..scheduler.timesteps().len() {
        let Ok(input) = scheduler.scale_model_input(index, latents.clone()) else {
            return;
        };
        let output = match scheduler.uses_model_variance() {
            true => Tensor::cat(vec![input.clone() * 0.1, sample(0.0)], 1),
            false => input * 0.1,
        };
        let noise = scheduler.needs_noise(index).then(|| sample(0.3));
        match scheduler.step(index, output, latents.clone(), noise) {
            Ok(out) => latents = out.prev_sample,
            Err(_) => return,
        }
    }
    let _ = latents.into_data();
}

/// Runs `f` with the panic hook silenced: for code that catches a dependency's panic on
/// purpose (libfuzzer-sys's hook aborts on any panic, caught or not). A panic that escapes `f`
/// is resumed, and the fuzz target's wrapper still reports it.
fn with_caught_panics_allowed<R>(f: impl FnOnce() -> R) -> R {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Tokenizer files (the first byte picks `tokenizer.json` or CLIP's `vocab.json` +
/// `merges.txt`; the rest is split at 0xFF bytes into the files, the config and a prompt)
/// loaded and used.
pub fn tokenizer(data: &[u8]) {
    use kandinsky_clip::{TextTokenizer, TokenizerFiles};
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xFF);
    let (a, b, config, prompt) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next(),
        parts.next().unwrap_or(b"a red cat"),
    );
    let files = match kind % 2 {
        0 => TokenizerFiles::Json(a),
        _ => TokenizerFiles::ClipBpe {
            vocab: a,
            merges: b,
        },
    };
    // `from_bytes` catches the tokenizers crate's panics on malformed files (its fix of the
    // first finding); only a panic escaping it is a finding.
    let Ok(tokenizer) = with_caught_panics_allowed(|| TextTokenizer::from_bytes(files, config))
    else {
        return;
    };
    let prompt = String::from_utf8_lossy(prompt);
    if let Ok(tokens) = tokenizer.encode(&[&prompt, ""]) {
        assert_eq!(
            tokens.ids_tensor(device()).dims(),
            [2, tokenizer.max_length()]
        );
    }
}

/// An input image file: decoded with limits, resized as the pipelines resize images and
/// masks, extended as outpainting does.
pub fn image(data: &[u8]) {
    use kandinsky_pipeline::Image;
    let path = scratch("input.png", data);
    let Ok(image) = Image::open(&path) else {
        return;
    };
    let d = device();
    let _ = image.to_tensor(64, 48, d).map(|t| t.into_data());
    let _ = image.to_keep_mask(32, 32, d).map(|t| t.into_data());
    let _ = image.extend([8, 0, 3, 16], 2048);
}

/// Command-line arguments (the bytes split at NULs) parsed and turned into a validated job,
/// as the command does before loading any model.
pub fn cli_args(data: &[u8]) {
    use clap::Parser;
    let args = std::iter::once("kandinsky".to_string()).chain(
        data.split(|&b| b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned()),
    );
    if let Ok(cli) = kandinsky_cli::Cli::try_parse_from(args) {
        let _ = cli.command.job();
    }
}

/// A job API request body (JSON) turned into a validated request within the default limits,
/// as `POST /v1/jobs` does before queueing.
pub fn server_request(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<kandinsky_server::JobBody>(data) {
        let _ = body.into_request(&kandinsky_server::Limits::default(), 0);
    }
}

/// A zero-image embedding cache entry (the first two bytes: the width expected) read as the
/// cache reads it.
pub fn zero_cache(data: &[u8]) {
    let [a, b, entry @ ..] = data else {
        return;
    };
    let width = usize::from(u16::from_le_bytes([*a, *b]));
    if let Ok(values) = kandinsky_pipeline::embed_cache::parse_entry(entry, width) {
        assert_eq!(values.len(), width);
        assert!(values.iter().all(|v| v.is_finite()));
    }
}

/// The stored corpus of `target`: `fuzz/corpus/<target>/` and the regression cases in
/// `fuzz/regressions/<target>/`.
pub fn corpus(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}
