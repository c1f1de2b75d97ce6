//! CSP nonces and violation reports (DESIGN §5b).
//!
//! - `{nonce}` in a header value becomes a fresh random nonce per response (144 bits, base64).
//!   The upstream gets the same nonce as the request header `X-CSP-Nonce`, to put on its own
//!   `<script nonce="…">` tags; a client-sent `X-CSP-Nonce` is removed.
//! - `csp_reports = true`: the CSP headers get `report-uri` and `report-to` naming
//!   [`REPORT_PATH`] (with `Reporting-Endpoints`), and the https listener answers that path
//!   itself: `application/csp-report` (CSP2's `report-uri`) and `application/reports+json` (the
//!   Reporting API's `report-to`), size-capped and rate-limited, never forwarded. One log line per
//!   violation and `rampart_csp_violations_total{route,directive}` over [`DIRECTIVES`].

use std::num::NonZeroU32;

use base64::Engine;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::header::{HeaderName, HeaderValue};

/// Random bytes in a nonce: 144 bits, 24 base64 characters without padding.
const NONCE_BYTES: usize = 18;

/// The request header that tells the upstream the response's nonce.
pub static X_CSP_NONCE: HeaderName = HeaderName::from_static("x-csp-nonce");

/// Where browsers send violation reports (on the https listener, every host).
pub const REPORT_PATH: &str = "/.well-known/rampart/csp-report";
/// The Reporting API endpoint name used in `report-to`.
pub const REPORT_GROUP: &str = "rampart-csp";
pub static REPORTING_ENDPOINTS: HeaderName = HeaderName::from_static("reporting-endpoints");
pub const REPORTING_ENDPOINTS_VALUE: &str = "rampart-csp=\"/.well-known/rampart/csp-report\"";

/// One response's nonce: base64 text of [`NONCE_BYTES`] random bytes.
#[derive(Debug, Clone)]
pub struct Nonce(HeaderValue);

impl Nonce {
    /// From the operating system's random source (ring's `SystemRandom`, `getrandom(2)`). If
    /// that ever fails the nonce is empty: [`NonceTemplate::render`] then gives `None`, the
    /// upstream gets no `X-CSP-Nonce`, and the header becomes [`NO_SCRIPT_POLICY`] (fail closed).
    pub fn generate() -> Nonce {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; NONCE_BYTES];
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            return Nonce::unavailable();
        }
        let mut text = [0u8; NONCE_BYTES / 3 * 4];
        let written = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode_slice(bytes, &mut text)
            .unwrap_or(0);
        // Base64 is always a valid header value.
        Nonce(HeaderValue::from_bytes(&text[..written]).unwrap_or(HeaderValue::from_static("")))
    }

    /// What [`generate`](Self::generate) gives when the random source fails.
    pub(crate) fn unavailable() -> Nonce {
        Nonce(HeaderValue::from_static(""))
    }

    pub fn header_value(&self) -> Option<&HeaderValue> {
        (!self.0.is_empty()).then_some(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The policy sent in place of a `{nonce}` one when no nonce could be made: no script runs.
pub const NO_SCRIPT_POLICY: &str = "script-src 'none'; object-src 'none'; base-uri 'none'";

/// A header value holding `{nonce}`, split around it.
#[derive(Debug, Clone)]
pub struct NonceTemplate {
    pieces: Vec<Bytes>,
    len: usize,
}

const PLACEHOLDER: &str = "{nonce}";

impl NonceTemplate {
    /// `None` when the value holds no `{nonce}`.
    /// On bytes: a value may hold obs-text (non-ASCII) beside the placeholder (found by fuzzing:
    /// a `&str` view refused it and left `{nonce}` in the header as written).
    pub fn parse(value: &HeaderValue) -> Option<NonceTemplate> {
        let bytes = value.as_bytes();
        let placeholder = PLACEHOLDER.as_bytes();
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut start = 0;
        let mut at = 0;
        while at + placeholder.len() <= bytes.len() {
            if &bytes[at..at + placeholder.len()] == placeholder {
                pieces.push(Bytes::copy_from_slice(&bytes[start..at]));
                at += placeholder.len();
                start = at;
            } else {
                at += 1;
            }
        }
        if pieces.is_empty() {
            return None;
        }
        pieces.push(Bytes::copy_from_slice(&bytes[start..]));
        let len = pieces.iter().map(Bytes::len).sum::<usize>() + (pieces.len() - 1) * 24;
        Some(NonceTemplate { pieces, len })
    }

    /// The value with every `{nonce}` replaced. `None` when the nonce could not be made.
    pub fn render(&self, nonce: &Nonce) -> Option<HeaderValue> {
        let nonce = nonce.header_value()?.as_bytes();
        let mut out = Vec::with_capacity(self.len);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(nonce);
            }
            out.extend_from_slice(piece);
        }
        HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
    }
}

