//! Per-route rate limits end to end: 429 with Retry-After and RateLimit-*, the headers on
//! allowed answers, keys by client IP (after `trusted_proxies`, IPv6 by /64) and by header, the
//! order against the IP rules, and the config checks.

use crate::common;

use common::*;
use reqwest::header::HeaderMap;

/// One upstream `app`, the route `login` under `/login/` with `rate_limit`, and a catch-all
/// route without one. `extra`: more config (e.g. `[client]`).
fn limited(up: &TestUpstream, rate_limit: &str, route_extra: &str, extra: &str) -> String {
    format!(
        "{extra}\n{}\n[[routes]]\nname = \"login\"\npath = \"/login/\"\nupstream = \"app\"\nrate_limit = {rate_limit}\n{route_extra}\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], "")
    )
}

fn number(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .one(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

fn assert_no_ratelimit_headers(headers: &HeaderMap, context: &str) {
    for name in [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ] {
        assert!(headers.one(name).is_none(), "{context}: {name}");
    }
}

/// Three allowed with their RateLimit-* headers, then 429 from the proxy; the upstream saw 3.
async fn burst_then_429(h2: bool) {
    let up = TestUpstream::start().await;
    let config = limited(&up, r#"{ rate = "5/min", burst = 3 }"#, "", "");
    let proxy = TestProxy::start(&config).await;
    let (client, version) = if h2 {
        (proxy.client_h2(), reqwest::Version::HTTP_2)
    } else {
        (proxy.client_h1(), reqwest::Version::HTTP_11)
    };

    // One request per 12 s, 3 at once: Reset is the time until the bucket is full again.
    for (i, remaining) in [2u64, 1, 0].into_iter().enumerate() {
        let resp = client.get(proxy.url("/login/")).send().await.unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200, "request {i} is within the burst");
        let h = resp.headers();
        assert_eq!(number(h, "ratelimit-limit"), 3);
        assert_eq!(number(h, "ratelimit-remaining"), remaining);
        let reset = number(h, "ratelimit-reset");
        let full = 12 * (3 - remaining);
        assert!(
            (full - 1..=full).contains(&reset),
            "request {i}: reset {reset}, expected about {full}"
        );
        assert!(h.one("retry-after").is_none());
        assert_strict_headers(h, "an allowed answer");
    }

    let resp = client.get(proxy.url("/login/")).send().await.unwrap();
    assert_eq!(resp.version(), version);
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    let retry_after = number(&h, "retry-after");
    assert!((1..=12).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(number(&h, "ratelimit-limit"), 3);
    assert_eq!(number(&h, "ratelimit-remaining"), 0);
    let reset = number(&h, "ratelimit-reset");
    assert!((35..=36).contains(&reset), "reset {reset}");
    let body = resp.text().await.unwrap();
    assert_proxy_error(&h, 429, &body, "429 Too Many Requests\n", "429");

    assert_eq!(
        up.count(),
        3,
        "the upstream saw exactly the allowed requests"
    );

    // The catch-all route has no rate_limit: no RateLimit headers, however often it is asked.
    for _ in 0..5 {
        let resp = client.get(proxy.url("/other")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_no_ratelimit_headers(resp.headers(), "a route without rate_limit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_then_429_over_http1() {
    burst_then_429(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_then_429_over_http2() {
    burst_then_429(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keys_have_their_own_quotas() {
    let up = TestUpstream::start().await;
    let config = limited(
        &up,
        r#"{ rate = "1/min", burst = 2, key = "header:X-Api-Key" }"#,
        "",
        "",
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    let send = |key: Option<&'static str>| {
        let mut request = client.get(proxy.url("/login/"));
        if let Some(key) = key {
            request = request.header("X-Api-Key", key);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };

    assert_eq!(send(Some("key-a")).await, 200);
    assert_eq!(send(Some("key-a")).await, 200);
    assert_eq!(send(Some("key-a")).await, 429, "key-a used its burst");
    assert_eq!(send(Some("key-b")).await, 200, "key-b has its own quota");
    assert_eq!(send(Some("key-b")).await, 200);
    assert_eq!(send(Some("key-b")).await, 429);
    // Without the header the request is counted by client IP: a third quota.
    assert_eq!(send(None).await, 200);
    assert_eq!(send(None).await, 200);
    assert_eq!(send(None).await, 429);
    assert_eq!(up.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_client_is_the_key_ipv6_by_64() {
    let up = TestUpstream::start().await;
    let config = limited(
        &up,
        r#"{ rate = "1/min", burst = 1 }"#,
        "",
        "[client]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    let send = |xff: &'static str| {
        let request = client
            .get(proxy.url("/login/"))
            .header("X-Forwarded-For", xff);
        async move { request.send().await.unwrap().status().as_u16() }
    };

    assert_eq!(send("203.0.113.1").await, 200);
    assert_eq!(send("203.0.113.1").await, 429);
    assert_eq!(
        send("203.0.113.2").await,
        200,
        "another client behind the proxy"
    );
    // The nearest untrusted hop is the client, whatever is written to its left.
    assert_eq!(send("198.51.100.9, 203.0.113.2").await, 429);

    assert_eq!(send("2001:db8:1:2::1").await, 200);
    assert_eq!(
        send("2001:db8:1:2:aaaa:bbbb:cccc:dddd").await,
        429,
        "same /64: one host rotating its addresses"
    );
    assert_eq!(send("2001:db8:1:3::1").await, 200, "another /64");
    assert_eq!(up.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_clients_forwarded_for_is_ignored() {
    let up = TestUpstream::start().await;
    let config = limited(&up, r#"{ rate = "1/min", burst = 1 }"#, "", "");
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    for (i, xff) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .into_iter()
        .enumerate()
    {
        let resp = client
            .get(proxy.url("/login/"))
            .header("X-Forwarded-For", xff)
            .send()
            .await
            .unwrap();
        let expected = if i == 0 { 200 } else { 429 };
        assert_eq!(
            resp.status(),
            expected,
            "a spoofed X-Forwarded-For ({xff}) is not a new client"
        );
    }
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_ip_rules_refuse_do_not_use_the_quota() {
    let up = TestUpstream::start().await;
    let config = limited(
        &up,
        r#"{ rate = "1/min", burst = 1, key = "header:X-Api-Key" }"#,
        "allow = [\"203.0.113.0/24\"]\n",
        "[client]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    let send = |xff: &'static str| {
        let request = client
            .get(proxy.url("/login/"))
            .header("X-Forwarded-For", xff)
            .header("X-Api-Key", "shared-key");
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.headers().clone())
        }
    };
    // Refused by the IP rules: 403, never 429, and no quota information.
    for _ in 0..3 {
        let (status, headers) = send("198.51.100.1").await;
        assert_eq!(status, 403);
        assert_no_ratelimit_headers(&headers, "403");
    }
    // The same key from an allowed address still has its whole burst.
    assert_eq!(send("203.0.113.5").await.0, 200);
    assert_eq!(send("203.0.113.5").await.0, 429);
    assert_eq!(up.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Config checks
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_keys_and_bursts_are_refused_with_their_line() {
    let errors = load_config_body(
        "[[routes]]\nupstream = \"app\"\nrate_limit = { rate = \"5/min\", key = \"cookie:session\" }\n\n[[routes]]\npath = \"/b/\"\nupstream = \"app\"\nrate_limit = { rate = \"5/min\", burst = 0 }\n",
    )
    .unwrap_err();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].starts_with("test.toml:13:")
            && lines[0].contains("routes[0].rate_limit.key")
            && lines[0].contains("header:NAME"),
        "{errors}"
    );
    assert!(
        lines[1].starts_with("test.toml:15:")
            && lines[1].contains("routes[1].rate_limit.burst")
            && lines[1].contains("at least 1"),
        "{errors}"
    );
}

#[test]
fn max_keys_is_bounded() {
    let errors = load_config_body("[rate_limit]\nmax_keys = 10\n").unwrap_err();
    assert!(errors.contains("rate_limit.max_keys"), "{errors}");
    assert!(load_config_body("[rate_limit]\nmax_keys = 1000\n").is_ok());
}

#[test]
fn redis_loads_without_redis_and_checks_its_url() {
    // Nothing listens on port 1: loading a config never connects.
    let warnings = load_config_body(
        "[rate_limit]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n\n[[routes]]\nupstream = \"app\"\nrate_limit = { rate = \"10/s\" }\n",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let errors = load_config_body(
        "[rate_limit]\nstore = \"redis\"\nredis_url = \"http://127.0.0.1:6379\"\n",
    )
    .unwrap_err();
    assert!(errors.contains("rate_limit.redis_url"), "{errors}");
    let errors = load_config_body("[rate_limit]\nstore = \"redis\"\n").unwrap_err();
    assert!(errors.contains("rate_limit.redis_url"), "{errors}");
    assert!(load_config_body("[rate_limit]\nstore = \"local\"\n")
        .unwrap()
        .is_empty());
}
