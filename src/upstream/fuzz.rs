//! Fuzzing oracle for the request's header cleaning before it goes upstream
//! (`fuzz/fuzz_targets/headers.rs`): host validation, request ids, hop-by-hop removal and the
//! forwarding headers, in the pipeline's order. Input: a first line `<peer ip>[ trusted]`, then one
//! `name: value` header per line. Compiled only for cargo-fuzz (`--cfg fuzzing`) and for the
//! corpus replay test (`src/fuzz_corpus.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};
use ipnet::IpNet;

use crate::client_ip::client_ip;
use crate::header_names::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};
use crate::request_checks::{check_head, host_name, request_host, HeadFacts};
use crate::request_id::request_id;
use crate::upstream::headers::{
    ip_header_value, is_websocket_upgrade, set_forwarding_headers, strip_hop_by_hop,
    strip_underscored, ClientFacts,
};

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
    if check_head(&request, &HeadFacts::of(&request), 16 * 1024).is_err() {
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
    let peer_header = ip_header_value(peer);
    let ctx = ClientFacts {
        request_id: &id,
        peer,
        peer_header: &peer_header,
        peer_trusted,
        client_ip: client,
        host: &host.value,
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
pub(crate) fn check_host_name(value: &HeaderValue) {
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
