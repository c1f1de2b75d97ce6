//! The header rules of a request on its way upstream and of the upstream's response on its way
//! back, one small function per rule, each citing the rule it follows. `forward` applies them in
//! the order of [`rewrite_request`] and [`clean_response`].

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

use crate::header_names::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};

/// The request's header section as it goes upstream. `upgrade` is the client's `Upgrade` value
/// when the request is a WebSocket handshake to pass on.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    client: &ClientFacts<'_>,
    upgrade: Option<HeaderValue>,
) {
    // Each rule below runs only when its fields are there: most requests carry none of them,
    // and a lookup or removal costs a hash and a probe even for an absent field.
    let present = RequestFields::scan(headers);
    if present.hop_by_hop {
        remove_hop_by_hop(headers);
    }
    if present.underscored {
        strip_underscored(headers);
    }
    if present.cookies > 1 {
        join_cookie_crumbs(headers);
    }
    if present.expect {
        drop_expect(headers);
    }
    set_forwarding_headers(headers, client);
    if let Some(protocol) = upgrade {
        ask_for_upgrade(headers, protocol);
    }
}

/// Which of the fields [`rewrite_request`]'s rules act on a request has, found in one pass over
/// its names.
#[derive(Debug, Default)]
struct RequestFields {
    hop_by_hop: bool,
    underscored: bool,
    cookies: usize,
    expect: bool,
}

impl RequestFields {
    fn scan(headers: &HeaderMap) -> Self {
        let mut present = RequestFields::default();
        // `iter`, not `keys`: a repeated Cookie is counted once per field.
        for (name, _) in headers {
            if *name == header::COOKIE {
                present.cookies += 1;
            } else if *name == header::EXPECT {
                present.expect = true;
            } else if is_hop_by_hop(name) {
                present.hop_by_hop = true;
            } else if name.as_str().as_bytes().contains(&b'_') {
                present.underscored = true;
            }
        }
        present
    }
}

/// `Expect: 100-continue` is answered by the proxy itself (hyper does, when the body is first
/// read), so the upstream never waits to send its own `100` (RFC 9110 §10.1.1).
fn drop_expect(headers: &mut HeaderMap) {
    headers.remove(header::EXPECT);
}

/// A WebSocket handshake is passed on with its own `Connection: upgrade` and `Upgrade`, the
/// hop-by-hop headers a proxy keeps for a tunnel it agreed to (RFC 9110 §7.8, RFC 6455 §4.1).
fn ask_for_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// hyper's client sends a body of unknown length on GET, HEAD or CONNECT as no body at all
/// unless the request says chunked: say it, so the app gets the body the client sent (RFC 9112
/// §6.1: chunked is how HTTP/1.1 frames a body of unknown length).
pub fn frame_unknown_length(headers: &mut HeaderMap, exact_length: Option<u64>) {
    if !headers.contains_key(header::CONTENT_LENGTH) && exact_length.is_none() {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

/// The upstream's response header section as it goes to the client. Returns true when the
/// response was framed both ways: its body was read as chunked and its connection must not be
/// reused.
pub fn clean_response(headers: &mut HeaderMap, upload_unfinished: bool) -> bool {
    let both_framings = drop_length_beside_chunked(headers);
    strip_hop_by_hop(headers);
    if upload_unfinished {
        close_after_response(headers);
    }
    both_framings
}

/// `Transfer-Encoding` with `Content-Length` (RFC 9112 §6.3): the body is read as chunked, and
/// the length, which a client might believe instead, is dropped.
fn drop_length_beside_chunked(headers: &mut HeaderMap) -> bool {
    let both = headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH);
    if both {
        headers.remove(header::CONTENT_LENGTH);
    }
    both
}

/// An HTTP/1.1 client still uploading when the answer comes is told that the connection ends
/// with this response (RFC 9112 §9.6): the rest of its upload goes nowhere.
fn close_after_response(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
}

static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// RFC 9110 §7.6.1 (and the RFC 2616 §13.5.1 list that clients still send): headers that
/// describe one connection and must not be forwarded. Proxy credentials are for us, not the app.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
    &header::PROXY_AUTHENTICATE,
];

