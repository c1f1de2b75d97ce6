//! Request path normalization for routing, and percent-encoding for redirect templates.
//!
//! Routing and IP rules look at the normalized path, so `/%61dmin/`, `/static/../admin/` and
//! `//admin/` all meet the rules of `/admin/` (the upstream, which decodes the path itself,
//! would otherwise serve /admin/ under another route's policy). The upstream receives the same
//! path, in [`forwarded_form`]: dot segments resolved and `//` merged, but every other
//! percent-encoding as the client sent it, so an app that resolves paths its own way cannot
//! reach a resource under the rules of another route (Envoy's `normalize_path` and
//! `merge_slashes`). Encoded separators (`%2F`, `%5C`) would make the two views differ again
//! (one app splits on them, another does not): [`has_encoded_separator`] finds them, and the
//! pipeline refuses them on proxied routes unless the route forwards raw paths.

#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("invalid percent-encoding")]
    BadEncoding,
    #[error("NUL byte in path")]
    Nul,
    #[error("path climbs above the root")]
    AboveRoot,
    /// `..;x` / `.;x`: a dot segment with a path parameter, which Tomcat and Jetty read as the
    /// dot segment (the `..;/` bypass). Refused, so that no app resolves it differently.
    #[error("dot segment with a path parameter")]
    DotSegmentParameter,
}

/// A request path as routing sees it and as the upstream gets it.
#[derive(Debug, PartialEq, Eq)]
pub struct Forms<'a> {
    /// [`normalize`]: decoded, what routes, IP rules and limits match.
    pub routed: Cow<'a, str>,
    /// [`forwarded_form`]: the same path with its other encodings kept.
    pub forwarded: Cow<'a, str>,
}

/// Both forms of `raw`. Most paths have no `%`, no `//` and no dot segment: they are their
/// own normal form, and nothing is allocated.
pub fn forms(raw: &str) -> Result<Forms<'_>, PathError> {
    let bytes = raw.as_bytes();
    let plain = bytes.first() == Some(&b'/')
        && memchr::memchr(b'%', bytes).is_none()
        && !bytes.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return Ok(Forms {
            routed: Cow::Borrowed(raw),
            forwarded: Cow::Borrowed(raw),
        });
    }
    Ok(Forms {
        routed: Cow::Owned(normalize(raw)?),
        forwarded: Cow::Owned(forwarded_form(raw)?),
    })
}

/// Percent-decodes `raw` (once), merges repeated slashes and resolves `.` and `..` segments
/// (RFC 3986 §5.2.4). A trailing slash is kept. Non-UTF-8 bytes become U+FFFD, which can match
/// no configured prefix by accident.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = percent_decode(raw.as_bytes())?;
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    let decoded = String::from_utf8_lossy(&decoded);

    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        if is_dot_with_parameter(segment.as_bytes()) {
            return Err(PathError::DotSegmentParameter);
        }
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        normalized.push('/');
    }
    Ok(normalized)
}

