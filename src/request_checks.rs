//! Checks of a request's head before it is routed: request smuggling and the request target
//! (RFC 9112), the header section's size, and the host it is for. Shared by the pipeline
//! (`proxy.rs`), the plain-http listener and the fuzz oracles.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Version};

use crate::errors::ProxyError;

/// What the checks read from a request's header section, gathered in one pass over it: looked
/// up one by one, the five fields cost a hash and a probe of the `http` map each, on every
/// request (about 500 instructions per HTTP/1.1 request under callgrind; docs/performance.md).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeadFacts {
    /// Request line + header section, as counted against `client.max_header_bytes`.
    section_bytes: usize,
    /// `Transfer-Encoding` fields, and whether the first says exactly `chunked`.
    codings: usize,
    first_coding_chunked: bool,
    /// `Content-Length` fields, and the first one's value (`None`: malformed).
    lengths: usize,
    first_length: Option<u64>,
    hosts: usize,
}

impl HeadFacts {
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        let uri = request.uri();
        let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
            + uri.authority().map_or(0, |a| a.as_str().len());
        let mut facts = HeadFacts {
            section_bytes: request.method().as_str().len() + target + 12,
            ..HeadFacts::default()
        };
        for (name, value) in request.headers() {
            facts.section_bytes += name.as_str().len() + value.len() + 4;
            if *name == header::TRANSFER_ENCODING {
                if facts.codings == 0 {
                    facts.first_coding_chunked = value
                        .to_str()
                        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
                }
                facts.codings += 1;
            } else if *name == header::CONTENT_LENGTH {
                if facts.lengths == 0 {
                    facts.first_length = parse_length(value);
                }
                facts.lengths += 1;
            } else if *name == header::HOST {
                facts.hosts += 1;
            }
        }
        facts
    }

    /// HTTP/1: the request has a body: chunked, or a `Content-Length` that is not 0 (a malformed
    /// one counts: its request is refused, and its bytes must not be read as the next request).
    pub(crate) fn announces_body(&self) -> bool {
        self.codings > 0 || (self.lengths > 0 && self.first_length != Some(0))
    }
}

/// Request-smuggling and request-target checks (RFC 9112 §3.2, §6.3), on `head` read from the
/// same request ([`HeadFacts::of`]).
pub(crate) fn check_head<B>(
    request: &Request<B>,
    head: &HeadFacts,
    max_header_bytes: usize,
) -> Result<(), ProxyError> {
    if request.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not proxied"));
    }
    // Methods are case-sensitive (RFC 9110 §9.1), but some app servers fold them: `post` would
    // miss a `methods = ["POST"]` route here and still be a POST there. nginx's rule.
    if !request
        .method()
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err(ProxyError::BadRequest("method is not uppercase"));
    }
    // hyper's HTTP/1 parser drops Content-Length next to Transfer-Encoding (the connection's
    // `framing` finds that head on the bytes), and HTTP/2 forbids Transfer-Encoding; this
    // guards any other path.
    if head.codings > 0 && head.lengths > 0 {
        return Err(ProxyError::BadRequest(
            "Content-Length with Transfer-Encoding",
        ));
    }
    // hyper accepts any coding list ending in chunked (`gzip, chunked`) and decodes only the
    // chunked: the rest would reach the app still coded and unannounced (RFC 9112 §6.1: 501).
    if head.codings > 0 && (!head.first_coding_chunked || head.codings > 1) {
        return Err(ProxyError::UnsupportedTransferCoding);
    }
    if head.lengths > 0 && (head.lengths > 1 || head.first_length.is_none()) {
        return Err(ProxyError::BadRequest(
            "repeated or malformed Content-Length",
        ));
    }
    if head.hosts > 1 {
        return Err(ProxyError::BadRequest("repeated Host"));
    }
    if head.section_bytes > max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    Ok(())
}

fn parse_length(value: &HeaderValue) -> Option<u64> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(parse_length)
}

/// The host a request is for.
pub struct RequestHost {
    /// Lowercase, without port: what routes and certificates match on.
    pub name: String,
    /// As the client sent it (with port): forwarded as Host and X-Forwarded-Host.
    pub value: HeaderValue,
}