/// One of the fixed hop-by-hop headers (not counting those a `Connection` header names).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Removes hop-by-hop headers and every header named in `Connection` (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of these (or only Connection),
    // and a removal costs a hash lookup each.
    if headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        remove_hop_by_hop(headers);
    }
}

/// [`strip_hop_by_hop`] without its pass over the names, for a caller that made it already.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            // Bytes, not `to_str`: a value with a non-ASCII byte still lists headers to drop
            // (found by fuzzing: `Connection: \x8b, X-Secret` forwarded X-Secret).
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Drops request headers whose names contain `_`, as nginx does (`underscores_in_headers off`).
/// CGI-style app servers (WSGI, Django's `request.META`) turn `-` into `_`, so
/// `X_Forwarded_For` would land on the same key as the `X-Forwarded-For` rampart sets.
pub fn strip_underscored(headers: &mut HeaderMap) {
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(name);
    }
}

/// `Connection: upgrade` + `Upgrade: websocket` on HTTP/1.1 (RFC 6455 §4.1).
pub fn is_websocket_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Who is asking, as the forwarding headers will tell the upstream.
pub struct ClientFacts<'a> {
    pub request_id: &'a HeaderValue,
    pub peer: IpAddr,
    /// `peer` as a header value ([`ip_header_value`]), formatted once per connection.
    pub peer_header: &'a HeaderValue,
    /// The peer is in `trusted_proxies`: its X-Forwarded-For and Forwarded are kept.
    pub peer_trusted: bool,
    pub client_ip: IpAddr,
    /// The host as the client addressed it (with port, if it sent one).
    pub host: &'a HeaderValue,
}

/// Sets the forwarding headers on a request about to go upstream. Whatever an untrusted client
/// sent in these headers is replaced, never believed.
pub fn set_forwarding_headers(headers: &mut HeaderMap, ctx: &ClientFacts<'_>) {
    let peer = ctx.peer_header.clone();
    // Usually the same address: formatted once, for the connection.
    let real_ip = if ctx.client_ip == ctx.peer {
        peer.clone()
    } else {
        ip_header_value(ctx.client_ip)
    };
    let forwarded_for = if ctx.peer_trusted && headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = String::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(text) = value.to_str() {
                chain.push_str(text.trim());
                chain.push_str(", ");
            }
        }
        chain.push_str(&ctx.peer.to_string());
        HeaderValue::from_str(&chain).unwrap_or(peer.clone())
    } else {
        peer
    };
    if !ctx.peer_trusted {
        headers.remove(&FORWARDED);
    }
    headers.insert(&X_FORWARDED_FOR, forwarded_for);
    headers.insert(&X_FORWARDED_PROTO, HTTPS.clone());
    headers.insert(&X_FORWARDED_HOST, ctx.host.clone());
    headers.insert(&X_REAL_IP, real_ip);
    headers.insert(&X_REQUEST_ID, ctx.request_id.clone());
    // The app sees the host the client asked for (Django's ALLOWED_HOSTS), not our upstream address.
    headers.insert(header::HOST, ctx.host.clone());
}

