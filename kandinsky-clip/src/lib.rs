//! Kandinsky in Rust: CLIP text and vision encoders, the Kandinsky 2.1 multilingual XLM-R text encoder, tokenizers and image preprocessing.
//!
//! Not implemented yet: this crate is reserved in the workspace and deliberately empty (see the
//! project's README for what works today).