/// The path to forward: `raw` with dot segments (also encoded ones, `%2e%2E`) resolved and
/// empty segments (`//`) merged, each remaining segment kept byte for byte as sent. Its decoded
/// form is [`normalize`]'s, when `raw` has no encoded separator ([`has_encoded_separator`]).
pub fn forwarded_form(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in raw.split('/').skip(1) {
        let decoded = percent_decode(segment.as_bytes())?;
        if decoded.contains(&0) {
            return Err(PathError::Nul);
        }
        if is_dot_with_parameter(&decoded) {
            return Err(PathError::DotSegmentParameter);
        }
        trailing_slash = true;
        match decoded.as_slice() {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut forwarded = String::with_capacity(raw.len());
    for segment in &segments {
        forwarded.push('/');
        forwarded.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        forwarded.push('/');
    }
    Ok(forwarded)
}

/// `%2F` or `%5C` (either case) in a raw path: a separator to one app, a character to another.
pub fn has_encoded_separator(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && matches!((w[1], w[2]), (b'2', b'f' | b'F') | (b'5', b'c' | b'C')))
}

/// `..;jsessionid=x` or `.;x`: what Tomcat's path-parameter stripping turns into a dot segment.
fn is_dot_with_parameter(segment: &[u8]) -> bool {
    segment.starts_with(b"..;") || segment.starts_with(b".;")
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    percent_decode_strict(raw).ok_or(PathError::BadEncoding)
}

/// Percent-decodes `raw` (the `percent-encoding` crate), refusing a `%` that is not followed by
/// two hex digits: the crate would keep it as text, and an app that reads it another way would
/// see a path the proxy did not route. Shared by routing and the static files' paths.
pub(crate) fn percent_decode_strict(raw: &[u8]) -> Option<Vec<u8>> {
    let well_formed = raw.iter().enumerate().all(|(i, byte)| {
        *byte != b'%'
            || raw
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_encoding::percent_decode(raw).collect())
}

/// Percent-encodes a decoded path so it can stand in a `Location` header: everything but
/// RFC 3986 `pchar`s and `/` is encoded (so `?`, `#`, `\`, spaces and controls cannot change
/// the meaning of the URL).
pub fn encode_path(decoded: &str, out: &mut String) {
    encode(decoded, out, |b| is_pchar(b) || b == b'/');
}

/// Percent-encodes a query string for a `Location` header, keeping existing `%XX` escapes.
pub fn encode_query(raw: &str, out: &mut String) {
    encode(raw, out, |b| {
        is_pchar(b) || b == b'/' || b == b'?' || b == b'%'
    });
}

fn encode(input: &str, out: &mut String, keep: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
}

/// RFC 3986 pchar without `%` (unreserved / sub-delims / ":" / "@").
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_encodings_dots_and_slashes() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/b").unwrap(), "/a/b");
        assert_eq!(normalize("/a/b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/%61dmin/").unwrap(), "/admin/");
        assert_eq!(normalize("/static/../admin/").unwrap(), "/admin/");
        assert_eq!(normalize("/static/%2e%2e/admin/x").unwrap(), "/admin/x");
        assert_eq!(normalize("//admin//x").unwrap(), "/admin/x");
        assert_eq!(normalize("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/admin%2Fx").unwrap(), "/admin/x");
        // Decoded once only: a double-encoded dot stays text, as the upstream will see it.
        assert_eq!(normalize("/%252e%252e/x").unwrap(), "/%2e%2e/x");
    }

    #[test]
    fn refuses_escapes_and_bad_bytes() {
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(normalize("/%2e%2e/"), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a%00b"), Err(PathError::Nul));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a%4"), Err(PathError::BadEncoding));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn forwarded_form_resolves_dots_and_slashes_and_keeps_encodings() {
        let f = |raw| forwarded_form(raw).unwrap();
        assert_eq!(f("/"), "/");
        assert_eq!(f("/static/../secret.txt"), "/secret.txt");
        assert_eq!(f("/api/auth/./login/"), "/api/auth/login/");
        assert_eq!(f("//admin//x"), "/admin/x");
        assert_eq!(f("/static/%2e%2E/secret.txt"), "/secret.txt");
        assert_eq!(f("/a/b/.."), "/a/");
        assert_eq!(f("/a/./"), "/a/");
        // other encodings travel as sent
        assert_eq!(f("/%61dmin/caf%C3%A9?"), "/%61dmin/caf%C3%A9?");
        assert_eq!(f("/a%20b/%252e%252e/"), "/a%20b/%252e%252e/");
        assert_eq!(forwarded_form("/../x"), Err(PathError::AboveRoot));
        assert_eq!(forwarded_form("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(forwarded_form("/a/%00"), Err(PathError::Nul));
        // its decoded form is what routing saw
        for raw in [
            "/static/../admin/x",
            "/%61dmin//./y/",
            "/a/%2e%2e/b",
            "/x/caf%C3%A9",
        ] {
            let forwarded = forwarded_form(raw).unwrap();
            assert_eq!(
                normalize(&forwarded).unwrap(),
                normalize(raw).unwrap(),
                "{raw}"
            );
        }
    }

    #[test]
    fn plain_paths_are_their_own_forms() {
        for raw in ["/", "/api/x", "/a.b/c.d", "/a;b", "/x/y/"] {
            let forms = forms(raw).unwrap();
            assert!(matches!(forms.routed, Cow::Borrowed(_)), "{raw}");
            assert_eq!(forms.routed, normalize(raw).unwrap(), "{raw}");
            assert_eq!(forms.forwarded, forwarded_form(raw).unwrap(), "{raw}");
        }
        let forms = forms("/static/../x%20y").unwrap();
        assert_eq!(forms.routed, "/x y");
        assert_eq!(forms.forwarded, "/x%20y");
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for raw in [
            "/static/..;/admin/",
            "/a/.;x/b",
            "/static/%2e%2e;jsessionid=1/x",
        ] {
            assert_eq!(normalize(raw), Err(PathError::DotSegmentParameter), "{raw}");
            assert_eq!(
                forwarded_form(raw),
                Err(PathError::DotSegmentParameter),
                "{raw}"
            );
        }
        assert_eq!(normalize("/a;b/..x;y/").unwrap(), "/a;b/..x;y/");
    }

    #[test]
    fn encoded_separators_are_found() {
        for raw in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5c", "/%2F"] {
            assert!(has_encoded_separator(raw), "{raw}");
        }
        for raw in ["/a/b", "/a%252Fb", "/a%2", "/%5", "/a%20b"] {
            assert!(!has_encoded_separator(raw), "{raw}");
        }
    }

    #[test]
    fn invalid_utf8_cannot_match_ascii_prefixes() {
        let n = normalize("/%ff%fe/admin").unwrap();
        assert!(n.starts_with("/\u{FFFD}"));
    }

    #[test]
    fn encoding_keeps_urls_closed() {
        let mut out = String::new();
        encode_path("/a b/?#\\\r\n", &mut out);
        assert_eq!(out, "/a%20b/%3F%23%5C%0D%0A");
        let mut out = String::new();
        encode_query("a=1&b=%20c d", &mut out);
        assert_eq!(out, "a=1&b=%20c%20d");
    }
}