pub(crate) fn request_host<B>(request: &Request<B>) -> Result<RequestHost, ProxyError> {
    let header_host = request.headers().get(header::HOST);
    let uri_host = request.uri().authority();
    let value = match (uri_host, header_host) {
        (Some(authority), Some(host)) => {
            // Absolute-form (RFC 9112 §3.2.2): the target's authority wins over Host, so the two
            // must agree or an upstream reading Host would see another site than we routed.
            if request.version() < Version::HTTP_2
                && !authority
                    .as_str()
                    .eq_ignore_ascii_case(host.to_str().unwrap_or(""))
            {
                return Err(ProxyError::BadRequest(
                    "absolute-form target for another host",
                ));
            }
            HeaderValue::from_str(authority.as_str())
                .map_err(|_| ProxyError::BadRequest("invalid host"))?
        }
        // HTTP/1.1 requires Host even with an absolute-form target (RFC 9112 §3.2).
        (Some(_), None) if request.version() == Version::HTTP_11 => {
            return Err(ProxyError::BadRequest("missing Host"))
        }
        (Some(authority), None) => HeaderValue::from_str(authority.as_str())
            .map_err(|_| ProxyError::BadRequest("invalid host"))?,
        (None, Some(host)) => host.clone(),
        (None, None) => return Err(ProxyError::BadRequest("missing Host")),
    };
    let name = host_name(&value).ok_or(ProxyError::BadRequest("invalid Host"))?;
    Ok(RequestHost { name, value })
}

/// `example.com:8443` → `example.com`; `[::1]:8443` → `[::1]`. `None` unless the value is a
/// plausible host (letters, digits, `-`, `.`, `_`, or a bracketed IPv6 address) and port.
pub fn host_name(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    if bytes.first() == Some(&b'[') {
        return bracketed_host_name(value);
    }
    // On bytes, every request: a name of the allowed bytes and a port of digits are ASCII, so
    // nothing else needs checking (about 100 instructions fewer than `to_str` and `split_once`).
    // Names are short: a plain scan beats memchr's vector set-up here.
    let (host, port) = match bytes.iter().position(|&b| b == b':') {
        Some(colon) => (&bytes[..colon], Some(&bytes[colon + 1..])),
        None => (bytes, None),
    };
    if port.is_some_and(|digits| !is_port(digits)) {
        return None;
    }
    if host.is_empty()
        || host.len() > 253
        || !host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    // `Host: .` would otherwise be the empty name, and `https://{host}/x` would become
    // `https:///x`, which browsers read as `https://x/` (found by fuzzing).
    let host = match host.iter().rposition(|&b| b != b'.') {
        Some(last) => &host[..=last],
        None => return None,
    };
    let mut name = std::str::from_utf8(host).ok()?.to_owned();
    name.make_ascii_lowercase();
    Some(name)
}

fn is_port(digits: &[u8]) -> bool {
    !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)
}

/// `[::1]` or `[::1]:8443`: the address inside the brackets must parse.
fn bracketed_host_name(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let rest = text.strip_prefix('[')?;
    let end = rest.find(']')?;
    rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
    let (host, port) = (&text[..end + 2], &rest[end + 1..]);
    if !port.is_empty() && !is_port(port.strip_prefix(':')?.as_bytes()) {
        return None;
    }
    if host.len() > 253 {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let h = |s: &'static str| host_name(&HeaderValue::from_static(s));
        assert_eq!(h("Example.COM:8443").as_deref(), Some("example.com"));
        assert_eq!(h("example.com.").as_deref(), Some("example.com"));
        assert_eq!(h("[::1]:8443").as_deref(), Some("[::1]"));
        assert_eq!(h("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(h("evil.com/x"), None);
        assert_eq!(h("a:b"), None);
        assert_eq!(h(":80"), None);
        assert_eq!(h("a b"), None);
        assert_eq!(h("[zz]"), None);
        assert_eq!(h("."), None);
        assert_eq!(h("...:443"), None);
    }
}
