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
        path_and_query: None,
        request_id: &id,
        peer,
        peer_trusted,
        client_ip: client,
        host: &host.value,
        max_body: 0,
        body_timeout: std::time::Duration::from_secs(30),
        response_timeout: None,
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

/// HTTP/1 framing (`listener::framing`): the bytes as they are, and a well-formed pipeline
/// generated from them. The tracker never panics and its outcome does not depend on how the
/// bytes are split into reads; on the generated pipeline it finds exactly the ambiguous request
/// generated (or none), never losing track; and real hyper, serving either through the
/// [`FramingWatch`](crate::listener::framing::FramingWatch), dispatches the requests with the
/// bodies generated and the pipeline's verdicts land on the requests they are about.
pub fn h1_framing(data: &[u8]) {
    use crate::listener::framing::FramingTracker;

    let whole = framing_outcome(data, &[]);
    // Read sizes of 1 to 64 bytes, drawn from the input itself.
    let split: Vec<usize> = data.iter().map(|b| usize::from(b % 64) + 1).collect();
    assert_eq!(framing_outcome(data, &split), whole, "split into {split:?}");
    if data.len() <= 4096 {
        assert_eq!(
            framing_outcome(data, &vec![1; data.len()]),
            whole,
            "byte by byte"
        );
    }
    let served = h1::serve(data);
    h1::check_raw_verdicts(&served);

    let pipeline = h1::Pipeline::generate(data);
    let mut tracker = FramingTracker::new(h1::HYPER_BUFFER * 4);
    let finding = tracker.feed(&pipeline.bytes);
    let context = format!("{:?}", String::from_utf8_lossy(&pipeline.bytes));
    assert!(!tracker.is_lost(), "lost track of {context}");
    assert_eq!(finding, pipeline.finding(), "{context}");
    assert_eq!(tracker.heads(), pipeline.clean_heads(), "{context}");
    assert_eq!(
        framing_outcome(&pipeline.bytes, &split),
        (finding, tracker.heads(), false),
        "{context} split into {split:?}"
    );
    let served = h1::serve(&pipeline.bytes);
    assert_eq!(served, pipeline.expected_service(), "{context}");
}

/// (finding, heads, lost) after reads of `sizes` bytes, then the rest.
fn framing_outcome(
    data: &[u8],
    sizes: &[usize],
) -> (Option<crate::listener::framing::Finding>, u64, bool) {
    let mut tracker = crate::listener::framing::FramingTracker::new(h1::HYPER_BUFFER * 4);
    let mut reported = None;
    let mut rest = data;
    for &size in sizes {
        let (read, after) = rest.split_at(size.min(rest.len()));
        if let Some(finding) = tracker.feed(read) {
            assert!(reported.is_none(), "a finding reported twice");
            reported = Some(finding);
        }
        rest = after;
    }
    if let Some(finding) = tracker.feed(rest) {
        assert!(reported.is_none(), "a finding reported twice");
        reported = Some(finding);
    }
    assert_eq!(reported, tracker.finding(), "reported and kept differ");
    (tracker.finding(), tracker.heads(), tracker.is_lost())
}

/// The generator of well-formed pipelines and the real-hyper oracle for [`h1_framing`].
mod h1 {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::listener::framing::{Ambiguity, Finding, Framing, FramingWatch};

    /// hyper's `max_buf_size` in the oracle (its minimum is 8 KiB).
    pub const HYPER_BUFFER: usize = 16 * 1024;

