//! Fuzzing oracle for the config stage: arbitrary text as a config file (`fuzz/fuzz_targets/config.rs`).
//! Parsing and validation never panic, every error points into the text, and the unit parsers
//! print back what they accept. Compiled only for cargo-fuzz (`--cfg fuzzing`) and for the unit
//! test that replays the committed corpus (`src/fuzz_corpus.rs`).

use std::path::Path;

use crate::config::units::{ByteSize, Cidr, Duration, Rate};
use crate::config::{MissingCert, Source};

const LABEL: &str = "fuzz.toml";

/// Config text: parsing and validation never panic, and every error points into the text.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(64) {
        units(line);
        env_values(line);
        if let Some(quoted) = line.split('"').nth(1) {
            units(quoted);
        }
    }

    // Validation reads the certificate files the text names; a fuzzed `/dev/zero` or a FIFO
    // would hang the run, so such inputs stop after parsing.
    let source = Source::new(LABEL, text.to_string());
    let result = match source.parse() {
        Ok(file) if !certificate_paths_safe(&file) => return,
        Ok(_) => crate::config::load_str_with(&text, LABEL, MissingCert::Refuse).map(|_| ()),
        Err(errors) => Err(errors),
    };
    let Err(errors) = result else { return };
    assert!(!errors.0.is_empty(), "an Err without any error");
    let lines: Vec<&str> = text.split('\n').collect();
    for error in &errors.0 {
        // `load_str` has no whole-file errors (line 0 is for an unreadable file).
        assert!(
            error.line >= 1 && error.line <= lines.len(),
            "line {} outside the text ({} lines): {error}",
            error.line,
            lines.len()
        );
        let line_chars = lines[error.line - 1].chars().count();
        assert!(
            error.column >= 1 && error.column <= line_chars + 1,
            "column {} outside line {} ({line_chars} chars): {error}",
            error.column,
            error.line
        );
        assert!(!error.message.is_empty(), "empty message: {error:?}");
        let shown = error.to_string();
        let position = format!("{LABEL}:{}:{}: ", error.line, error.column);
        assert!(shown.starts_with(&position), "{shown:?} lacks {position:?}");
        // `ConfigErrors` promises one error per line; a user's newline must not start another.
        assert!(
            !shown.contains(['\n', '\r']),
            "an error spans lines: {shown:?}"
        );
    }
}

fn certificate_paths_safe(file: &crate::config::model::File) -> bool {
    let Some(tls) = &file.tls else { return true };
    let mut paths = vec![tls.cert.get_ref(), tls.key.get_ref()];
    for extra in &tls.certificates {
        paths.push(extra.get_ref().cert.get_ref());
        paths.push(extra.get_ref().key.get_ref());
    }
    paths.into_iter().all(|p| harmless_to_read(p))
}

/// Missing, or a regular file of at most 1 MiB.
fn harmless_to_read(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.len() <= 1 << 20,
        Err(_) => true,
    }
}

/// `${NAME}` expansion (config/env.rs) never panics; a value with every `$` doubled expands to
/// itself (the documented escape); what expands is the same with any unrelated variable set.
pub(crate) fn env_values(text: &str) {
    use crate::config::env::{expand_value, Redactions};
    let lookup = |name: &str| (name == "SET").then(|| "v$al}ue".to_string());
    let mut redactions = Redactions::default();
    let _ = expand_value(text, &lookup, &mut redactions);
    let escaped = text.replace('$', "$$");
    assert_eq!(
        expand_value(&escaped, &lookup, &mut redactions).as_deref(),
        Ok(text),
        "{escaped:?} is not {text:?} once expanded"
    );
}

/// The unit parsers never panic, and what they accept prints back to the same value.
fn units(text: &str) {
    if let Ok(duration) = text.parse::<Duration>() {
        let shown = duration.to_string();
        assert_eq!(
            shown.parse::<Duration>(),
            Ok(duration),
            "duration {text:?} → {shown:?}"
        );
    }
    if let Ok(size) = text.parse::<ByteSize>() {
        let shown = size.to_string();
        assert_eq!(
            shown.parse::<ByteSize>(),
            Ok(size),
            "size {text:?} → {shown:?}"
        );
    }
    if let Ok(rate) = text.parse::<Rate>() {
        assert!(rate.count > 0 && !rate.period().is_zero(), "rate {text:?}");
        let shown = rate.to_string();
        assert_eq!(shown.parse::<Rate>(), Ok(rate), "rate {text:?} → {shown:?}");
    }
    if let Ok(cidr) = text.parse::<Cidr>() {
        assert_eq!(cidr.0, cidr.0.trunc(), "cidr {text:?} keeps host bits");
        let shown = cidr.to_string();
        assert_eq!(shown.parse::<Cidr>(), Ok(cidr), "cidr {text:?} → {shown:?}");
    }
}
