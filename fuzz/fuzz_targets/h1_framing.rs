//! HTTP/1 framing: the tracker that finds CL+TE, repeated Content-Length and tabs in framing
//! values on the bytes hyper reads, checked against itself (any split into reads) and against
//! real hyper.
//! The invariants live in `rampart::fuzzing::h1_framing`, which `src/fuzz_corpus.rs` also replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::h1_framing(data));