/// A CSP value with the directives that send reports to the proxy.
pub fn with_report_directives(value: &HeaderValue) -> HeaderValue {
    let text = String::from_utf8_lossy(value.as_bytes());
    let text = text.trim().trim_end_matches(';');
    HeaderValue::from_str(&format!(
        "{text}; report-uri {REPORT_PATH}; report-to {REPORT_GROUP}"
    ))
    .unwrap_or_else(|_| value.clone())
}

/// The directives counted by name; any other is counted as `other`, so the label set is fixed
/// whatever a client posts.
pub const DIRECTIVES: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "base-uri",
    "form-action",
    "frame-ancestors",
    "require-trusted-types-for",
    "trusted-types",
];

pub fn directive_label(directive: &str) -> &'static str {
    // Older browsers report the whole directive ("script-src 'self'"): its name is the first word.
    let name = directive.split_whitespace().next().unwrap_or("");
    DIRECTIVES
        .iter()
        .find(|d| d.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("other")
}

/// The largest report body read; more is 413.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Violations logged and counted from one body at most (a reports+json array).
pub const MAX_REPORTS_PER_BODY: usize = 100;

/// Report bodies accepted per second by the process (burst: twice that). More are answered
/// 429 and not read: a page that violates its policy in a loop, or a client posting reports,
/// costs a counter check.
const REPORTS_PER_SECOND: u32 = 50;

/// The report endpoint's limiter, one per snapshot (a reload starts it afresh).
pub fn report_rate_limiter() -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(REPORTS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(REPORTS_PER_SECOND * 2).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// The two report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// `application/csp-report`: `{"csp-report": {…}}` (CSP Level 2, `report-uri`).
    CspReport,
    /// `application/reports+json`: `[{"type": "csp-violation", "body": {…}}, …]` (`report-to`).
    ReportsJson,
}

impl ReportFormat {
    pub fn of(content_type: Option<&HeaderValue>) -> Option<ReportFormat> {
        let value = content_type?.to_str().ok()?;
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/csp-report") {
            Some(ReportFormat::CspReport)
        } else if essence.eq_ignore_ascii_case("application/reports+json") {
            Some(ReportFormat::ReportsJson)
        } else {
            None
        }
    }
}

/// One violation, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The page's URL without query or fragment.
    pub document: String,
    /// The effective directive (its name only).
    pub directive: String,
    /// What was blocked: an origin (scheme://host:port, never a path or query) or a keyword
    /// such as `inline`, `eval`.
    pub blocked: String,
    /// `enforce` or `report` (report-only).
    pub disposition: String,
}

/// Parses a report body. `None`: not JSON of the expected shape (400).
pub fn parse_reports(format: ReportFormat, body: &[u8]) -> Option<Vec<Violation>> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    match format {
        ReportFormat::CspReport => {
            let report = json.get("csp-report")?;
            Some(vec![violation(
                report,
                ["document-uri", "effective-directive", "violated-directive"],
                "blocked-uri",
                "disposition",
            )])
        }
        ReportFormat::ReportsJson => {
            let list = json.as_array()?;
            Some(
                list.iter()
                    .filter(|r| r.get("type").and_then(|t| t.as_str()) == Some("csp-violation"))
                    .filter_map(|r| r.get("body"))
                    .take(MAX_REPORTS_PER_BODY)
                    .map(|body| {
                        violation(
                            body,
                            ["documentURL", "effectiveDirective", "violatedDirective"],
                            "blockedURL",
                            "disposition",
                        )
                    })
                    .collect(),
            )
        }
    }
}

