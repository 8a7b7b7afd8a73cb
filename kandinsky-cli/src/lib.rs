//! Kandinsky in Rust: the `kandinsky` command-line program.
//!
//! Not implemented yet: this crate is reserved in the workspace and deliberately empty (see the
//! project's README for what works today).
