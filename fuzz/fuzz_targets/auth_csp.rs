//! basic_auth's Authorization and users-file parsers, the CSP report parsers and the `{nonce}`
//! template (issue 14). The invariants live in `rampart::fuzzing::auth_csp`, which
//! `src/fuzz_corpus.rs` also replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rampart::fuzzing::auth_csp(data));