fn violation(
    report: &serde_json::Value,
    [document, effective, violated]: [&str; 3],
    blocked: &str,
    disposition: &str,
) -> Violation {
    let text = |key: &str| report.get(key).and_then(|v| v.as_str()).unwrap_or("");
    let directive = if text(effective).is_empty() {
        text(violated)
    } else {
        text(effective)
    };
    Violation {
        document: without_query(text(document)),
        directive: directive
            .split_whitespace()
            .next()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        blocked: blocked_origin(text(blocked)),
        disposition: text(disposition).chars().take(16).collect(),
    }
}

/// A URL without its query and fragment (they can carry tokens), at most 512 characters.
fn without_query(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].chars().take(512).collect()
}

/// The origin of a blocked URL, or the keyword a browser reports (`inline`, `eval`, `data`…).
fn blocked_origin(blocked: &str) -> String {
    match blocked.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => {
            let scheme = uri.scheme_str().unwrap_or("");
            let authority = uri.authority().map_or("", |a| a.as_str());
            // No user info: `user:pass@host` keeps only the host.
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}")
        }
        _ => {
            // A keyword or a scheme-only value (`data`, `blob:`): letters only.
            blocked
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(32)
                .collect()
        }
    }
}

/// The log target of violation lines: `main` writes them to stdout as JSON, beside the access
/// log (`"event":"csp_violation"` tells them apart).
pub const TARGET: &str = "rampart::csp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_fresh_and_long_enough() {
        let a = Nonce::generate();
        let b = Nonce::generate();
        assert_eq!(a.as_bytes().len(), 24);
        assert_ne!(a.as_bytes(), b.as_bytes());
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(a.as_bytes())
            .unwrap();
        assert_eq!(decoded.len() * 8, 144);
    }

    #[test]
    fn template_fills_every_placeholder() {
        let value =
            HeaderValue::from_static("script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'");
        let template = NonceTemplate::parse(&value).unwrap();
        let nonce = Nonce::generate();
        let rendered = template.render(&nonce).unwrap();
        let n = std::str::from_utf8(nonce.as_bytes()).unwrap();
        assert_eq!(
            rendered.to_str().unwrap(),
            format!("script-src 'nonce-{n}'; style-src 'nonce-{n}'")
        );
        assert!(NonceTemplate::parse(&HeaderValue::from_static("default-src 'self'")).is_none());
    }

    #[test]
    fn reports_of_both_formats() {
        let legacy = br#"{"csp-report":{"document-uri":"https://a.example/page?token=x","violated-directive":"script-src-elem","effective-directive":"script-src-elem","blocked-uri":"inline","disposition":"enforce"}}"#;
        let v = parse_reports(ReportFormat::CspReport, legacy).unwrap();
        assert_eq!(v[0].document, "https://a.example/page");
        assert_eq!(v[0].directive, "script-src-elem");
        assert_eq!(v[0].blocked, "inline");
        let modern = br#"[{"type":"csp-violation","age":1,"body":{"documentURL":"https://a.example/","effectiveDirective":"img-src","blockedURL":"https://u:p@cdn.example:8443/x.png?sig=secret","disposition":"report"}},{"type":"deprecation","body":{}}]"#;
        let v = parse_reports(ReportFormat::ReportsJson, modern).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].blocked, "https://cdn.example:8443");
        assert_eq!(directive_label(&v[0].directive), "img-src");
        assert_eq!(directive_label("made-up"), "other");
        assert_eq!(directive_label("script-src 'self'"), "script-src");
        assert!(parse_reports(ReportFormat::ReportsJson, b"{}").is_none());
        assert!(parse_reports(ReportFormat::CspReport, b"not json").is_none());
    }
}
