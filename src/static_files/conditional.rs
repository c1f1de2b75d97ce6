//! Validators (ETag, Last-Modified) and the request's conditions: If-Match,
//! If-Unmodified-Since, If-None-Match, If-Modified-Since (RFC 9110 §13.2.2, in that order),
//! and Range with If-Range (RFC 9110 §14). Pure functions over what the blocking file lookup
//! found; nothing here touches the file system.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};

/// Range headers longer than this, or with more specs, are ignored (the whole file is sent):
/// the work spent on one header stays bounded.
const MAX_RANGE_HEADER: usize = 1024;
const MAX_RANGE_SPECS: usize = 16;

/// What identifies one representation of a file (the file itself or a precompressed sibling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quotes included: `"<length hex>-<mtime nanoseconds hex>[-br|-gz]"`.
    pub etag: String,
    /// Whole seconds: what Last-Modified can say and If-Modified-Since compares against.
    pub last_modified: SystemTime,
}

impl Validators {
    /// From the file's length and modification time. `suffix` tells variants apart, whose
    /// length and time alone could coincide with the original's.
    pub fn new(len: u64, modified: Option<SystemTime>, suffix: &str) -> Self {
        let since_epoch = modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        Validators {
            etag: format!("\"{len:x}-{:x}{suffix}\"", since_epoch.as_nanos()),
            last_modified: UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs()),
        }
    }
}

/// The conditional and range headers of a request, copied out so the file lookup can run on
/// a blocking thread.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
    range: Option<String>,
    if_range: Option<String>,
}

impl Conditions {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Conditions {
            if_match: list(headers, header::IF_MATCH),
            if_none_match: list(headers, header::IF_NONE_MATCH),
            if_modified_since: date(headers, header::IF_MODIFIED_SINCE),
            if_unmodified_since: date(headers, header::IF_UNMODIFIED_SINCE),
            range: single(headers, header::RANGE),
            if_range: single(headers, header::IF_RANGE),
        }
    }
}

/// All lines of a list header joined, as one list (RFC 9110 §5.3).
fn list(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(name) {
        let text = String::from_utf8_lossy(value.as_bytes());
        match &mut joined {
            Some(all) => {
                all.push(',');
                all.push_str(&text);
            }
            None => joined = Some(text.into_owned()),
        }
    }
    joined
}

/// A header that must appear once; repeated or not text → ignored.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::to_string)
}

/// An HTTP-date; an invalid one is ignored, as RFC 9110 §13.1.3 requires.
fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let text = single(headers, name)?;
    httpdate::parse_http_date(text.trim()).ok()
}

/// What the preconditions decide, before any range is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// 412: If-Match or If-Unmodified-Since failed.
    Failed,
    /// 304: the client's copy is current.
    NotModified,
    /// Send the representation.
    Proceed,
}

