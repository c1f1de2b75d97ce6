//! Request headers: host and request-id validation, hop-by-hop removal, forwarding headers.
//! The invariants live in `rampart::fuzzing::headers`, which `src/fuzz_corpus.rs` also replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::headers(data));
