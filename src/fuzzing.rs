//! Fuzzing entry points, one per target in `fuzz/fuzz_targets/`: each turns arbitrary bytes into
//! the input of one stage, runs it as the proxy does, and panics when an invariant the stage
//! promises is broken (a panic is how libFuzzer reports a finding). `tests/fuzz_corpus.rs`
//! replays the committed corpora through the same functions, so the normal test run catches a
//! regression of anything the fuzzer once found.
//!
//! Input formats (plain text, so corpus files are readable and easy to write by hand):
//! - [`config`]: the bytes are a config file.
//! - [`path`]: the bytes are a request target (`/a/%2e%2e/b?q`).
//! - [`headers`]: first line `<peer ip>[ trusted]`, then one `name: value` header per line.
//! - [`redirect`]: four lines: the `redirect.to` template, the Host header, the request target,
//!   the route's prefix.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Version};
use ipnet::IpNet;

use crate::actions::{RedirectInput, RedirectTemplate};
use crate::client_ip::client_ip;
use crate::config::units::{ByteSize, Cidr, Duration, Rate};
use crate::config::{MissingCert, Source};
use crate::path::{encode_path, encode_query, normalize};
use crate::proxy::{check_request, host_name, request_host, request_id};
use crate::upstream::forward::{
    is_websocket_upgrade, set_forwarding_headers, strip_hop_by_hop, strip_underscored,
    ForwardContext, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};

const LABEL: &str = "fuzz.toml";

/// Config text: parsing and validation never panic, and every error points into the text.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(64) {
        units(line);
        if let Some(quoted) = line.split('"').nth(1) {
            units(quoted);
        }
    }

    // Validation reads the certificate files the text names; a fuzzed `/dev/zero` or a FIFO
    // would hang the run, so such inputs stop after parsing.
    let source = Source::new(LABEL, text.to_string());
    let result = match source.parse() {
        Ok(file) if !certificate_paths_safe(&file) => return,
        Ok(_) => crate::config::load_str_with(&text, LABEL, MissingCert::Refuse).map(|_| ()),
        Err(errors) => Err(errors),
    };
    let Err(errors) = result else { return };
    assert!(!errors.0.is_empty(), "an Err without any error");
    let lines: Vec<&str> = text.split('\n').collect();
    for error in &errors.0 {
        // `load_str` has no whole-file errors (line 0 is for an unreadable file).
        assert!(
            error.line >= 1 && error.line <= lines.len(),
            "line {} outside the text ({} lines): {error}",
            error.line,
            lines.len()
        );
        let line_chars = lines[error.line - 1].chars().count();
        assert!(
            error.column >= 1 && error.column <= line_chars + 1,
            "column {} outside line {} ({line_chars} chars): {error}",
            error.column,
            error.line
        );
        assert!(!error.message.is_empty(), "empty message: {error:?}");
        let shown = error.to_string();
        let position = format!("{LABEL}:{}:{}: ", error.line, error.column);
        assert!(shown.starts_with(&position), "{shown:?} lacks {position:?}");
        // `ConfigErrors` promises one error per line; a user's newline must not start another.
        assert!(
            !shown.contains(['\n', '\r']),
            "an error spans lines: {shown:?}"
        );
    }
}

fn certificate_paths_safe(file: &crate::config::model::File) -> bool {
    let Some(tls) = &file.tls else { return true };
    let mut paths = vec![tls.cert.get_ref(), tls.key.get_ref()];
    for extra in &tls.certificates {
        paths.push(extra.get_ref().cert.get_ref());
        paths.push(extra.get_ref().key.get_ref());
    }
    paths.into_iter().all(|p| harmless_to_read(p))
}

/// Missing, or a regular file of at most 1 MiB.
fn harmless_to_read(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.len() <= 1 << 20,
        Err(_) => true,
    }
}

/// The unit parsers never panic, and what they accept prints back to the same value.
fn units(text: &str) {
    if let Ok(duration) = text.parse::<Duration>() {
        let shown = duration.to_string();
        assert_eq!(
            shown.parse::<Duration>(),
            Ok(duration),
            "duration {text:?} → {shown:?}"
        );
    }
    if let Ok(size) = text.parse::<ByteSize>() {
        let shown = size.to_string();
        assert_eq!(
            shown.parse::<ByteSize>(),
            Ok(size),
            "size {text:?} → {shown:?}"
        );
    }
    if let Ok(rate) = text.parse::<Rate>() {
        assert!(rate.count > 0 && !rate.period().is_zero(), "rate {text:?}");
        let shown = rate.to_string();
        assert_eq!(shown.parse::<Rate>(), Ok(rate), "rate {text:?} → {shown:?}");
    }
    if let Ok(cidr) = text.parse::<Cidr>() {
        assert_eq!(cidr.0, cidr.0.trunc(), "cidr {text:?} keeps host bits");
        let shown = cidr.to_string();
        assert_eq!(shown.parse::<Cidr>(), Ok(cidr), "cidr {text:?} → {shown:?}");
    }
}

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

