//! Fuzzing oracle for the parsers of issue 14 (`fuzz/fuzz_targets/auth_csp.rs`): the first byte
//! picks one, the rest is its input.
//!
//! - `0`: an `Authorization` value through `basic::parse_basic`;
//! - `1`: a users file through `basic::parse_users`;
//! - `2` / `3`: a CSP report body, `application/csp-report` / `application/reports+json`,
//!   through `csp::parse_reports` and `csp::directive_label`;
//! - `4`: a header value through `csp::NonceTemplate`.
//!
//! Compiled only for cargo-fuzz (`--cfg fuzzing`) and the corpus replay test
//! (`src/fuzz_corpus.rs`).

use base64::Engine;
use http::HeaderValue;

use super::auth::basic::{parse_basic, parse_users, PasswordHash};
use super::csp::{
    directive_label, parse_reports, Nonce, NonceTemplate, ReportFormat, DIRECTIVES,
    MAX_REPORTS_PER_BODY,
};

pub fn auth_csp(data: &[u8]) {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => authorization(input),
        1 => users(input),
        2 => reports(ReportFormat::CspReport, input),
        3 => reports(ReportFormat::ReportsJson, input),
        _ => template(input),
    }
}

/// A parsed credential is a non-empty user without `:` and encodes back to the same pair.
fn authorization(input: &[u8]) {
    let Some((user, password)) = parse_basic(input) else {
        return;
    };
    assert!(!user.is_empty() && !user.contains(':'), "user {user:?}");
    let mut pair = user.clone().into_bytes();
    pair.push(b':');
    pair.extend_from_slice(&password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&pair);
    assert_eq!(
        parse_basic(format!("Basic {encoded}").as_bytes()),
        Some((user, password))
    );
}

/// Accepted users: unique non-empty names without control characters, each with a hash that
/// parses again as the same kind; refused lines are inside the file.
fn users(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let lines = text.lines().count().max(1);
    match parse_users(&text) {
        Ok(users) => {
            assert!(!users.is_empty());
            for (i, (name, hash)) in users.iter().enumerate() {
                assert!(!name.is_empty() && !name.chars().any(char::is_control));
                assert!(!users[..i].iter().any(|(n, _)| n == name), "{name} twice");
                let text = match hash {
                    PasswordHash::Argon2(text) | PasswordHash::Bcrypt(text) => text,
                };
                assert_eq!(PasswordHash::parse(text).as_ref(), Ok(hash));
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in errors {
                assert!(
                    error.line >= 1 && error.line <= lines,
                    "line {}",
                    error.line
                );
                assert!(!error.message.is_empty());
            }
        }
    }
}

/// What is logged never holds a query, a fragment, user info or a path of the blocked URL, and
/// stays short; the directive label is one of the fixed set.
fn reports(format: ReportFormat, input: &[u8]) {
    let Some(violations) = parse_reports(format, input) else {
        return;
    };
    assert!(violations.len() <= MAX_REPORTS_PER_BODY);
    for v in violations {
        assert!(!v.document.contains(['?', '#']), "{:?}", v.document);
        assert!(v.document.chars().count() <= 512);
        assert!(!v.blocked.contains(['?', '#', '@']), "{:?}", v.blocked);
        if let Some(rest) = v.blocked.split_once("://").map(|(_, rest)| rest) {
            assert!(!rest.contains('/'), "a path in {:?}", v.blocked);
        }
        assert!(v.directive.chars().count() <= 64 && !v.directive.contains(char::is_whitespace));
        assert!(v.disposition.chars().count() <= 16);
        let label = directive_label(&v.directive);
        assert!(label == "other" || DIRECTIVES.contains(&label));
    }
}

/// Every `{nonce}` is replaced by the nonce, and nothing else changes.
fn template(input: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(input) else {
        return;
    };
    let Some(template) = NonceTemplate::parse(&value) else {
        assert!(!value.as_bytes().windows(7).any(|w| w == b"{nonce}"));
        return;
    };
    let nonce = Nonce::generate();
    let rendered = template.render(&nonce).expect("a nonce");
    // The expected value, built on bytes (a value may hold obs-text).
    let mut expected = Vec::new();
    let mut rest = value.as_bytes();
    while let Some(at) = rest.windows(7).position(|w| w == b"{nonce}") {
        expected.extend_from_slice(&rest[..at]);
        expected.extend_from_slice(nonce.as_bytes());
        rest = &rest[at + 7..];
    }
    expected.extend_from_slice(rest);
    assert_eq!(rendered.as_bytes(), expected.as_slice());
}
