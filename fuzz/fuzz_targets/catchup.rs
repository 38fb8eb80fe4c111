//! The `catchup` fuzz target: see `troc_node::fuzzing::catchup` for what it feeds and checks (the
//! corpus replay test in `troc-node` runs the same check over `fuzz/corpus/catchup`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| troc_node::fuzzing::catchup::check(data));
