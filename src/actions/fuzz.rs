//! Fuzzing oracle for redirect templates (`fuzz/fuzz_targets/redirect.rs`). Input: four lines:
//! the `redirect.to` template, the Host header, the request target, the route's prefix. Compiled
//! only for cargo-fuzz (`--cfg fuzzing`) and for the corpus replay test (`src/fuzz_corpus.rs`).

use std::str::FromStr;

use http::header::HeaderValue;
use http::uri::PathAndQuery;

use crate::actions::{RedirectInput, RedirectTemplate};
use crate::path::normalize;
use crate::request_checks::host_name;
use crate::upstream::fuzz::check_host_name;

/// Redirect templates: a rendered `Location` is a valid header value, a path template stays a
/// path on this site, and an absolute one keeps the template's authority (or the validated
/// request host in `{host}`).
pub fn redirect(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let template_text = lines.next().unwrap_or_default();
    let host_line = lines.next().unwrap_or("example.com");
    let target = lines.next().unwrap_or("/");
    let prefix = lines.next().unwrap_or("/");
    let Ok(template) = RedirectTemplate::parse(template_text) else {
        return;
    };

    // The inputs as the pipeline derives them from a request.
    let Ok(host_value) = HeaderValue::from_str(host_line) else {
        return;
    };
    let Some(host) = host_name(&host_value) else {
        return;
    };
    let Ok(target) = PathAndQuery::from_str(target) else {
        return;
    };
    let Ok(path) = normalize(target.path()) else {
        return;
    };
    let rest = path.strip_prefix(prefix).unwrap_or("");
    let input = RedirectInput {
        host: &host,
        path: &path,
        rest,
        query: target.query(),
    };
    let Some(location) = template.render(&input) else {
        return;
    };
    let context = format!("{template_text:?} with host {host:?}, path {path:?}, rest {rest:?}, query {:?} → {location:?}", target.query());
    assert!(
        !location
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b'\r' | b'\n' | 0)),
        "{context}"
    );
    let Ok(location) = std::str::from_utf8(location.as_bytes()) else {
        panic!("{context}: not UTF-8");
    };
    // Substitutions are percent-encoded: only the template's own text may be non-ASCII.
    assert!(
        location.is_ascii() || !template_text.is_ascii(),
        "{context}: the request put non-ASCII bytes into the Location"
    );

    if template_text.starts_with('/') {
        // A browser reads `//x` and `/\x` as another site.
        assert!(location.starts_with('/'), "{context}");
        assert!(
            !location.starts_with("//") && !location.starts_with("/\\"),
            "{context}: leaves the site"
        );
        return;
    }
    let Some((scheme, after)) = template_text.split_once("://") else {
        panic!("{context}: parse accepted a template that is neither a path nor a URL");
    };
    let prefix = format!("{scheme}://");
    let Some(rendered_after) = location.strip_prefix(&prefix) else {
        panic!("{context}: the scheme changed");
    };
    // Browsers end the authority at `\` too, for http and https.
    let authority_end = |s: &str, extra: &[char]| {
        s.find(|c: char| matches!(c, '/' | '?' | '#' | '\\') || extra.contains(&c))
            .unwrap_or(s.len())
    };
    let expected = match after.strip_prefix("{host}") {
        Some(port_and_path) => {
            check_host_name(&host_value);
            let tail = &port_and_path[..authority_end(port_and_path, &['{'])];
            format!("{host}{tail}")
        }
        None => after[..authority_end(after, &['{'])].to_string(),
    };
    let actual = &rendered_after[..authority_end(rendered_after, &[])];
    assert_eq!(actual, expected, "{context}: the authority changed");
}
