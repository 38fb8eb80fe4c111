//! The `deal` fuzz target: see `troc_node::fuzzing::deal` for what it feeds and checks (the
//! corpus replay test in `troc-node` runs the same check over `fuzz/corpus/deal`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| troc_node::fuzzing::deal::check(data));