/// RFC 9110 §13.2.2 for GET and HEAD.
pub fn evaluate(conditions: &Conditions, validators: &Validators) -> Precondition {
    if let Some(list) = &conditions.if_match {
        if !matches_any(list, &validators.etag, Comparison::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(since) = conditions.if_unmodified_since {
        if validators.last_modified > since {
            return Precondition::Failed;
        }
    }
    if let Some(list) = &conditions.if_none_match {
        // If-None-Match wins over If-Modified-Since, which is then ignored.
        if matches_any(list, &validators.etag, Comparison::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = conditions.if_modified_since {
        if validators.last_modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// `*` or a list of entity-tags. Parsing stops at the first malformed tag.
fn matches_any(list: &str, etag: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        if !rest.starts_with('"') {
            return false;
        }
        let Some(end) = rest[1..].find('"') else {
            return false;
        };
        let tag = &rest[..end + 2];
        if tag == etag && (comparison == Comparison::Weak || !weak) {
            return true;
        }
        rest = &rest[end + 2..];
    }
}

/// The answer to a Range header, for a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable Range (absent, malformed, another unit, If-Range failed, several ranges):
    /// 200 with the whole representation.
    Whole,
    /// 206 with bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416: no range overlaps the representation.
    Unsatisfiable,
}

/// Range and If-Range (RFC 9110 §14.2, §13.1.5) for GET.
pub fn range(conditions: &Conditions, validators: &Validators, len: u64) -> RangeAnswer {
    let Some(header) = &conditions.range else {
        return RangeAnswer::Whole;
    };
    if let Some(if_range) = &conditions.if_range {
        if !if_range_holds(if_range.trim(), validators) {
            return RangeAnswer::Whole;
        }
    }
    parse_range(header, len)
}

/// If-Range holds when it is our strong ETag, or exactly our Last-Modified date.
fn if_range_holds(if_range: &str, validators: &Validators) -> bool {
    if if_range.starts_with('"') {
        return if_range == validators.etag;
    }
    if if_range.starts_with("W/") {
        return false;
    }
    httpdate::parse_http_date(if_range).is_ok_and(|date| date == validators.last_modified)
}

fn parse_range(header: &str, len: u64) -> RangeAnswer {
    if header.len() > MAX_RANGE_HEADER {
        return RangeAnswer::Whole;
    }
    let Some((unit, specs)) = header.split_once('=') else {
        return RangeAnswer::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Whole;
    }
    let mut count = 0;
    let mut satisfiable = None;
    for spec in specs.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue; // RFC 9110 §5.6.1: empty list elements are ignored
        }
        count += 1;
        if count > MAX_RANGE_SPECS {
            return RangeAnswer::Whole;
        }
        match parse_spec(spec, len) {
            Spec::Invalid => return RangeAnswer::Whole,
            Spec::Unsatisfiable => {}
            Spec::Part(start, end) => {
                satisfiable.get_or_insert((start, end));
            }
        }
    }
    match (count, satisfiable) {
        (0, _) => RangeAnswer::Whole,
        (_, None) => RangeAnswer::Unsatisfiable,
        (1, Some((start, end))) => RangeAnswer::Part { start, end },
        // Several ranges would need multipart/byteranges: the whole file is the simple,
        // allowed answer (RFC 9110 §14.2), and costs one pass.
        _ => RangeAnswer::Whole,
    }
}

enum Spec {
    Invalid,
    Unsatisfiable,
    Part(u64, u64),
}

fn parse_spec(spec: &str, len: u64) -> Spec {
    let Some((first, last)) = spec.split_once('-') else {
        return Spec::Invalid;
    };
    match (number(first), number(last)) {
        // `-N`: the last N bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                Spec::Unsatisfiable
            } else {
                Spec::Part(len.saturating_sub(suffix), len - 1)
            }
        }
        // `A-`: from A to the end.
        (Some(start), None) if last.is_empty() => {
            if start < len {
                Spec::Part(start, len - 1)
            } else {
                Spec::Unsatisfiable
            }
        }
        (Some(start), Some(end)) if start <= end => {
            if start < len {
                Spec::Part(start, end.min(len - 1))
            } else {
                Spec::Unsatisfiable
            }
        }
        _ => Spec::Invalid,
    }
}

