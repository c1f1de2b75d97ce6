//! SNI / Host confusion: absolute-form requests for foreign hosts, CONNECT, duplicate Host,
//! and a Host that belongs to another certificate than the one the connection was opened for.

use crate::common;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_for_a_foreign_host_is_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    for attack in [
        &b"GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..],
        &b"GET https://evil.example/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..],
        &b"GET https://localhost.evil.example/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..],
    ] {
        let resp = one_response(&proxy.raw_h1(attack).await);
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(attack));
        assert_proxy_error(&resp, 400, &resp.body_str(), "400 Bad Request\n", "absolute-form");
    }
    assert_eq!(
        up.count(),
        0,
        "a request for a foreign host reached the upstream"
    );
    proxy.assert_still_serves().await;
}

/// RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host; an
/// absolute-form target does not excuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_is_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    for attack in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        &b"GET http://evil.example/ HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
    ] {
        let resp = one_response(&proxy.raw_h1(attack).await);
        let seen: Vec<String> = up
            .requests()
            .iter()
            .map(|r| format!("{} host={:?}", r.uri, r.header("host")))
            .collect();
        assert_eq!(
            resp.status,
            400,
            "{}: the upstream saw {seen:?}",
            String::from_utf8_lossy(attack)
        );
    }
    assert_eq!(up.count(), 0);
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let raw = proxy
        .raw_h1(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")
        .await;
    let responses = parse_responses(&raw);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(responses[0].status, 400);
    assert_ne!(responses[0].status, 200, "CONNECT must never open a tunnel");
    assert_eq!(up.count(), 0);
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let resp = one_response(
        &proxy
            .raw_h1(b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await,
    );
    assert_eq!(resp.status, 400);
    assert_eq!(up.count(), 0);
    proxy.assert_still_serves().await;
}

async fn over_sni(proxy: &TestProxy, sni: &str, host: &str) -> RawResponse {
    let mut stream = tls_connect(proxy.https, Some(sni), &[b"http/1.1"], None)
        .await
        .unwrap();
    stream.write_all(&get_close("/sni", host)).await.unwrap();
    one_response(&read_until_close(&mut stream, RAW_READ_LIMIT).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_of_another_certificate_is_421() {
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .extra_cert(&["api.example.com"])
        .config(&simple_config(&up))
        .start()
        .await;

    let resp = over_sni(&proxy, "api.example.com", "localhost").await;
    assert_eq!(resp.status, 421, "SNI api.example.com, Host localhost");
    assert_proxy_error(
        &resp,
        421,
        &resp.body_str(),
        "421 Misdirected Request\n",
        "421",
    );

    let resp = over_sni(&proxy, "localhost", "api.example.com").await;
    assert_eq!(resp.status, 421, "SNI localhost, Host api.example.com");
    let resp = over_sni(&proxy, "localhost", "API.example.com:443").await;
    assert_eq!(resp.status, 421, "Host case and port do not hide the name");
    assert_eq!(up.count(), 0, "a misdirected request reached the upstream");

    // matching pairs work
    let resp = over_sni(&proxy, "api.example.com", "api.example.com").await;
    assert_eq!(resp.status, 200);
    let resp = over_sni(&proxy, "localhost", "localhost").await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.count(), 2);
    proxy.assert_still_serves().await;
}