    /// What the service saw of one request: the pipeline's verdict, whether hyper's request
    /// still has a `Transfer-Encoding` / `Content-Length` header, and the body it read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Served {
        pub verdict: Result<(), Ambiguity>,
        pub transfer_encoding: bool,
        pub content_length: bool,
        /// `None`: not read (refused), or the body failed.
        pub body: Option<Vec<u8>>,
    }

    /// Serves `bytes` (then EOF) with hyper over the framing watch; the service refuses what
    /// the pipeline would (400 and close, body unread) and reads every other body whole.
    pub fn serve(bytes: &[u8]) -> Vec<Served> {
        thread_local! {
            static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
        }
        RUNTIME.with(|runtime| runtime.block_on(serve_async(bytes)))
    }

    async fn serve_async(bytes: &[u8]) -> Vec<Served> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let framing = Arc::new(Framing::default());
        let io = FramingWatch::new(server, framing.clone(), HYPER_BUFFER);
        let served = Arc::new(Mutex::new(Vec::new()));
        let record = served.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let framing = framing.clone();
            let record = record.clone();
            async move {
                let verdict = framing.check_next_request();
                let headers = request.headers();
                let mut seen = Served {
                    verdict,
                    transfer_encoding: headers.contains_key(header::TRANSFER_ENCODING),
                    content_length: headers.contains_key(header::CONTENT_LENGTH),
                    body: None,
                };
                let mut response = Response::new(Full::new(Bytes::new()));
                if verdict.is_err() {
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                } else if let Ok(body) = request.into_body().collect().await {
                    seen.body = Some(body.to_bytes().to_vec());
                }
                if let Ok(mut record) = record.lock() {
                    record.push(seen);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // The client's EOF comes right after its bytes: answer what it sent first.
            .half_close(true)
            .max_buf_size(HYPER_BUFFER)
            .serve_connection(TokioIo::new(io), service);
        let write = async {
            let _ = client.write_all(bytes).await;
            let _ = client.shutdown().await;
            // Drain the responses, or hyper would stall once the pipe is full.
            let mut sink = [0u8; 8192];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let finished = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(connection, write)
        })
        .await;
        assert!(finished.is_ok(), "hyper did not finish the connection");
        let served = served.lock().map(|s| s.clone()).unwrap_or_default();
        served
    }

    /// On arbitrary bytes: the one refused request is the last one served, and hyper's request
    /// agrees with the verdict (it kept the `Transfer-Encoding` of a CL+TE head, and the one
    /// `Content-Length` of a repeated one).
    pub fn check_raw_verdicts(served: &[Served]) {
        for (index, request) in served.iter().enumerate() {
            let Err(ambiguity) = request.verdict else {
                continue;
            };
            assert_eq!(index + 1, served.len(), "requests served after a refusal");
            match ambiguity {
                Ambiguity::ContentLengthWithTransferEncoding => {
                    assert!(request.transfer_encoding, "CL+TE without TE: {served:?}")
                }
                Ambiguity::RepeatedContentLength => assert!(
                    request.content_length && !request.transfer_encoding,
                    "repeated CL on {served:?}"
                ),
                // hyper trimmed the tab: the request has the framing header it was in.
                Ambiguity::TabInFramingValue => assert!(
                    request.content_length || request.transfer_encoding,
                    "a tab in a framing value without a framing header: {served:?}"
                ),
            }
        }
    }

    /// Reads choices from the fuzz input; zeros once it runs out.
    struct Draw<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Draw<'a> {
        fn byte(&mut self) -> u8 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            b
        }

        fn below(&mut self, n: usize) -> usize {
            usize::from(self.byte()) % n
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }

        fn bytes(&mut self, max: usize) -> &'a [u8] {
            let len = self.below(max + 1);
            let start = self.pos.min(self.data.len());
            let end = (start + len).min(self.data.len());
            self.pos += len;
            &self.data[start..end]
        }
    }

    const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-Sync"];
    const FILLERS: &[&str] = &[
        "Accept: */*",
        "Content-Type: text/plain",
        "Cookie: a=b; Content-Length=5",
        "X-Content-Length: 5",
        "Content-Lengths: 7",
        "Content-Length-X: 1",
        "Transfer-Encodings: chunked",
        "X-Note: Transfer-Encoding: chunked",
        "X-Tabs:\tvalue\t",
        "TE: trailers",
        "Connection: keep-alive",
        "Connection: Upgrade\r\nUpgrade: websocket",
        "transfer_encoding: chunked",
        "X-Empty:",
        "X-Obs: caf\u{e9}",
    ];
    const LENGTH_NAMES: &[&str] = &["Content-Length", "content-length", "CONTENT-LENGTH"];
    const TRANSFER_NAMES: &[&str] = &[
        "Transfer-Encoding",
        "transfer-encoding",
        "TRANSFER-ENCODING",
    ];
    /// Around a framing value: without a tab (a tab there is an ambiguity of its own), and
    /// with one.
    const SEPARATORS: &[&str] = &[": ", ":", ":  "];
    const BLANKS: &[&str] = &["", "", " ", "  "];
    const TAB_SEPARATORS: &[&str] = &[":\t", ": \t", ":\t "];
    const TAB_BLANKS: &[&str] = &["\t", " \t", "\t "];
    /// After a chunk size, where a tab is whitespace to hyper.
    const CHUNK_BLANKS: &[&str] = &["", "", " ", "\t", " \t"];
    const ZEROS: &[&str] = &["", "", "0", "00"];
    const CHUNKED: &[&str] = &["chunked", "Chunked", "CHUNKED", "gzip, chunked"];
    const EXTENSIONS: &[&str] = &["", "", ";a=b", ";x", " ;q=\"v\"", "\t;n"];
    const TRAILERS: &[&str] = &[
        "X-Trailer: t",
        "Content-Length: 60",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding:\tchunked\t",
        "Checksum:abc",
    ];
    /// Text that reads as framing headers and a request, put into bodies.
    const HEADER_LIKE: &str =
        "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nGET /in-body HTTP/1.1\r\n\r\n";

    #[derive(Debug, Clone, Copy)]
    enum Tabs {
        No,
        Some,
        Maybe,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Framed {
        Empty,
        Length,
        Chunked,
        Ambiguous(Ambiguity),
    }

    /// One generated request, and what hyper makes of it.
    struct Generated {
        framed: Framed,
        /// hyper's request keeps a `Transfer-Encoding` / `Content-Length` header.
        transfer_encoding: bool,
        content_length: bool,
        body: Vec<u8>,
    }

    pub struct Pipeline {
        pub bytes: Vec<u8>,
        requests: Vec<Generated>,
        /// The ambiguous request, if one was generated.
        ambiguous: Option<(usize, Ambiguity)>,
    }

    impl Pipeline {
        pub fn generate(data: &[u8]) -> Self {
            let mut draw = Draw { data, pos: 0 };
            let count = 1 + draw.below(4);
            let ambiguous_at = draw.below(count * 3);
            let mut pipeline = Pipeline {
                bytes: Vec::new(),
                requests: Vec::new(),
                ambiguous: None,
            };
            for index in 0..count {
                let framed = if index == ambiguous_at {
                    let ambiguity = draw.pick(&[
                        Ambiguity::ContentLengthWithTransferEncoding,
                        Ambiguity::RepeatedContentLength,
                        Ambiguity::TabInFramingValue,
                    ]);
                    if pipeline.ambiguous.is_none() {
                        pipeline.ambiguous = Some((index, ambiguity));
                    }
                    Framed::Ambiguous(ambiguity)
                } else {
                    draw.pick(&[Framed::Empty, Framed::Length, Framed::Chunked])
                };
                let generated = pipeline.request(&mut draw, framed);
                pipeline.requests.push(generated);
            }
            pipeline
        }

        /// Appends one request.
        fn request(&mut self, draw: &mut Draw<'_>, framed: Framed) -> Generated {
            let eol = draw.pick(&["\r\n", "\r\n", "\n"]);
            let mut head = String::new();
            head.push_str(draw.pick(&["", "", "\r\n", "\n", "\r\n\n"]));
            let target: String = draw
                .bytes(12)
                .iter()
                .map(|b| char::from(b"abcxyz019-._~%/?=&"[usize::from(*b) % 18]))
                .collect();
            head.push_str(&format!("{} /{target} HTTP/1.1{eol}", draw.pick(METHODS)));
            let mut lines: Vec<String> = vec!["Host: localhost".into()];
            for _ in 0..draw.below(4) {
                let at = draw.below(lines.len() + 1);
                lines.insert(at, draw.pick(FILLERS).replace("\r\n", eol));
            }
            let mut body = draw.bytes(40).to_vec();
            if draw.below(4) == 0 {
                let at = draw.below(body.len() + 1);
                body.splice(at..at, HEADER_LIKE.bytes());
            }
            // The blanks around a framing value: `Tabs::No` none is a tab, `Tabs::Some` one is,
            // `Tabs::Maybe` either (where another ambiguity decides the verdict).
            let around = |draw: &mut Draw<'_>, tabs: Tabs| {
                let tabbed = match tabs {
                    Tabs::No => 0,
                    Tabs::Some => 1 + draw.below(3),
                    Tabs::Maybe => draw.below(4),
                };
                let separator = if tabbed & 1 != 0 {
                    TAB_SEPARATORS
                } else {
                    SEPARATORS
                };
                let blanks = if tabbed & 2 != 0 { TAB_BLANKS } else { BLANKS };
                (draw.pick(separator), draw.pick(blanks))
            };
            let length = |draw: &mut Draw<'_>, len: usize, tabs: Tabs| {
                let name = draw.pick(LENGTH_NAMES);
                let (separator, blanks) = around(draw, tabs);
                format!("{name}{separator}{}{len}{blanks}", draw.pick(ZEROS))
            };
            let transfer = |draw: &mut Draw<'_>, tabs: Tabs| {
                let name = draw.pick(TRANSFER_NAMES);
                let (separator, blanks) = around(draw, tabs);
                format!("{name}{separator}{}{blanks}", draw.pick(CHUNKED))
            };
            let mut framing = Vec::new();
            // hyper keeps Transfer-Encoding, and drops Content-Length next to it.
            let (transfer_encoding, content_length) = match framed {
                Framed::Empty => {
                    body.clear();
                    (false, false)
                }
                Framed::Length => {
                    framing.push(length(draw, body.len(), Tabs::No));
                    (false, true)
                }
                Framed::Chunked => {
                    framing.push(transfer(draw, Tabs::No));
                    (true, false)
                }
                Framed::Ambiguous(Ambiguity::ContentLengthWithTransferEncoding) => {
                    let decoy = draw.below(100);
                    framing.push(length(draw, decoy, Tabs::Maybe));
                    framing.push(transfer(draw, Tabs::Maybe));
                    (true, false)
                }
                Framed::Ambiguous(Ambiguity::RepeatedContentLength) => {
                    framing.push(length(draw, body.len(), Tabs::Maybe));
                    framing.push(length(draw, body.len(), Tabs::Maybe));
                    (false, true)
                }
                Framed::Ambiguous(Ambiguity::TabInFramingValue) => {
                    if draw.below(2) == 0 {
                        framing.push(length(draw, body.len(), Tabs::Some));
                        (false, true)
                    } else {
                        framing.push(transfer(draw, Tabs::Some));
                        (true, false)
                    }
                }
            };
            let chunked = transfer_encoding;
            for line in framing {
                let at = draw.below(lines.len() + 1);
                lines.insert(at, line);
            }
            for line in lines {
                head.push_str(&line);
                head.push_str(eol);
            }
            head.push_str(eol);
            self.bytes.extend_from_slice(head.as_bytes());
            if chunked {
                self.chunk(draw, &body);
            } else {
                self.bytes.extend_from_slice(&body);
            }
            Generated {
                framed,
                transfer_encoding,
                content_length,
                body,
            }
        }

        fn chunk(&mut self, draw: &mut Draw<'_>, body: &[u8]) {
            let mut rest = body;
            loop {
                let size = if rest.is_empty() {
                    0
                } else {
                    (1 + draw.below(16)).min(rest.len())
                };
                let digits = if draw.below(2) == 0 {
                    format!("{size:x}")
                } else {
                    format!("{size:X}")
                };
                let line = format!(
                    "{}{digits}{}{}\r\n",
                    draw.pick(ZEROS),
                    draw.pick(CHUNK_BLANKS),
                    draw.pick(EXTENSIONS)
                );
                self.bytes.extend_from_slice(line.as_bytes());
                if size == 0 {
                    break;
                }
                self.bytes.extend_from_slice(&rest[..size]);
                self.bytes.extend_from_slice(b"\r\n");
                rest = &rest[size..];
            }
            for _ in 0..draw.below(3) {
                self.bytes.extend_from_slice(draw.pick(TRAILERS).as_bytes());
                self.bytes.extend_from_slice(b"\r\n");
            }
            self.bytes.extend_from_slice(b"\r\n");
        }

        pub fn finding(&self) -> Option<Finding> {
            self.ambiguous.map(|(request, ambiguity)| Finding {
                request: request as u64,
                ambiguity,
            })
        }

        /// Heads the tracker counts: all, or those before the ambiguous one.
        pub fn clean_heads(&self) -> u64 {
            self.ambiguous
                .map_or(self.requests.len(), |(index, _)| index) as u64
        }

        /// What the service sees: every request up to the ambiguous one (refused, then closed).
        pub fn expected_service(&self) -> Vec<Served> {
            let served = self
                .ambiguous
                .map_or(self.requests.len(), |(index, _)| index + 1);
            self.requests[..served]
                .iter()
                .map(|request| {
                    let (verdict, body) = match request.framed {
                        Framed::Ambiguous(ambiguity) => (Err(ambiguity), None),
                        _ => (Ok(()), Some(request.body.clone())),
                    };
                    Served {
                        verdict,
                        transfer_encoding: request.transfer_encoding,
                        content_length: request.content_length,
                        body,
                    }
                })
                .collect()
        }
    }
}

