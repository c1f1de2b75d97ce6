//! Fuzzing oracle for path normalization and encoding (`fuzz/fuzz_targets/path.rs`). The bytes
//! are a request target (`/a/%2e%2e/b?q`). Compiled only for cargo-fuzz (`--cfg fuzzing`) and for
//! the corpus replay test (`src/fuzz_corpus.rs`).

use std::str::FromStr;

use http::uri::PathAndQuery;

use crate::path::{encode_path, encode_query, normalize};

/// Path normalization: the result is a clean absolute path, and encoding it for a `Location`
/// gives a valid URI path that normalizes back to it.
pub fn path(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    check_normalize(&raw);
    // What the pipeline really gets: the path of a request target the http crate accepted.
    if let Ok(target) = PathAndQuery::try_from(data) {
        check_normalize(target.path());
        if let Some(query) = target.query() {
            check_encoded_query(query);
        }
    }
    check_encoded_query(&raw);

    let mut encoded = String::from("/");
    encode_path(&raw, &mut encoded);
    check_uri_text(&encoded, UriPart::Path, &format!("encode_path({raw:?})"));
}

fn check_normalize(raw: &str) {
    let Ok(normalized) = normalize(raw) else {
        return;
    };
    let context = format!("normalize({raw:?}) = {normalized:?}");
    assert!(normalized.starts_with('/'), "{context}");
    assert!(!normalized.contains("//"), "{context}");
    assert!(!normalized.contains('\0'), "{context}");
    assert!(
        normalized
            .split('/')
            .all(|segment| segment != "." && segment != ".."),
        "{context}"
    );
    // Decoding happens once, so only a result without `%` is a fixed point ...
    if !normalized.contains('%') {
        assert_eq!(
            normalize(&normalized).as_ref(),
            Ok(&normalized),
            "{context}"
        );
    }
    // ... but re-encoding any result gives a valid path that normalizes back to it.
    let mut encoded = String::new();
    encode_path(&normalized, &mut encoded);
    check_uri_text(&encoded, UriPart::Path, &context);
    assert_eq!(normalize(&encoded).as_ref(), Ok(&normalized), "{context}");
}

fn check_encoded_query(query: &str) {
    let mut encoded = String::from("/?");
    encode_query(query, &mut encoded);
    assert!(
        !encoded.contains('#'),
        "encode_query({query:?}) = {encoded:?}"
    );
    check_uri_text(
        &encoded,
        UriPart::Query,
        &format!("encode_query({query:?})"),
    );
}

#[derive(PartialEq)]
enum UriPart {
    Path,
    /// `encode_query` keeps the client's `%` as it is, `%zz` included.
    Query,
}

/// Only RFC 3986 characters, `%` only as `%XX` in a path, and the http crate parses the text back
/// unchanged. http refuses targets from 64 KiB on: a limit of that crate, not of the encoding
/// (a non-UTF-8 byte grows ninefold, to U+FFFD and then `%EF%BF%BD`), so longer ones are only
/// checked byte by byte.
fn check_uri_text(encoded: &str, part: UriPart, context: &str) {
    let bytes = encoded.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let escape = b == b'%'
            && (part == UriPart::Query
                || bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
        let allowed = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/".contains(&b)
            || (b == b'?' && part == UriPart::Query)
            || escape;
        assert!(allowed, "{context} = {encoded:?}: byte {b:#04x} at {i}");
    }
    if encoded.len() >= usize::from(u16::MAX) - 1 {
        return;
    }
    let parsed = PathAndQuery::from_str(encoded)
        .unwrap_or_else(|err| panic!("{context} = {encoded:?}: {err}"));
    assert_eq!(parsed.as_str(), encoded, "{context}");
}
