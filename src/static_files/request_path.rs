//! The request path of a static route → the file it names, relative to the route's root.
//!
//! The router matched the normalized path, in which `%2e%2e`, `%2f` and `..` were already
//! decoded and resolved. A file server must not resolve them: a client that sends them is
//! probing for an escape, not asking for a file. So the raw path is checked first, and only a
//! raw path whose normalized form is a plain decoding of it (no dot segments, no encoded
//! separators) is mapped to a file.

use crate::errors::ProxyError;

/// The file or directory a request names: decoded segments below the root, none empty, none
/// `.`/`..`, none hidden, none holding `/`, `\` or NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub segments: Vec<String>,
    /// The path ends with `/` (or is the route's prefix itself): a directory was asked for.
    pub trailing_slash: bool,
}

/// Maps a request to its target. `raw` is the path as the client sent it, `normalized` the
/// router's form of it, `prefix` the route's (normalized) path prefix.
///
/// 400 for what can only be an escape attempt or garbage (dot segments, encoded `/` or `\`,
/// `\`, NUL, invalid UTF-8 or escapes); 404 for hidden segments (`.env`, `.git/`).
pub fn target(raw: &str, normalized: &str, prefix: &str) -> Result<Target, ProxyError> {
    check_raw(raw)?;
    let rest = normalized
        .strip_prefix(prefix)
        .ok_or(ProxyError::NotFound)?;
    let mut segments = Vec::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        // Hidden files (.env, .git/, .htpasswd) are never meant to be served, even when a
        // deploy copied them into the root.
        if segment.starts_with('.') {
            return Err(ProxyError::FileNotFound);
        }
        segments.push(segment.to_string());
    }
    Ok(Target {
        segments,
        trailing_slash: rest.is_empty() || rest.ends_with('/'),
    })
}

/// Refuses what a file path must not contain, before anything is decoded twice or resolved.
fn check_raw(raw: &str) -> Result<(), ProxyError> {
    let mut decoded = Vec::with_capacity(raw.len());
    for segment in raw.split('/') {
        let start = decoded.len();
        decode_segment(segment.as_bytes(), &mut decoded)?;
        let decoded_segment = &decoded[start..];
        if decoded_segment == b"." || decoded_segment == b".." {
            return Err(ProxyError::BadRequest("dot segment in a static file path"));
        }
        decoded.push(b'/');
    }
    // Overlong forms (`%c0%ae`) and stray bytes (`%ff`) are not UTF-8: no file name has them,
    // and some decoders would read them as `.` or `/`.
    if std::str::from_utf8(&decoded).is_err() {
        return Err(ProxyError::BadRequest("static file path is not UTF-8"));
    }
    Ok(())
}

/// Percent-decodes one segment into `out`, refusing separators and NUL in any form (a `/`
/// after decoding can only have been `%2F`: the raw ones split the segments).
fn decode_segment(segment: &[u8], out: &mut Vec<u8>) -> Result<(), ProxyError> {
    let decoded = crate::path::percent_decode_strict(segment)
        .ok_or(ProxyError::BadRequest("invalid percent-encoding"))?;
    for byte in decoded {
        match byte {
            b'/' => {
                return Err(ProxyError::BadRequest(
                    "encoded slash in a static file path",
                ))
            }
            b'\\' => return Err(ProxyError::BadRequest("backslash in a static file path")),
            0 => return Err(ProxyError::BadRequest("NUL in a static file path")),
            _ => out.push(byte),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::normalize;

    fn resolve(raw: &str) -> Result<Target, u16> {
        let normalized = normalize(raw).map_err(|_| 400u16)?;
        target(raw, &normalized, "/static/").map_err(|e| e.status().as_u16())
    }

    fn segments(raw: &str) -> Vec<String> {
        resolve(raw).unwrap().segments
    }

    #[test]
    fn plain_paths_map_to_segments() {
        assert_eq!(segments("/static/css/app.css"), ["css", "app.css"]);
        assert_eq!(segments("/static/a%20b.txt"), ["a b.txt"]);
        assert_eq!(segments("/static//css//app.css"), ["css", "app.css"]);
        assert_eq!(segments("/static/caf%C3%A9.txt"), ["café.txt"]);
        // Decoded once: a double-encoded dot is a literal file name, never a parent.
        assert_eq!(segments("/static/%252e%252e%252fx"), ["%2e%2e%2fx"]);
        assert!(!resolve("/static/css").unwrap().trailing_slash);
        assert!(resolve("/static/css/").unwrap().trailing_slash);
        let root = resolve("/static/").unwrap();
        assert!(root.segments.is_empty() && root.trailing_slash);
    }

    #[test]
    fn escapes_are_refused_not_resolved() {
        for raw in [
            "/static/a/../b.css",
            "/static/%2e%2e/x",
            "/static/a/%2E%2e/x",
            "/static/./a.css",
            "/static/%2e/a.css",
            "/static/a/..",
            "/static/..%2fx",
            "/static/a%2fb",
            "/static%2Fa.css",
            "/static/a%5cb",
            "/static/..\\x",
            "/static/a%00.css",
            "/static/%c0%ae%c0%ae/x",
            "/static/%ff.css",
            "/static/a%zz",
        ] {
            assert_eq!(resolve(raw), Err(400), "{raw}");
        }
    }

    #[test]
    fn hidden_segments_are_not_found() {
        for raw in ["/static/.env", "/static/.git/config", "/static/a/.htpasswd"] {
            assert_eq!(resolve(raw), Err(404), "{raw}");
        }
        assert_eq!(segments("/static/a.b/c."), ["a.b", "c."]);
    }
}
