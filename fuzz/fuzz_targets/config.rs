//! Config text: parsing and validation never panic; errors point into the text; units round-trip.
//! The invariants live in `rampart::fuzzing::config`, which `src/fuzz_corpus.rs` also replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::config(data));
