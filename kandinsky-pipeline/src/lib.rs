//! Kandinsky in Rust: schedulers and the generation modes composed from the component crates.
//!
//! Not implemented yet: this crate is reserved in the workspace and deliberately empty (see the
//! project's README for what works today).
