//! The bad-input corpus (`fixtures/bad-inputs/cases.json`, see `kandinsky_testing::corpus`)
//! through the real binary: every case must end with its exit code and the words of its
//! error, never a panic, an abort or a hang, within a 4 GiB address-space cap (`ulimit -v`)
//! and a 60 s time cap, leaving no partial output behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kandinsky_testing::corpus::{Case, Workspace, cases};

/// The address-space cap of every run, in KiB.
const MEMORY_CAP_KIB: u64 = 4 << 20;
/// The time cap of every run.
const TIME_CAP: Duration = Duration::from_secs(60);

/// The arguments every case shares unless it gives the option itself.
fn arguments(case: &Case, work: &Workspace) -> Vec<String> {
    let mut args = vec![case.mode.clone()];
    if case.raw {
        args.extend(case.args.iter().map(|a| work.expand(a)));
        return args;
    }
    let given = |option: &str| case.args.iter().any(|a| a == option);
    let mut common: Vec<(&str, String)> = vec![
        ("--prior", work.prior().display().to_string()),
        ("--decoder", work.decoder().display().to_string()),
        (
            "--output",
            work.path().join("out.png").display().to_string(),
        ),
        ("--width", "64".into()),
        ("--height", "64".into()),
        ("--steps", "2".into()),
        ("--prior-steps", "2".into()),
        ("--seed", "1".into()),
    ];
    if !matches!(case.mode.as_str(), "variation" | "fuse") {
        common.push(("--prompt", "a red cat".into()));
    }
    for (option, value) in common {
        if !given(option) {
            args.push(option.into());
            args.push(value);
        }
    }
    args.extend(case.args.iter().map(|a| work.expand(a)));
    args
}

/// Runs one case; `Err` says what went wrong.
fn run(case: &Case) -> Result<(), String> {
    let work = Workspace::of(case);
    let home = work.path().join("home");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kandinsky"))
        .args(arguments(case, &work))
        .env("HOME", &home)
        .env("HF_HOME", home.join("hf"))
        .env("KANDINSKY_CACHE", home.join("kandinsky"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > TIME_CAP {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {TIME_CAP:?} (a hang)"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    if status.code() != Some(case.exit) {
        return Err(format!(
            "exit {:?} (signal or code), expected {}: {tail}",
            status.code(),
            case.exit
        ));
    }
    let lower = stderr.to_lowercase();
    if lower.contains("panicked") {
        return Err(format!("a panic: {tail}"));
    }
    for word in &case.stderr {
        if !lower.contains(&word.to_lowercase()) {
            return Err(format!("the error lacks {word:?}: {tail}"));
        }
    }
    leftovers(work.path())
}

/// No temporary output file is left in the workspace.
fn leftovers(dir: &Path) -> Result<(), String> {
    let left: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    match left.is_empty() {
        true => Ok(()),
        false => Err(format!("left behind: {left:?}")),
    }
}

#[test]
fn every_bad_input_gets_its_error() {
    let cases = cases();
    let filter = std::env::var("CORPUS_CASE").unwrap_or_default();
    let cases: Vec<&Case> = cases.iter().filter(|c| c.name.contains(&filter)).collect();
    let start = Instant::now();
    // Two runs at a time (the CI machine's cores).
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let cases = &cases;
                scope.spawn(move || {
                    cases
                        .iter()
                        .skip(w)
                        .step_by(2)
                        .filter_map(|case| run(case).err().map(|e| format!("{}: {e}", case.name)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    eprintln!(
        "{} cases through the binary in {:.1} s",
        cases.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
