//! The router's lookup (host + normalized path + method → route), the one routing step of every
//! request, in a table of 50 routes: ten sites with four prefixes each, three wildcard-host
//! routes and seven routes for any host. The table is sorted most specific first, so the cost
//! grows with the entries scanned before the match: a request for an exact host stops early,
//! one for the any-host routes (and every 404 and 405) scans the whole table. Entries are
//! ordered by host kind, then prefix length across hosts: `site3.example.com/` comes after
//! every longer exact-host prefix.
//!
//! `cargo bench --bench router`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use rampart::router::{Entry, HostPattern, Lookup, Router};

fn entry(host: &str, prefix: &str, methods: Option<&[Method]>) -> Entry<String> {
    Entry {
        host: HostPattern::parse(host).unwrap(),
        prefix: prefix.to_owned(),
        methods: methods.map(<[Method]>::to_vec),
        target: Arc::new(format!("{host}{prefix}")),
    }
}

/// 50 routes in a plausible file order (catch-alls first, as people write them: the router
/// sorts them anyway).
fn fifty_routes() -> Router<String> {
    let mut entries = vec![
        entry("", "/static/", None),
        entry("", "/media/", None),
        entry("", "/.well-known/acme-challenge/", Some(&[Method::GET])),
        entry("", "/api/v1/users/", None),
        entry("", "/api/v1/users/me/", Some(&[Method::GET, Method::PATCH])),
        entry("", "/login/", Some(&[Method::POST])),
        entry("", "/healthz", Some(&[Method::GET])),
        entry("*.example.org", "/", None),
        entry("*.example.org", "/api/", None),
        entry("*.eu.example.org", "/", None),
    ];
    for site in 0..10 {
        let host = format!("site{site}.example.com");
        entries.push(entry(&host, "/", None));
        entries.push(entry(&host, "/api/", None));
        entries.push(entry(&host, "/static/", Some(&[Method::GET])));
        entries.push(entry(&host, "/admin/", Some(&[Method::GET, Method::POST])));
    }
    assert_eq!(entries.len(), 50);
    Router::new(entries)
}

fn lookups(c: &mut Criterion) {
    let router = fifty_routes();
    let cases: [(&str, &str, &str, Method, &str); 6] = [
        (
            "hit, exact host",
            "site3.example.com",
            "/about/team",
            Method::GET,
            "site3.example.com/",
        ),
        (
            "hit, wildcard host",
            "shop.eu.example.org",
            "/cart",
            Method::GET,
            "*.eu.example.org/",
        ),
        (
            "hit, any host (scans every entry)",
            "localhost",
            "/static/app.css",
            Method::GET,
            "/static/",
        ),
        (
            "hit, deep prefix, any host",
            "localhost",
            "/api/v1/users/1234/orders/5678/items/90",
            Method::GET,
            "/api/v1/users/",
        ),
        ("404", "localhost", "/nothing/here", Method::GET, ""),
        (
            "405 (builds Allow)",
            "localhost",
            "/login/",
            Method::GET,
            "",
        ),
    ];
    for (name, host, path, method, expected) in cases {
        // Each case must take the path its name says, or the figure means something else.
        match router.lookup(host, path, &method) {
            Lookup::Found(route) => assert_eq!(route.as_str(), expected, "{name}"),
            Lookup::NotFound => assert!(name.starts_with("404"), "{name}"),
            Lookup::AddSlash => assert!(name.starts_with("301"), "{name}"),
            Lookup::MethodNotAllowed(allow) => {
                assert!(name.starts_with("405"), "{name}");
                assert_eq!(allow, "POST");
            }
        }
        c.bench_function(&format!("router, 50 routes: {name}"), |b| {
            b.iter(|| {
                // The result borrows the router; only whether it matched leaves the loop.
                let found = router.lookup(black_box(host), black_box(path), black_box(&method));
                matches!(found, Lookup::Found(_))
            })
        });
    }
}

criterion_group!(benches, lookups);
criterion_main!(benches);
