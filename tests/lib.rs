//! Shared helpers for the integration tests.
//!
//! [`vector_gen`] generates `docs/test-vectors.json`, the golden vectors of the record format
//! (regenerate with `cargo test -p troc-tests --test integration vectors::regenerate -- --ignored`).

pub mod vector_gen;

pub use vector_gen::{TestVectors, test_vectors, test_vectors_json};

/// The `troc` binary, built once per test run (a workspace test cannot name another package's binary
/// through `CARGO_BIN_EXE_*`, so it asks cargo to build it).
pub fn troc_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "troc-cli", "--bin", "troc"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the troc binary failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"));
        target.join("debug").join("troc")
    })
    .clone()
}
