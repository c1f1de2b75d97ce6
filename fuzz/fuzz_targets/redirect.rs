//! Redirect templates: a rendered Location is a valid header and never changes the site.
//! The invariants live in `rampart::fuzzing::redirect`, which `src/fuzz_corpus.rs` also replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::redirect(data));
