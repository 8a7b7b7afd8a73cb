//! Output file names: one, or numbered for several images.

use std::path::{Path, PathBuf};

/// The output paths: `out` for one image, `stem-1.ext`, `stem-2.ext`, ... for several.
pub fn output_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out
        .file_stem()
        .map_or("kandinsky".into(), |s| s.to_string_lossy().into_owned());
    let ext = out
        .extension()
        .map_or("png".into(), |s| s.to_string_lossy().into_owned());
    (1..=n)
        .map(|i| out.with_file_name(format!("{stem}-{i}.{ext}")))
        .collect()
}

/// Checks before any model loads that each of `paths` can be written: a regular file or
/// nothing there, in an existing folder that accepts a new file (probed with a file created
/// and removed at once).
pub fn check_writable(paths: &[PathBuf]) -> Result<(), String> {
    for path in paths {
        kandinsky_pipeline::check_output(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let probe = dir.join(format!(".kandinsky-probe-{}", std::process::id()));
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
    }
    Ok(())
}

/// On SIGINT or SIGTERM: removes this process's temporary files for `paths` (an image being
/// written when the signal came), then exits with 130. (SIGKILL cannot be caught: the next
/// save into the same folder removes what a killed process left.)
pub fn clean_up_on_signals(paths: &[PathBuf]) {
    let paths = paths.to_vec();
    let installed = ctrlc::set_handler(move || {
        for path in &paths {
            kandinsky_pipeline::remove_temporaries(path, std::process::id());
        }
        eprintln!("interrupted");
        std::process::exit(130);
    });
    if let Err(e) = installed {
        eprintln!(
            "warning: no signal handler ({e}); an interrupted save may leave a temporary file"
        );
    }
}
