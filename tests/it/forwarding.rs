//! Forwarding: proxy headers, request ids, hop-by-hop headers, streaming bodies, HTTP/2,
//! unix sockets, WebSocket, balancing and retries, bad upstream framing.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_are_set_and_a_spoofed_xff_is_replaced() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let resp = proxy
        .client_h1()
        .get(proxy.url("/whoami?x=1"))
        .header("Host", "app.example.com")
        .header("X-Forwarded-For", "1.2.3.4")
        .header("X-Real-IP", "1.2.3.4")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(got.uri, "/whoami?x=1");
    assert_eq!(got.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(got.header_all("x-real-ip"), vec!["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(got.header_all("x-forwarded-host"), vec!["app.example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xff_is_appended_when_the_peer_is_a_trusted_proxy() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;

    let resp = proxy
        .client_h1()
        .get(proxy.url("/"))
        .header("X-Forwarded-For", "1.2.3.4")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(
        got.header_all("x-forwarded-for"),
        vec!["1.2.3.4, 127.0.0.1"]
    );
    assert_eq!(
        got.header_all("x-real-ip"),
        vec!["1.2.3.4"],
        "client IP from the trusted XFF"
    );

    // Without a client XFF the peer is the client.
    proxy.client_h1().get(proxy.url("/")).send().await.unwrap();
    let got = up.last();
    assert_eq!(got.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(got.header_all("x-real-ip"), vec!["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_when_valid_and_generated_otherwise() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let client = proxy.client_h1();

    // none sent: generated, the same in both directions
    let resp = client.get(proxy.url("/")).send().await.unwrap();
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(is_generated_request_id(&id), "generated id {id:?}");
    assert_eq!(up.last().header_all("x-request-id"), vec![id.clone()]);

    // two generated ids differ
    let resp = client.get(proxy.url("/")).send().await.unwrap();
    let id2 = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(id, id2);

    let max = "a".repeat(128);
    for valid in ["abc-123.DEF_x", "1", max.as_str()] {
        let resp = client
            .get(proxy.url("/"))
            .header("X-Request-Id", valid)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers().get_all("x-request-id").iter().count(), 1);
        assert_eq!(resp.headers().get("x-request-id").unwrap(), valid);
        assert_eq!(
            up.last().header_all("x-request-id"),
            vec![valid.to_string()]
        );
    }

    let too_long = "a".repeat(129);
    for invalid in [
        "bad id!",
        "../../etc/passwd",
        "<script>",
        "a,b",
        too_long.as_str(),
        "",
    ] {
        let resp = client
            .get(proxy.url("/"))
            .header("X-Request-Id", invalid)
            .send()
            .await
            .unwrap();
        let got = resp
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            is_generated_request_id(&got),
            "{invalid:?} must be replaced, got {got:?}"
        );
        assert_eq!(
            up.last().header_all("x-request-id"),
            vec![got],
            "{invalid:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_towards_the_upstream() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let request = "GET /hop HTTP/1.1\r\nHost: localhost\r\n\
        Connection: X-Custom, close\r\nX-Custom: secret\r\nKeep-Alive: timeout=5\r\n\
        Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\nUpgrade: h2c\r\nX-Normal: yes\r\n\r\n";
    let resp = one_response(&proxy.raw_h1(request.as_bytes()).await);
    assert_eq!(resp.status, 200);
    let got = up.last();
    for name in [
        "x-custom",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "proxy-authorization",
        "upgrade",
        "transfer-encoding",
    ] {
        assert_eq!(
            got.header_all(name),
            Vec::<String>::new(),
            "{name} reached the upstream"
        );
    }
    for value in got.header_all("connection") {
        assert!(
            value.eq_ignore_ascii_case("keep-alive"),
            "Connection reached the upstream: {value:?}"
        );
    }
    assert_eq!(got.header_all("x-normal"), vec!["yes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_towards_the_client() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[headers]\npreset = \"off\"\n").await;

    let resp = one_response(&proxy.raw_h1(&get_close("/headers", "localhost")).await);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-secret"),
        None,
        "header named in the upstream's Connection"
    );
    assert_eq!(resp.header("keep-alive"), None);
    for value in resp.header_all("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-secret"),
            "Connection: {value}"
        );
    }
    assert_eq!(resp.header("x-app"), Some("kept"));
    assert_eq!(resp.body_str(), "headers\n");

    let resp = proxy
        .client_h2()
        .get(proxy.url("/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        resp.status(),
        200,
        "HTTP/2 forbids connection-specific headers"
    );
    assert!(resp.headers().get("x-secret").is_none());
    assert!(resp.headers().get("keep-alive").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_upload_and_download_over_h1_and_h2() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let size = 10 * 1024 * 1024;
    let data = pattern(size);

    for (client, version) in [
        (proxy.client_h1(), reqwest::Version::HTTP_11),
        (proxy.client_h2(), reqwest::Version::HTTP_2),
    ] {
        let resp = client
            .post(proxy.url("/upload"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        let echo: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(echo["body_len"], size, "{version:?}");
        let got = up.last();
        assert!(got.body_complete);
        assert!(got.body == data, "{version:?}: uploaded bytes differ");

        let resp = client
            .get(proxy.url(&format!("/big/{size}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.len(), size, "{version:?}");
        assert!(body[..] == data[..], "{version:?}: downloaded bytes differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_arrives_before_the_upstream_finishes() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    for client in [proxy.client_h1(), proxy.client_h2()] {
        let started = Instant::now();
        let mut resp = client.get(proxy.url("/stream/3/700")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let first = resp.chunk().await.unwrap().expect("a first chunk");
        let first_at = started.elapsed();
        assert_eq!(&first[..], b"chunk-0\n");
        assert!(
            first_at < Duration::from_millis(600),
            "first chunk after {first_at:?}: the response was buffered"
        );
        let mut rest = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, b"chunk-1\nchunk-2\n");
        assert!(started.elapsed() >= Duration::from_millis(1300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_reaches_the_upstream_before_the_client_finishes() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let mut stream = proxy.tls().await;
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let arrived = up
        .wait_for(Duration::from_secs(2), |r| {
            r.len() == 1 && r[0].body == b"hello"
        })
        .await;
    assert!(
        arrived,
        "the first chunk did not reach the upstream while the client was sending"
    );
    assert!(!up.last().body_complete);

    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let (resp, _) = read_one_response(&mut stream, RAW_READ_LIMIT)
        .await
        .expect("a response");
    assert_eq!(resp.status, 200);
    let got = up.last();
    assert!(got.body_complete);
    assert_eq!(got.body, b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_forwarded_as_http11() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let port = proxy.https.port();

    let resp = proxy
        .client_h2()
        .post(proxy.url("/h2/path?x=1"))
        .header("X-Test", "h2")
        .body("h2 body")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let got = up.last();
    assert_eq!(got.version, http::Version::HTTP_11);
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, "/h2/path?x=1");
    assert_eq!(got.body, b"h2 body");
    assert_eq!(got.header("x-test").as_deref(), Some("h2"));
    assert!(
        got.header("host").is_some(),
        "HTTP/1.1 upstream request without Host"
    );
    let xfh = got.header("x-forwarded-host").unwrap_or_default();
    assert!(
        xfh == "localhost" || xfh == format!("localhost:{port}"),
        "X-Forwarded-Host {xfh:?}"
    );
    assert_eq!(got.header_all("x-forwarded-proto"), vec!["https"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let up = TestUpstream::start_unix(&dir.path().join("app.sock")).await;
    let proxy = TestProxy::simple(&up, "").await;

    let resp = proxy
        .client_h1()
        .post(proxy.url("/over/unix?y=2"))
        .body("via unix")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(got.uri, "/over/unix?y=2");
    assert_eq!(got.body, b"via unix");
    assert_eq!(got.header_all("x-forwarded-proto"), vec!["https"]);

    let resp = proxy
        .client_h2()
        .get(proxy.url("/again"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 2);
}

const WS_REQUEST: &str = "Host: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let mut stream = proxy.tls().await;
    stream
        .write_all(format!("GET /ws HTTP/1.1\r\n{WS_REQUEST}").as_bytes())
        .await
        .unwrap();
    let (resp, leftover) = read_one_response(&mut stream, RAW_READ_LIMIT)
        .await
        .expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(
        resp.header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert!(leftover.is_empty());
    let got = up.last();
    assert_eq!(got.header("upgrade").as_deref(), Some("websocket"));
    assert!(got
        .header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("upgrade"));
    assert_eq!(
        got.header("sec-websocket-key").as_deref(),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    for message in [
        &b"hello through the tunnel"[..],
        &[0x81, 0x02, 0xff, 0x00][..],
    ] {
        stream.write_all(message).await.unwrap();
        stream.flush().await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut echoed))
            .await
            .expect("the echo did not come back through the tunnel")
            .unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_opens_no_tunnel() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let mut stream = proxy.tls().await;
    stream
        .write_all(format!("GET /ws-refuse HTTP/1.1\r\n{WS_REQUEST}").as_bytes())
        .await
        .unwrap();
    let (resp, _) = read_one_response(&mut stream, RAW_READ_LIMIT)
        .await
        .expect("an answer to the upgrade");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.body_str(), "no websocket here\n");

    // Whatever follows is HTTP to the proxy (or the connection is closed), never raw bytes
    // handed to the upstream.
    let _ = stream
        .write_all(b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let _ = read_until_close(&mut stream, Duration::from_secs(2)).await;
    for r in up.requests().iter().filter(|r| r.path == "/after") {
        assert_eq!(
            r.header("x-forwarded-proto").as_deref(),
            Some("https"),
            "bytes after a refused upgrade were tunnelled to the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_servers() {
    let a = TestUpstream::start().await;
    let b = TestUpstream::start().await;
    let c = TestUpstream::start().await;
    let config = format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml(
            "app",
            &[a.server(), b.server(), c.server()],
            "balance = \"round_robin\""
        )
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    for _ in 0..6 {
        assert_eq!(
            client.get(proxy.url("/rr")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!((a.count(), b.count(), c.count()), (2, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_retried_on_the_next_server_when_the_connect_fails() {
    let live = TestUpstream::start().await;
    let dead = dead_addr().await;
    let config = format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml(
            "app",
            &[format!("http://{dead}"), live.server()],
            "retries = 1"
        )
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    for i in 0..4 {
        let resp = client
            .get(proxy.url(&format!("/r{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "GET #{i} must be retried on the live server"
        );
    }
    assert_eq!(live.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_not_retried() {
    let live = TestUpstream::start().await;
    let dead = dead_addr().await;
    let config = format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml(
            "app",
            &[format!("http://{dead}"), live.server()],
            "retries = 1"
        )
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    let mut statuses = Vec::new();
    for i in 0..2 {
        let resp = client
            .post(proxy.url(&format!("/p{i}")))
            .body("x")
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        vec![200, 502],
        "one POST goes to the dead server and is not retried"
    );
    assert_eq!(live.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_with_content_length_and_chunked_is_cleaned_and_not_reused() {
    let raw = RawUpstream::start_with(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
        false,
    )
    .await;
    let config = format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[raw.server()], "")
    );
    let proxy = TestProxy::start(&config).await;

    let mut stream = proxy.tls().await;
    for i in 0..2 {
        stream
            .write_all(format!("GET /cl-te-{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (resp, leftover) = read_one_response(&mut stream, RAW_READ_LIMIT)
            .await
            .unwrap_or_else(|| panic!("no response #{i}"));
        assert_eq!(resp.status, 200, "#{i}");
        assert_eq!(resp.body_str(), "hello", "#{i}");
        assert!(
            !(resp.header("content-length").is_some()
                && resp.header("transfer-encoding").is_some()),
            "#{i}: both Content-Length and Transfer-Encoding reached the client: {resp:?}"
        );
        assert!(
            leftover.is_empty(),
            "#{i}: extra bytes after the response: {leftover:?}"
        );
    }
    assert_eq!(raw.heads().len(), 2);
    assert_eq!(
        raw.connections(),
        2,
        "an upstream connection with ambiguous framing must not be reused"
    );
}
