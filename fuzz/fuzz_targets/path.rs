//! Request paths: normalize gives a clean absolute path; encoding it gives a valid URI path.
//! The invariants live in `rampart::fuzzing::path`, which `src/fuzz_corpus.rs` also replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::path(data));