/// 1–19 ASCII digits (so it fits a u64); anything else is not a number.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn validators() -> Validators {
        Validators::new(1000, Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)), "")
    }

    fn conditions(pairs: &[(header::HeaderName, &'static str)]) -> Conditions {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_static(value));
        }
        Conditions::from_headers(&headers)
    }

    #[test]
    fn etags_are_strong_and_distinct_per_variant() {
        let v = validators();
        assert_eq!(v.etag, "\"3e8-17979cfe362a0005\"");
        assert_eq!(
            Validators::new(
                1000,
                Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                "-br"
            )
            .etag,
            "\"3e8-17979cfe362a0005-br\""
        );
        assert_eq!(
            httpdate::fmt_http_date(v.last_modified),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }

    #[test]
    fn preconditions_in_rfc_order() {
        let v = validators();
        let etag = "\"3e8-17979cfe362a0005\"";
        let eval = |pairs: &[(header::HeaderName, &'static str)]| evaluate(&conditions(pairs), &v);
        assert_eq!(eval(&[]), Precondition::Proceed);
        assert_eq!(
            eval(&[(header::IF_NONE_MATCH, etag)]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[(header::IF_NONE_MATCH, "W/\"3e8-17979cfe362a0005\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[(
                header::IF_NONE_MATCH,
                "\"a,b\", \"x\" ,\"3e8-17979cfe362a0005\""
            )]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[(header::IF_NONE_MATCH, "*")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[(header::IF_NONE_MATCH, "\"other\"")]),
            Precondition::Proceed
        );
        // If-None-Match wins over a matching If-Modified-Since.
        assert_eq!(
            eval(&[
                (header::IF_NONE_MATCH, "\"other\""),
                (header::IF_MODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:20 GMT")
            ]),
            Precondition::Proceed
        );
        assert_eq!(
            eval(&[(header::IF_MODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:20 GMT")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[(header::IF_MODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:19 GMT")]),
            Precondition::Proceed
        );
        assert_eq!(
            eval(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
            Precondition::Proceed
        );
        // If-Match compares strongly.
        assert_eq!(eval(&[(header::IF_MATCH, etag)]), Precondition::Proceed);
        assert_eq!(
            eval(&[(header::IF_MATCH, "W/\"3e8-17979cfe362a0005\"")]),
            Precondition::Failed
        );
        assert_eq!(eval(&[(header::IF_MATCH, "*")]), Precondition::Proceed);
        assert_eq!(
            eval(&[(header::IF_UNMODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:19 GMT")]),
            Precondition::Failed
        );
        assert_eq!(
            eval(&[(header::IF_UNMODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:20 GMT")]),
            Precondition::Proceed
        );
    }

    fn answer(range: &'static str, len: u64) -> RangeAnswer {
        parse_range(range, len)
    }

    #[test]
    fn byte_ranges() {
        use RangeAnswer::*;
        assert_eq!(answer("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(
            answer("bytes=900-", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            answer("bytes=-100", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(answer("bytes=-5000", 1000), Part { start: 0, end: 999 });
        assert_eq!(
            answer("bytes=990-5000", 1000),
            Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(answer("BYTES = 1-1", 1000), Part { start: 1, end: 1 });
        assert_eq!(answer("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(answer("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(answer("bytes=0-", 0), Unsatisfiable);
        assert_eq!(answer("bytes=2000-3000, 5000-", 1000), Unsatisfiable);
        assert_eq!(answer("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(answer("bytes=2000-3000,5-6", 1000), Whole);
        assert_eq!(answer("bytes=5-1", 1000), Whole);
        assert_eq!(answer("bytes=a-b", 1000), Whole);
        assert_eq!(answer("bytes=99999999999999999999-", 1000), Whole);
        assert_eq!(answer("items=0-1", 1000), Whole);
        assert_eq!(answer("bytes=", 1000), Whole);
        let many = format!("bytes={}", vec!["0-0"; 17].join(","));
        assert_eq!(parse_range(&many, 1000), Whole);
    }

    #[test]
    fn if_range_needs_an_exact_strong_validator() {
        let v = validators();
        let ranged = |if_range: &'static str| {
            range(
                &conditions(&[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, if_range)]),
                &v,
                1000,
            )
        };
        let part = RangeAnswer::Part { start: 0, end: 9 };
        assert_eq!(ranged("\"3e8-17979cfe362a0005\""), part);
        assert_eq!(ranged("W/\"3e8-17979cfe362a0005\""), RangeAnswer::Whole);
        assert_eq!(ranged("\"old\""), RangeAnswer::Whole);
        assert_eq!(ranged("Tue, 14 Nov 2023 22:13:20 GMT"), part);
        assert_eq!(ranged("Tue, 14 Nov 2023 22:13:21 GMT"), RangeAnswer::Whole);
    }
}