/// Request header cleaning: host validation, request ids, hop-by-hop removal and the
/// forwarding headers, in the pipeline's order.
pub fn headers(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let mut words = first.split_whitespace();
    let peer = words
        .next()
        .and_then(|word| word.parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let trusted: Vec<IpNet> = if words.any(|word| word == "trusted") {
        vec![IpNet::from(peer)]
    } else {
        Vec::new()
    };

    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(trim_ows(&line[colon + 1..]));
        if let (Ok(name), Ok(value)) = (name, value) {
            check_host_name(&value);
            headers.append(name, value);
        }
    }

    let id = request_id(&headers);
    check_request_id(&headers, &id);
    let _ = is_websocket_upgrade(Version::HTTP_11, &headers);

    let mut request = Request::new(());
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    if check_request(&request, 16 * 1024).is_err() {
        return;
    }
    let Ok(host) = request_host(&request) else {
        return;
    };
    assert_eq!(Some(&host.name), host_name(&host.value).as_ref());
    let original = request.headers();
    let client = client_ip(peer, original, &trusted);

    // The cleaning steps of `forward`, in its order.
    let listed = connection_listed(original);
    let mut forwarded = original.clone();
    strip_hop_by_hop(&mut forwarded);
    for name in HOP_BY_HOP.iter().copied().chain(listed.iter()) {
        assert!(
            !forwarded.contains_key(name),
            "{name} survived strip_hop_by_hop: {original:?}"
        );
    }
    strip_underscored(&mut forwarded);
    assert!(
        forwarded.keys().all(|name| !name.as_str().contains('_')),
        "an underscored name survived: {forwarded:?}"
    );
    forwarded.remove(header::EXPECT);

    let peer_trusted = !trusted.is_empty();
    let ctx = ForwardContext {
        request_id: &id,
        peer,
        peer_trusted,
        client_ip: client,
        host: &host.value,
        max_body: 0,
    };
    set_forwarding_headers(&mut forwarded, &ctx);

    let only = |name: &HeaderName| -> &HeaderValue {
        let mut values = forwarded.get_all(name).iter();
        let value = values
            .next()
            .unwrap_or_else(|| panic!("no {name} after set_forwarding_headers"));
        assert!(values.next().is_none(), "two {name} headers");
        value
    };
    assert_eq!(only(&X_FORWARDED_PROTO), "https");
    assert_eq!(only(&header::HOST), host.value);
    assert_eq!(only(&X_FORWARDED_HOST), host.value);
    assert_eq!(only(&X_REAL_IP), client.to_string().as_str());
    assert_eq!(only(&X_REQUEST_ID), id);
    let chain = only(&X_FORWARDED_FOR);
    let peer_text = peer.to_string();
    if peer_trusted {
        let chain = chain.to_str().unwrap_or_default();
        assert!(
            chain == peer_text || chain.ends_with(&format!(", {peer_text}")),
            "X-Forwarded-For {chain:?} does not end with the peer {peer_text}"
        );
    } else {
        assert_eq!(
            chain,
            peer_text.as_str(),
            "an untrusted X-Forwarded-For kept"
        );
        assert!(!forwarded.contains_key("forwarded"));
    }

    // Everything else passes through untouched, in order.
    let set_by_proxy = [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REAL_IP,
        &X_REQUEST_ID,
        &header::HOST,
    ];
    for name in original.keys() {
        let removed = HOP_BY_HOP.contains(&name)
            || listed.contains(name)
            || name.as_str().contains('_')
            || name == header::EXPECT
            || (!peer_trusted && name == "forwarded");
        if set_by_proxy.contains(&name) {
            continue;
        }
        if removed {
            assert!(!forwarded.contains_key(name), "{name} came back");
        } else {
            let before: Vec<_> = original.get_all(name).iter().collect();
            let after: Vec<_> = forwarded.get_all(name).iter().collect();
            assert_eq!(before, after, "{name} changed on the way upstream");
        }
    }
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 and RFC 2616 §13.5.1, and proxy credentials.
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
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Every header name listed in `Connection`, read from the raw bytes: a value with bytes that
/// are not visible ASCII still names what must not be forwarded.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|token| HeaderName::from_bytes(trim_ows(token)).ok())
        .collect()
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// `host_name` keeps only a lowercase host without port, of the allowed bytes.
fn check_host_name(value: &HeaderValue) {
    let Some(name) = host_name(value) else { return };
    let context = format!("host_name({value:?}) = {name:?}");
    assert!(!name.is_empty(), "{context}");
    assert_eq!(name, name.to_ascii_lowercase(), "{context}");
    assert!(!name.ends_with('.'), "{context}");
    if let Some(inside) = name.strip_prefix('[') {
        let inside = inside.strip_suffix(']');
        assert!(
            inside.is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()),
            "{context}"
        );
    } else {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
            "{context}"
        );
    }
    let again = HeaderValue::from_str(&name)
        .ok()
        .and_then(|v| host_name(&v));
    assert_eq!(again, Some(name.clone()), "{context}: not a fixed point");
}

/// The client's id is kept exactly when it is 1-128 of `[A-Za-z0-9._-]`; otherwise a new one.
fn check_request_id(headers: &HeaderMap, id: &HeaderValue) {
    let sane = |bytes: &[u8]| {
        (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    assert!(sane(id.as_bytes()), "request id {id:?}");
    if let Some(sent) = headers.get(&X_REQUEST_ID) {
        if sane(sent.as_bytes()) {
            assert_eq!(id, sent, "a sane client request id was replaced");
        } else {
            assert_ne!(id, sent, "an unsafe client request id was kept");
        }
    }
}

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
