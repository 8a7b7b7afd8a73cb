//! Kandinsky in Rust: the latent-diffusion decoder UNet of Kandinsky 2.1 and 2.2 (text-to-image, inpainting, ControlNet-depth).
//!
//! Not implemented yet: this crate is reserved in the workspace and deliberately empty (see the
//! project's README for what works today).
