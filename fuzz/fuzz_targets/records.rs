//! Fuzzes the whole path of bytes from outside: `decode`, `check_time`, `verify`, `verify_batch`
//! and `PartiallySigned::from_bytes`. The check lives in `troc_protocol::fuzzing::records`, where
//! the corpus replay test runs it too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| troc_protocol::fuzzing::records(data));
