//! Kandinsky in Rust: the diffusion image prior (PriorTransformer) of Kandinsky 2.1 and 2.2.
//!
//! Not implemented yet: this crate is reserved in the workspace and deliberately empty (see the
//! project's README for what works today).
