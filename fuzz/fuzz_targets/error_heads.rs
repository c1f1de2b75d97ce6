//! The error-head rewriter: only hyper's own error head, written while no response of the
//! service is open, is ever rewritten; every other byte passes as written.
//! The invariants live in `rampart::fuzzing::error_heads`, which the unit test
//! `src/fuzz_corpus.rs` also replays (`rampart::fuzzing` exists only under `--cfg fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::error_heads(data));
