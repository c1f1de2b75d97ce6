//! The header work of every proxied request, as the pipeline does it:
//!
//! - response: the strict `HeaderPolicy` applied to what a typical app (Django behind
//!   Gunicorn) answers: strip `Server` and `X-Powered-By`, set the seven security headers
//!   (one of which, `X-Frame-Options`, replaces the app's own);
//! - request: `strip_hop_by_hop`, `strip_underscored`, then `set_forwarding_headers` on what a
//!   browser sends (a `Connection` header naming another, cookies, the usual `Accept-*`), as
//!   `forward` does before the request goes upstream;
//! - a new request id (a random UUID as 32 hex digits), made for every request that brings none.
//!
//! The header map is cloned outside the timed part (`iter_batched`), so only the rewriting is
//! measured. `cargo bench --bench headers`

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use rampart::policy::headers::{HeaderPolicyBuilder, Preset};
use rampart::request_id::new_request_id;
use rampart::upstream::headers::{ip_header_value, rewrite_request, ClientFacts};

fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

/// What Gunicorn + Django send with a page.
fn app_response() -> HeaderMap {
    header_map(&[
        ("server", "gunicorn"),
        ("date", "Sat, 01 Mar 2025 12:00:00 GMT"),
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "5120"),
        ("x-frame-options", "SAMEORIGIN"),
        ("vary", "Cookie, Accept-Language"),
        ("content-language", "en"),
        ("x-powered-by", "Django"),
        ("cache-control", "private, max-age=0"),
        (
            "set-cookie",
            "sessionid=abc123; HttpOnly; Path=/; SameSite=Lax; Secure",
        ),
    ])
}

/// What a browser sends for a page (over HTTP/1.1: with Connection and Keep-Alive).
fn browser_request() -> HeaderMap {
    header_map(&[
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://www.example.com/"),
        ("cookie", "csrftoken=Zm9vYmFy; sessionid=abc123"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("connection", "keep-alive, x-trace"),
        ("keep-alive", "timeout=5"),
        ("x-trace", "1"),
    ])
}

fn response_policy(c: &mut Criterion) {
    let policy = HeaderPolicyBuilder::from_preset(Preset::Strict).build();
    let template = app_response();
    let mut check = template.clone();
    policy.apply(&mut check);
    assert!(check.get("server").is_none() && check.get("x-powered-by").is_none());
    assert_eq!(check["x-frame-options"], "DENY");
    assert_eq!(check.len(), template.len() - 2 + 6);
    c.bench_function("headers: strict policy on an app's response", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| policy.apply(black_box(headers)),
            BatchSize::SmallInput,
        )
    });
}

fn request_rewrite(c: &mut Criterion) {
    let template = browser_request();
    let request_id = new_request_id();
    let host = HeaderValue::from_static("www.example.com");
    let peer = IpAddr::from([203, 0, 113, 7]);
    // Formatted once per connection by the listener.
    let peer_header = ip_header_value(peer);
    let ctx = ClientFacts {
        request_id: &request_id,
        peer,
        peer_header: &peer_header,
        peer_trusted: false,
        client_ip: IpAddr::from([203, 0, 113, 7]),
        host: &host,
    };
    let rewrite = |headers: &mut HeaderMap| rewrite_request(headers, &ctx, None);
    let mut check = template.clone();
    rewrite(&mut check);
    for gone in ["connection", "keep-alive", "x-trace"] {
        assert!(check.get(gone).is_none(), "{gone}");
    }
    assert_eq!(check["x-forwarded-for"], "203.0.113.7");
    assert_eq!(check["x-request-id"], request_id);
    c.bench_function("headers: forwarding rewrite of a browser's request", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| rewrite(black_box(headers)),
            BatchSize::SmallInput,
        )
    });
}

fn request_id(c: &mut Criterion) {
    c.bench_function("headers: new request id", |b| b.iter(new_request_id));
}

criterion_group!(benches, response_policy, request_rewrite, request_id);
criterion_main!(benches);
