//! Output files: numbered names and PNGs with the parameters in text chunks, written
//! atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kandinsky_pipeline::Image;

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

/// Writes the PNG with the generation parameters as text chunks (tEXt, or iTXt for text
/// beyond Latin-1), through a temporary file in the
/// same folder renamed into place.
pub fn write_png(path: &Path, image: &Image, metadata: &[(&str, String)]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or("kandinsky".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            image.width as u32,
            image.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (key, value) in metadata {
            // tEXt holds Latin-1 only; other text (Cyrillic, CJK, emoji prompts) goes in iTXt,
            // which is UTF-8.
            if value.chars().all(|c| (c as u32) < 256) {
                encoder.add_text_chunk((*key).to_string(), value.clone())?;
            } else {
                encoder.add_itxt_chunk((*key).to_string(), value.clone())?;
            }
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&image.rgb)?;
        writer.finish()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
