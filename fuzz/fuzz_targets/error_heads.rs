//! The error-head rewriter: only hyper's own error head, written while no response of the
//! service is open, is ever rewritten; every other byte passes as written.
//! The invariants live in `rampart::fuzzing::error_heads`, which `tests/it/fuzz_corpus.rs` also
//! replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::error_heads(data));