/// An address as a header value. Written into a stack buffer (IPv6) or digit by digit (IPv4):
/// `to_string` would allocate a String only to copy it again.
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    if let IpAddr::V4(v4) = ip {
        return ipv4_header_value(v4);
    }
    let mut buffer = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    if std::io::Write::write_fmt(&mut cursor, format_args!("{ip}")).is_err() {
        return HeaderValue::from_static("unknown");
    }
    let len = cursor.position() as usize;
    // An IP address's text form is always a valid header value.
    HeaderValue::from_bytes(&buffer[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The dotted-decimal form written digit by digit: the formatting machinery costs about a
/// thousand instructions per address, on every proxied request (callgrind).
fn ipv4_header_value(ip: std::net::Ipv4Addr) -> HeaderValue {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    // Digits and dots are always a valid header value.
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

/// HTTP/2 clients may send `cookie` as one field per crumb (RFC 9113 §8.2.3, and Chromium's
/// encoder does): before forwarding over HTTP/1.1 they are joined into one field with "; ".
/// Repeated fields would reach the app joined with "," (WSGI's `HTTP_COOKIE`), which cookie
/// parsers such as Django's read as one cookie, losing the session and CSRF cookies.
fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 4);
    for crumb in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Joined valid values with "; " make a valid value.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_header_values_match_the_standard_text_form() {
        let mut addresses: Vec<IpAddr> = (0..=255u8)
            .flat_map(|a| {
                [
                    [a, 0, 9, 10],
                    [99, a, 100, 255],
                    [1, 2, a, 0],
                    [10, 200, 7, a],
                ]
            })
            .map(IpAddr::from)
            .collect();
        addresses.push("::1".parse().unwrap());
        addresses.push("2001:db8::8a2e:370:7334".parse().unwrap());
        addresses.push("::ffff:192.0.2.1".parse().unwrap());
        for ip in addresses {
            assert_eq!(ip_header_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed_names() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));

        let mut headers = HeaderMap::new();
        let listed = HeaderValue::from_bytes(b"\x8b-x, X-Secret").unwrap();
        headers.insert(header::CONNECTION, listed);
        headers.insert("x-secret", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
    }

    /// `rewrite_request` skips the rules whose fields a request lacks: the result must be what
    /// applying every rule gives, for every mix of the fields they act on.
    #[test]
    fn the_rewrite_equals_every_rule_applied() {
        let fields: [(&str, &str); 12] = [
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x_forwarded_for", "7.7.7.7"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("expect", "100-continue"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("host", "example.com"),
            ("x-kept", "1"),
        ];
        let id = HeaderValue::from_static("abc");
        let host = HeaderValue::from_static("example.com:8443");
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let peer_header = ip_header_value(peer);
        for peer_trusted in [false, true] {
            let ctx = ClientFacts {
                request_id: &id,
                peer,
                peer_header: &peer_header,
                peer_trusted,
                client_ip: "10.0.0.2".parse().unwrap(),
                host: &host,
            };
            for mix in 0..1u32 << fields.len() {
                let mut request = HeaderMap::new();
                for (i, (name, value)) in fields.iter().enumerate() {
                    if mix & 1 << i != 0 {
                        request.append(*name, HeaderValue::from_static(value));
                    }
                }
                let mut every_rule = request.clone();
                strip_hop_by_hop(&mut every_rule);
                strip_underscored(&mut every_rule);
                join_cookie_crumbs(&mut every_rule);
                drop_expect(&mut every_rule);
                set_forwarding_headers(&mut every_rule, &ctx);
                let mut rewritten = request.clone();
                rewrite_request(&mut rewritten, &ctx, None);
                assert_eq!(
                    rewritten, every_rule,
                    "{request:?}, trusted: {peer_trusted}"
                );
            }
        }
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        headers.append("x_forwarded_for", HeaderValue::from_static("7.7.7.7"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_underscored(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.insert(&X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        headers.insert(&FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        let id = HeaderValue::from_static("abc");
        let host = HeaderValue::from_static("example.com");
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let peer_header = ip_header_value(peer);
        let ctx = ClientFacts {
            request_id: &id,
            peer,
            peer_header: &peer_header,
            peer_trusted: false,
            client_ip: "10.0.0.1".parse().unwrap(),
            host: &host,
        };
        set_forwarding_headers(&mut headers, &ctx);
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(headers[&X_REAL_IP], "10.0.0.1");
        assert!(!headers.contains_key(&FORWARDED));

        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        let ctx = ClientFacts {
            peer_trusted: true,
            client_ip: "2.2.2.2".parse().unwrap(),
            ..ctx
        };
        set_forwarding_headers(&mut headers, &ctx);
        assert_eq!(headers[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(headers[&X_REAL_IP], "2.2.2.2");
    }
}