/// The error-head rewriter (`listener/io.rs`, `ParseErrorHeads`) under any sequence of writes,
/// service calls, body ends, flushes and upgrades, drawn from `data`:
/// - every write is reported whole to hyper (its bookkeeping stays its own);
/// - while a response of the service is open, or after an upgrade, the bytes on the wire are
///   exactly the bytes written (a body holding hyper's error head passes byte for byte);
/// - outside a response, only a write that is hyper's error head to the letter is rewritten,
///   into the proxy's answer with the same status line.
pub fn error_heads(data: &[u8]) {
    use std::sync::{Arc, OnceLock};
    use tokio::io::AsyncWriteExt;

    use crate::listener::io::{ParseErrorHeads, RefusedHeads, ResponseGate};

    const HEAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 04:00:00 GMT\r\n\r\n";
    static SHARED: OnceLock<crate::Shared> = OnceLock::new();
    let shared = SHARED
        .get_or_init(|| {
            let text = "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = \"fuzz-missing.crt\"\nkey = \"fuzz-missing.key\"\nself_signed_if_missing = true\n\n[log]\naccess = false\n";
            let snapshot = crate::config::load_str_with(text, "fuzz.toml", MissingCert::InMemory)
                .unwrap_or_else(|errors| panic!("fuzz config: {errors:?}"));
            Arc::new(arc_swap::ArcSwap::from_pointee(snapshot))
        })
        .clone();
    let gate = Arc::new(ResponseGate::default());
    let refused = RefusedHeads {
        shared,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        gate: gate.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|err| panic!("runtime: {err}"));
    runtime.block_on(async move {
        let mut io = Box::pin(ParseErrorHeads::new(Vec::<u8>::new(), refused));
        let mut end = None;
        let (mut open, mut tunnel) = (false, false);
        let mut ops = data.iter();
        while let Some(&op) = ops.next() {
            let write: Vec<u8> = match op % 8 {
                0 => {
                    // hyper drops a response's body before it takes the next request.
                    drop(end.take());
                    end = Some(gate.response_begins());
                    open = true;
                    continue;
                }
                1 => {
                    end = None;
                    continue;
                }
                2 => {
                    let _ = io.flush().await;
                    if end.is_none() {
                        open = false;
                    }
                    continue;
                }
                // A `101` is a response of the service: only while one is open.
                3 => {
                    if let Some(end) = &end {
                        end.upgraded();
                        tunnel = true;
                    }
                    continue;
                }
                4 => HEAD.to_vec(),
                // A write holding the head with one byte more or less: never rewritten.
                5 => HEAD[..HEAD.len() - 1].to_vec(),
                _ => {
                    let len = usize::from(ops.next().copied().unwrap_or(0) % 32);
                    ops.by_ref().take(len).copied().collect()
                }
            };
            let before = io.as_ref().get_ref().get_ref().len();
            let written = std::future::poll_fn(|cx| {
                tokio::io::AsyncWrite::poll_write(io.as_mut(), cx, &write)
            })
            .await
            .unwrap_or_else(|err| panic!("write: {err}"));
            assert_eq!(written, write.len(), "a write reported short");
            let out = &io.as_ref().get_ref().get_ref()[before..];
            if open || tunnel || write != HEAD {
                assert_eq!(
                    out,
                    &write[..],
                    "bytes changed (open {open}, tunnel {tunnel})"
                );
            } else {
                assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
                assert!(
                    out.windows(14).any(|w| w == b"x-request-id: "),
                    "no request id"
                );
            }
        }
        drop(end);
    });
}
