//! Request path normalization for routing, and percent-encoding for redirect templates.
//!
//! Routing and IP rules look at the normalized path, so `/%61dmin/`, `/static/../admin/` and
//! `//admin/` all meet the rules of `/admin/` (the upstream, which decodes the path itself,
//! would otherwise serve /admin/ under another route's policy). The upstream still receives
//! the client's original path, as nginx's `proxy_pass` without a URI does.

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

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = raw.get(i + 1).and_then(|b| hex_value(*b));
            let lo = raw.get(i + 2).and_then(|b| hex_value(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadEncoding),
            }
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
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
