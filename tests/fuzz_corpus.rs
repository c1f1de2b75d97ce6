//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same entry points the
//! fuzz targets call, so every input the fuzzer once kept, crashes found included, is checked on
//! each test run without nightly or cargo-fuzz. A missing or empty corpus fails: a deleted corpus
//! would otherwise pass silently.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("corpus {} missing: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());

    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
            failures.push(file.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs broke an invariant (the panic messages are above): {failures:#?}",
        failures.len(),
        files.len()
    );
}

#[test]
fn config_corpus() {
    replay("config", rampart::fuzzing::config);
}

#[test]
fn path_corpus() {
    replay("path", rampart::fuzzing::path);
}

#[test]
fn headers_corpus() {
    replay("headers", rampart::fuzzing::headers);
}

#[test]
fn redirect_corpus() {
    replay("redirect", rampart::fuzzing::redirect);
}
