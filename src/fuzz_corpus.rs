//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`, minimized by `cargo fuzz cmin`)
//! and the inputs that once broke an invariant (`fuzz/regressions/<target>/`, kept by hand)
//! through the same oracles the fuzz targets call (each stage's `fuzz` module), so each test run checks them without
//! nightly or cargo-fuzz. A missing or empty corpus fails: a deleted corpus would otherwise pass
//! silently.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{} missing: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let mut files = files_in(&corpus);
    assert!(!files.is_empty(), "corpus {} is empty", corpus.display());
    let regressions = fuzz.join("regressions").join(target);
    if regressions.exists() {
        files.extend(files_in(&regressions));
    }

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
    replay("config", crate::config::fuzz::config);
}

#[test]
fn path_corpus() {
    replay("path", crate::path::fuzz::path);
}

#[test]
fn headers_corpus() {
    replay("headers", crate::upstream::fuzz::headers);
}

#[test]
fn redirect_corpus() {
    replay("redirect", crate::actions::fuzz::redirect);
}

#[test]
fn h1_framing_corpus() {
    replay("h1_framing", crate::listener::fuzz::h1_framing);
}

#[test]
fn auth_csp_corpus() {
    replay("auth_csp", crate::policy::fuzz::auth_csp);
}

#[test]
fn error_heads_corpus() {
    replay("error_heads", crate::listener::fuzz::error_heads);
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", crate::listener::fuzz::proxy_header);
}
