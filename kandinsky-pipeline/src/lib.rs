//! The generation side of Kandinsky 2.1 and 2.2 on burn: the samplers ([`scheduler`]), the
//! portable seeded generator ([`rng`]), the prior stage ([`prior`]: prompt → image embedding)
//! and the decoder stage ([`decoder`]: the guided denoising loop, the 2.1 and 2.2 decoders),
//! composed into text-to-image from the published folders ([`text2img::Kandinsky22`],
//! [`text2img::Kandinsky21`]). The other modes (img2img, inpainting, ControlNet, fusion) are to
//! come.
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
//! assert_eq!(scheduler.timesteps(), &[751, 501, 251, 1]);
//!
//! let device = Device::flex();
//! let normal = Distribution::Normal(0.0, 1.0);
//! let mut latents = Tensor::<4>::random([1, 4, 8, 8], normal, &device);
//! for i in 0..scheduler.timesteps().len() {
//!     let eps = Tensor::<4>::random([1, 4, 8, 8], normal, &device); // the UNet's prediction
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

pub mod decoder;
pub mod error;
pub mod fusion;
pub mod image;
pub mod prior;
mod queue;
pub mod rng;
pub mod scheduler;
pub mod text2img;

pub use decoder::{
    DecoderOptions, DecoderStart, decode_v21, decode_v22, decode_v22_hint, denoise,
    image_start_index, latent_size, to_rgb8,
};
pub use error::PipelineError;
pub use fusion::{FusionItem, PriorModels, interpolate};
pub use image::Image;
pub use prior::{
    PriorOptions, PriorOutput, PriorStart, image_embeds, run_prior, zero_image_embeds,
};
pub use rng::{NoiseSource, Rng};
pub use text2img::{
    DecoderMode, Kandinsky21, Kandinsky22, PriorStage, Progress, Text2ImageOptions,
};
