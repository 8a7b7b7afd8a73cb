//! The bad-input corpus through the library: every folder case of
//! `fixtures/bad-inputs/cases.json` (a changed model folder under a default request) must give
//! an error — never a panic — whose chain names what its CLI error names; and a generated sweep
//! sets every field of every config file of both repositories to hostile values (0, −1, 10¹²,
//! 0.5, a string, null, an array) and requires a result or an error, never a panic, an abort or
//! a hang. The whole binary runs under an 8 GiB address-space cap, so an allocation sized
//! by a config before it is validated aborts the run.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use kandinsky_pipeline::{Image, Kandinsky, PipelineError, Request};
use kandinsky_testing::corpus::{Step, Workspace, cases};
use serde_json::{Value, json};

/// Caps the test process's address space (a config that sizes an allocation before it is
/// checked then fails the run instead of swapping the machine).
fn cap_memory() {
    let limit = libc::rlimit {
        rlim_cur: 8 << 30,
        rlim_max: 8 << 30,
    };
    // SAFETY: setrlimit with a valid pointer; lowering the limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
}

/// Loads the workspace's pipeline and runs a small request: text-to-image, or a variation of
/// the source image when `images` (so the image processor and encoder are used).
fn generate(work: &Workspace, images: bool) -> Result<(), PipelineError> {
    let device = kandinsky_testing::test_device();
    let mut pipeline = Kandinsky::from_folders(&work.prior(), &work.decoder(), &device)?;
    let request = match images {
        true => Request::variation(Image::open(&work.path().join("source.png"))?),
        false => Request::text_to_image("a red cat"),
    };
    let request = request
        .with_size(64, 64)
        .with_steps(2)
        .with_prior_steps(2)
        .with_seed(1);
    pipeline.generate(&request)?.images().map(drop)
}

/// The error and its sources, as the CLI prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Runs `f`, turning a panic into an `Err` describing it.
fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

#[test]
fn folder_cases_give_errors_through_the_library() {
    cap_memory();
    let mut failures = Vec::new();
    let cases: Vec<_> = cases().into_iter().filter(|c| c.is_folder_case()).collect();
    assert!(cases.len() > 50, "{} folder cases", cases.len());
    for case in &cases {
        let work = Workspace::of(case);
        match no_panic(|| generate(&work, false)) {
            Err(panic) => failures.push(format!("{}: panicked: {panic}", case.name)),
            Ok(Ok(())) if case.exit != 0 => failures.push(format!("{}: no error", case.name)),
            Ok(Err(e)) if case.exit == 0 => failures.push(format!("{}: {}", case.name, chain(&e))),
            Ok(Err(e)) => {
                let text = chain(&e).to_lowercase();
                for word in &case.stderr {
                    if !text.contains(&word.to_lowercase()) {
                        failures.push(format!("{}: lacks {word:?}: {text}", case.name));
                    }
                }
            }
            Ok(Ok(())) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The config files of the two repositories, and whether a variation request reads them.
const CONFIGS: [(&str, bool); 9] = [
    ("prior/prior/config.json", false),
    ("prior/text_encoder/config.json", false),
    ("prior/image_encoder/config.json", false),
    ("prior/image_processor/preprocessor_config.json", true),
    ("prior/scheduler/scheduler_config.json", false),
    ("prior/tokenizer/tokenizer_config.json", false),
    ("decoder/unet/config.json", false),
    ("decoder/movq/config.json", false),
    ("decoder/scheduler/scheduler_config.json", false),
];

fn hostile_values() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(1_000_000_000_000u64),
        json!(0.5),
        json!("x"),
        Value::Null,
        json!([1, 2]),
    ]
}

#[test]
fn every_config_field_survives_hostile_values() {
    cap_memory();
    let start = Instant::now();
    let mut runs = 0;
    let mut failures = Vec::new();
    for (file, images) in CONFIGS {
        let work = Workspace::new("decoder_unet32");
        let text = std::fs::read(work.path().join(file)).unwrap();
        let original: serde_json::Map<String, Value> = serde_json::from_slice(&text).unwrap();
        for key in original.keys() {
            for value in hostile_values() {
                let work = Workspace::new("decoder_unet32");
                let mut set = serde_json::Map::new();
                set.insert(key.clone(), value.clone());
                work.apply(&Step::Json {
                    file: file.into(),
                    set,
                })
                .unwrap();
                let began = Instant::now();
                runs += 1;
                if let Err(panic) = no_panic(|| generate(&work, images)) {
                    failures.push(format!("{file} {key} = {value}: panicked: {panic}"));
                }
                if began.elapsed() > Duration::from_secs(30) {
                    failures.push(format!("{file} {key} = {value}: {:?}", began.elapsed()));
                }
            }
        }
    }
    eprintln!(
        "{runs} hostile config values in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(runs > 500, "{runs} runs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_sweep_covers_existing_files() {
    for (file, _) in CONFIGS {
        assert!(
            Path::new(&Workspace::new("decoder_unet32").path().join(file)).exists(),
            "{file}"
        );
    }
}
