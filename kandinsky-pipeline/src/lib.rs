//! Kandinsky 2.1 and 2.2 image generation on burn, from the published diffusers folders.
//!
//! The entry point is [`Kandinsky`]: one pipeline for both versions (read from the decoder
//! folder), built once from a prior and a decoder repository (folders, or Hub ids with the
//! `hub` feature: `Kandinsky::from_pretrained`), keeping its models loaded between calls
//! ([`Residency`]), and running a [`Request`] of any mode: text-to-image, image-to-image,
//! inpainting, outpainting, image fusion, variations, ControlNet-depth, emb2emb.
//! What a caller injects at run time — a [`NoiseSource`] (the seeded [`Rng`] by default),
//! starting latents, given embeddings, any [`scheduler::Scheduler`], a per-step callback that
//! can cancel — goes in [`Hooks`].
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use burn::tensor::Device;
//! use kandinsky_pipeline::{Event, Hooks, Image, Kandinsky, Request};
//!
//! let device = Device::flex(); // or Device::cuda(0), Device::vulkan(..) with those features
//! let mut pipeline = Kandinsky::from_folders(
//!     "kandinsky-2-2-prior".as_ref(),
//!     "kandinsky-2-2-decoder".as_ref(),
//!     &device,
//! )?;
//! // Text-to-image.
//! let request = Request::text_to_image("a red cat sitting on a windowsill").with_seed(42);
//! pipeline.generate(&request)?.images()?[0].save_png("cat.png".as_ref())?;
//!
//! // Image-to-image with progress: the models are still loaded.
//! let photo = Image::open("photo.jpg".as_ref())?;
//! let request = Request::image_to_image("an oil painting", photo, 0.3);
//! let mut on_event = |event: Event<'_>| {
//!     if let Event::DecoderStep(step) = event {
//!         eprintln!("step {}/{}", step.step, step.of);
//!     }
//!     ControlFlow::Continue(())
//! };
//! let out = pipeline.generate_with(&request, Hooks::default().on_event(&mut on_event))?;
//! out.images()?[0].save_png("painting.png".as_ref())?;
//! # Ok::<(), kandinsky_pipeline::PipelineError>(())
//! ```
//!
//! On the CPU (burn's `flex` backend), every generation flushes denormal floats to zero on the
//! compute threads ([`denormals`]), and a program should keep freed memory in malloc with one
//! call of [`allocator::retain_freed_memory`] at the start of `main` (the `kandinsky` command
//! does): large tensors are then not faulted in afresh on every op. This crate's `flex` feature
//! turns on burn's flex backend and the host kernels of `kandinsky-common` that read the
//! models' parameters in place (the Linear layers' and small-map convolutions' matrix products,
//! split across the threads; mapped CLIP vision weights): without it those run on burn's own
//! ops, correct but slower.
//!
//! Inpainting and outpainting need an inpainting decoder (`kandinsky-2-2-decoder-inpaint`),
//! a hint the ControlNet-depth one (`kandinsky-2-2-controlnet-depth`); [`layout`] lists which
//! repository holds what. Each stage also runs on its own ([`PriorStage::embed`]: a request's
//! prompt or images → image embeddings; [`DecoderStage::decode`]: embeddings → images), and
//! below them the building blocks the parity tests drive: [`run_prior`], [`interpolate`],
//! [`decode_v21`], [`decode_v22`], [`decode_v22_hint`], the [`scheduler`]s.
//!
//! Scheduler use on its own:
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use kandinsky_pipeline::scheduler::{Scheduler, SchedulerExt, load_scheduler};
//! # let dir = tempfile_dir();
//! # let path = dir.join("scheduler_config.json");
//! # std::fs::write(&path, r#"{"_class_name": "DDPMScheduler", "beta_schedule": "linear",
//! #   "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": false, "steps_offset": 1}"#).unwrap();
//!
//! // kandinsky-2-2-decoder/scheduler/scheduler_config.json
//! let mut scheduler = load_scheduler(&path).unwrap();
//! scheduler.set_timesteps(4).unwrap();
//! assert_eq!(scheduler.timesteps(), &[751.0, 501.0, 251.0, 1.0]);
//!
//! let device = Device::flex();
//! let normal = Distribution::Normal(0.0, 1.0);
//! let mut latents = Tensor::<4>::random([1, 4, 8, 8], normal, &device);
//! for i in 0..scheduler.timesteps().len() {
//!     // The UNet's prediction for scheduler.scale_model_input_nd(i, latents) at
//!     // scheduler.timesteps()[i]:
//!     let eps = Tensor::<4>::random([1, 4, 8, 8], normal, &device);
//!     // Stochastic steps take their noise from the caller.
//!     let noise = scheduler
//!         .needs_noise(i)
//!         .then(|| Tensor::<4>::random([1, 4, 8, 8], normal, &device));
//!     latents = scheduler.step_nd(i, eps, latents, noise).unwrap().prev_sample;
//! }
//! # fn tempfile_dir() -> std::path::PathBuf {
//! #     let d = std::env::temp_dir().join(format!("kandinsky-doc-{}", std::process::id()));
//! #     std::fs::create_dir_all(&d).unwrap();
//! #     d
//! # }
//! ```

pub mod allocator;
pub mod decoder;
pub mod denormals;
pub mod device;
pub mod embed_cache;
pub mod error;
pub mod fusion;
mod guidance;
#[cfg(feature = "hub")]
pub mod hub;
pub mod image;
pub mod layout;
mod pipeline;
pub mod preview;
pub mod prior;
mod queue;
pub mod rng;
pub mod scheduler;

pub use decoder::{
    DecoderOptions, DecoderStart, decode_v21, decode_v22, decode_v22_hint, image_start_index,
    latent_size,
};
pub use error::{PipelineError, Stage};
pub use fusion::{FusionItem, PriorModels, interpolate};
pub use image::{
    IfExists, Image, check_output, remove_temporaries, temporary_path, to_images, to_rgb8,
    to_unit_f32,
};
pub use layout::{DecoderKind, DecoderLayout, Version};
pub use pipeline::{
    Callback, DecoderStage, Embedding, Event, FusionInput, Hooks, Init, Kandinsky, MAX_IMAGES,
    MAX_SIDE, MAX_STEPS, Output, PriorStage, Request, Residency, SamplerChoice, Sampling, Step,
};
pub use preview::LatentPreview;
pub use prior::{
    PriorOptions, PriorOutput, PriorStart, image_embeds, run_prior, zero_image_embeds,
};
pub use rng::{NoiseSource, Rng};

// The component crates, for callers that drive the models themselves.
pub use kandinsky_clip as clip;
pub use kandinsky_movq as movq;
pub use kandinsky_prior as prior_model;
pub use kandinsky_unet as unet;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
