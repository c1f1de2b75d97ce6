//! The plain-http listener: every request is redirected to https.

use crate::common;

use common::*;

fn request(method: &str, target: &str, host: Option<&str>) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\n");
    if let Some(host) = host {
        text.push_str(&format!("Host: {host}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_with_308_keeping_path_and_query_and_dropping_the_port() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let resp = one_response(
        &proxy
            .raw_http(&request("GET", "/a/b?x=1&y=2", Some("example.com:8080")))
            .await,
    );
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some("https://example.com/a/b?x=1&y=2")
    );

    let resp = one_response(
        &proxy
            .raw_http(&request("GET", "/", Some("example.com")))
            .await,
    );
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some("https://example.com/"));

    // POST is redirected too (308 keeps the method), and nothing reaches the upstream.
    let resp = one_response(
        &proxy
            .raw_http(b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
            .await,
    );
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some("https://example.com/form"));
    assert_eq!(up.count(), 0, "the http listener never proxies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_gets_the_redirect() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let port = proxy.http_addr().port();
    let resp = client
        .get(format!("http://127.0.0.1:{port}/p?q=1"))
        .header("Host", "shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "https://shop.example.com/p?q=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_301_and_public_port_are_configurable() {
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .listen("http_redirect_status = 301\nhttps_port_public = 8443")
        .config(&simple_config(&up))
        .start()
        .await;

    let resp = one_response(
        &proxy
            .raw_http(&request("GET", "/a?b=c", Some("example.com:8080")))
            .await,
    );
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("location"),
        Some("https://example.com:8443/a?b=c")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_port_443_is_not_written() {
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .listen("https_port_public = 443")
        .config(&simple_config(&up))
        .start()
        .await;
    let resp = one_response(
        &proxy
            .raw_http(&request("GET", "/z", Some("example.com:80")))
            .await,
    );
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some("https://example.com/z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_literal_host_keeps_its_brackets() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let resp = one_response(
        &proxy
            .raw_http(&request("GET", "/v6", Some("[::1]:8080")))
            .await,
    );
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some("https://[::1]/v6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_host_is_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    // HTTP/1.1 without Host
    let resp = one_response(&proxy.raw_http(&request("GET", "/", None)).await);
    assert_eq!(resp.status, 400, "HTTP/1.1 without Host");
    assert_eq!(resp.header("location"), None);

    // HTTP/1.0 without Host: nothing to redirect to
    let resp = one_response(&proxy.raw_http(b"GET / HTTP/1.0\r\n\r\n").await);
    assert_eq!(resp.status, 400, "HTTP/1.0 without Host");
    assert_eq!(resp.header("location"), None);

    for host in [
        "evil.com/path",
        "user@evil.com",
        "evil.com?x",
        "evil.com#frag",
        "exa mple.com",
        "evil.com\\x",
        "",
        "example.com:notaport",
    ] {
        let resp = one_response(&proxy.raw_http(&request("GET", "/", Some(host))).await);
        assert_eq!(resp.status, 400, "Host {host:?}");
        assert_eq!(resp.header("location"), None, "Host {host:?}");
    }
}

/// RFC 9112 §3.2: more than one Host is a 400, on the plain listener as on the TLS one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let resp = one_response(
        &proxy
            .raw_http(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n")
            .await,
    );
    assert_eq!(resp.status, 400, "two Host headers");
    assert_eq!(resp.header("location"), None, "two Host headers");
}
