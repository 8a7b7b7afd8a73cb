//! `kandinsky`: image generation with Kandinsky 2.1 and 2.2 from the published diffusers
//! repositories (downloaded from the Hugging Face Hub into its standard cache, or local
//! folders), on the backend compiled in (`flex` CPU by default; `wgpu`, `vulkan`, `metal`,
//! `cuda`). One subcommand per mode: `generate` (text-to-image), `img2img`, `inpaint`,
//! `outpaint`, `fuse`, `variation`, `controlnet`, `emb2emb`.
//!
//! ```text
//! kandinsky generate --prompt "a red cat" --output cat.png
//! kandinsky img2img --prompt "a red cat, oil painting" --image cat.png --strength 0.4
//! kandinsky generate --prompt "a red cat" --prior ./kandinsky-2-2-prior \
//!     --decoder ./kandinsky-2-2-decoder --offline --output cat.png
//! ```
//!
//! Exit codes: 0 success, 1 generation failed (weights missing, corrupt or not downloadable,
//! configs, components), 2 invalid usage (bad option values, an unreadable input image, a
//! backend not compiled in), 3 the output cannot be written.

//!
//! The library target holds the command's parts so that its argument handling can be fuzzed
//! (`fuzz/`) and tested; it is not a stable API (use `kandinsky-pipeline`).

pub mod args;
pub mod models;
pub mod output;
pub mod progress;
pub mod run;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "kandinsky",
    version,
    about = "Image generation with Kandinsky 2.1 and 2.2"
)]
pub struct Cli {
    #[command(subcommand)]
    /// The subcommand.
    pub command: Command,
}

/// One subcommand per mode.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate images from a prompt (text-to-image).
    Generate(args::Generate),
    /// Change an image following a prompt (image-to-image).
    Img2img(args::Img2Img),
    /// Repaint the masked region of an image (inpainting decoder).
    Inpaint(args::Inpaint),
    /// Extend an image beyond its borders (inpainting decoder).
    Outpaint(args::Outpaint),
    /// Mix prompts and images with weights (image fusion).
    Fuse(args::Fuse),
    /// Variations of an image.
    Variation(args::Variation),
    /// Generate following a depth map (2.2 ControlNet-depth decoder).
    Controlnet(args::ControlNet),
    /// Re-sample an image's embedding with a prompt (prior emb2emb).
    Emb2emb(args::Emb2Emb),
    /// Serve the models over HTTP: a job API with a queue, progress and cancellation.
    Serve(args::Serve),
}

impl Command {
    /// The job this subcommand describes: its request built and validated, input images
    /// read; no model is loaded and nothing is written.
    pub fn job(self) -> Result<run::Job, run::Failure> {
        let job = match self {
            Command::Generate(a) => run::Job::generate(a),
            Command::Img2img(a) => run::Job::img2img(a),
            Command::Inpaint(a) => run::Job::inpaint(a),
            Command::Outpaint(a) => run::Job::outpaint(a),
            Command::Fuse(a) => run::Job::fuse(a),
            Command::Variation(a) => run::Job::variation(a),
            Command::Controlnet(a) => run::Job::controlnet(a),
            Command::Emb2emb(a) => run::Job::emb2emb(a),
            Command::Serve(_) => {
                return Err(run::Failure(
                    2,
                    anyhow::anyhow!("`serve` runs a server, not one generation"),
                ));
            }
        }?;
        job.check()?;
        Ok(job)
    }
}

/// The `kandinsky` command: parses the process's arguments, runs the job and gives the exit
/// code (the error printed to stderr).
pub fn main() -> ExitCode {
    // One generation, or a server keeping its models: freed tensors are reused, not unmapped.
    kandinsky_pipeline::allocator::retain_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        command => command.job().and_then(run::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(run::Failure(code, error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
