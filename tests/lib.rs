//! Shared helpers for the integration tests.
//!
//! [`vector_gen`] generates `docs/test-vectors.json`, the golden vectors of the record format
//! (regenerate with `cargo test -p troc-tests --test integration vectors::regenerate -- --ignored`).

pub mod vector_gen;

pub use vector_gen::{TestVectors, test_vectors, test_vectors_json};
