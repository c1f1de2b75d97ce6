//! The PROXY protocol header path: framing never reads past a header nor beyond its bound, and
//! `ppp` parses what framing delimits without panicking.
//! The invariants live in `rampart::fuzzing::proxy_header`, which the unit test
//! `src/fuzz_corpus.rs` also replays (`rampart::fuzzing` exists only under `--cfg fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::proxy_header(data));
