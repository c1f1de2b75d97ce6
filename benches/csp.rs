//! The cost of `{nonce}` per response: a fresh nonce (18 bytes from the OS's random source,
//! base64) and the strict preset's headers applied with a nonce-based CSP filled in, against
//! the same policy without the placeholder. `cargo bench --bench csp`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue};
use rampart::policy::csp::Nonce;
use rampart::policy::headers::{HeaderPolicyBuilder, Preset};

const NONCE_CSP: &str =
    "script-src 'nonce-{nonce}' 'strict-dynamic'; object-src 'none'; base-uri 'none'";
const FIXED_CSP: &str = "script-src 'self'; object-src 'none'; base-uri 'none'";

fn policy(csp: &str, reports: bool) -> rampart::policy::headers::HeaderPolicy {
    let mut builder = HeaderPolicyBuilder::from_preset(Preset::Strict);
    builder.csp_reports(reports);
    builder
        .set("content-security-policy", csp)
        .expect("a valid policy");
    builder.build()
}

fn response() -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    map.insert("content-length", HeaderValue::from_static("5120"));
    map.insert("server", HeaderValue::from_static("gunicorn"));
    map
}

fn nonce(c: &mut Criterion) {
    c.bench_function("csp: nonce generation", |b| {
        b.iter(|| black_box(Nonce::generate()))
    });

    for (name, csp, reports) in [
        ("csp: strict headers, fixed CSP", FIXED_CSP, false),
        (
            "csp: strict headers, nonce generated + CSP formatted",
            NONCE_CSP,
            false,
        ),
        (
            "csp: strict headers, nonce + CSP with report-uri/report-to",
            NONCE_CSP,
            true,
        ),
    ] {
        let policy = policy(csp, reports);
        c.bench_function(name, |b| {
            b.iter_batched_ref(
                response,
                |headers| {
                    let nonce = policy.needs_nonce().then(Nonce::generate);
                    policy.apply_with_nonce(headers, nonce.as_ref());
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, nonce);
criterion_main!(benches);
