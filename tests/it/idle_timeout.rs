//! `client.idle_timeout`: idle HTTP/2 and HTTP/1.1 keep-alive connections are closed, a request
//! in flight is never cut by it, and the idle deadline runs again once the request is done.
//! Also `client.header_timeout` on an idle HTTP/1.1 keep-alive connection.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// idle_timeout 1s; header_timeout far above it so that only the idle deadline can close.
const IDLE_1S: &str = "[client]\nidle_timeout = \"1s\"\nheader_timeout = \"10s\"\n";

/// One upstream `app` (generous response_timeout) and a catch-all route, plus `extra`.
fn app_config(up: &TestUpstream, extra: &str) -> String {
    format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n\n{extra}\n",
        upstream_toml("app", &[up.server()], "response_timeout = \"10s\"")
    )
}

/// An HTTP/2 connection (TLS, ALPN h2) driven by hyper's client. The task ends when the
/// connection does and yields the moment it ended. Keep the `SendRequest`: dropping it makes
/// the client close the connection itself.
async fn h2_connect(
    proxy: &TestProxy,
) -> (
    SendRequest<Empty<Bytes>>,
    JoinHandle<(Instant, Result<(), hyper::Error>)>,
) {
    let tls = tls_connect(proxy.https_addr(), Some("localhost"), &[b"h2"], None)
        .await
        .expect("TLS handshake with ALPN h2");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the proxy must select h2"
    );
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let result = conn.await;
        (Instant::now(), result)
    });
    (sender, task)
}

async fn h2_get(
    sender: &mut SendRequest<Empty<Bytes>>,
    proxy: &TestProxy,
    path: &str,
) -> (http::response::Parts, Bytes) {
    let req = http::Request::builder()
        .uri(proxy.url(path))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
        .await
        .expect("HTTP/2 response within 20 s")
        .expect("HTTP/2 request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("HTTP/2 body").to_bytes();
    (parts, body)
}

/// Waits for the h2 connection to end; returns how long after `since` it ended.
async fn h2_closed_after(
    task: JoinHandle<(Instant, Result<(), hyper::Error>)>,
    since: Instant,
    limit: Duration,
    context: &str,
) -> Duration {
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => {
            let (ended, _result) = joined.expect("connection task");
            ended.saturating_duration_since(since)
        }
        Err(_) => panic!("{context}: the HTTP/2 connection is still open {limit:?} later"),
    }
}

/// Reads until the peer closes (EOF or error). Returns what was read and when the close came,
/// or panics when the connection is still open after `limit`.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
    context: &str,
) -> (Vec<u8>, Instant) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Instant::now()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "{context}: the connection is still open {limit:?} later (read {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// One keep-alive request over raw TLS/HTTP/1.1: its response must be `status`.
async fn h1_keep_alive_request<S>(stream: &mut S, path: &str, status: u16, context: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let (resp, rest) = read_one_response(stream, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("{context}: no response"));
    assert_eq!(resp.status, status, "{context}: {resp:?}");
    assert!(rest.is_empty(), "{context}: bytes after the response");
    assert!(
        !resp
            .header("connection")
            .map(|c| c.eq_ignore_ascii_case("close"))
            .unwrap_or(false),
        "{context}: the proxy closed the keep-alive connection itself"
    );
}

/// From now, the connection closes quietly, and not before half of `deadline` (1 s) passed.
async fn assert_closed_after_idle<S>(stream: &mut S, deadline: &str)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let idle_since = Instant::now();
    let (bytes, closed) = read_until_closed(stream, Duration::from_secs(4), "idle h1").await;
    assert_closed_quietly(&bytes, "idle h1");
    let after = closed.saturating_duration_since(idle_since);
    assert!(
        after >= Duration::from_millis(500),
        "closed after {after:?}, well before {deadline}"
    );
}

/// After an idle close of an HTTP/1.1 connection, nothing but a 408 may have been sent.
fn assert_closed_quietly(bytes: &[u8], context: &str) {
    if !bytes.is_empty() {
        let resp = one_response(bytes);
        assert_eq!(resp.status, 408, "{context}: unexpected bytes before close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(&up, IDLE_1S)).await;

    let (mut sender, task) = h2_connect(&proxy).await;
    let (parts, _) = h2_get(&mut sender, &proxy, "/first").await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_strict_headers(&parts.headers, "h2 response");

    let idle_since = Instant::now();
    let closed = h2_closed_after(task, idle_since, Duration::from_secs(4), "idle h2").await;
    assert!(
        closed >= Duration::from_millis(500),
        "the idle h2 connection was closed after {closed:?}, well before idle_timeout (1s)"
    );
    assert!(
        sender.is_closed() || sender.ready().await.is_err(),
        "the client still sees an open connection"
    );
    // The proxy itself is fine.
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_longer_than_idle_timeout_is_not_cut() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(&up, IDLE_1S)).await;

    let h1 = proxy.client_h1();
    let h2 = proxy.client_h2();
    let slow = |client: reqwest::Client, version: http::Version| {
        let url = proxy.url("/slow/2500");
        async move {
            let started = Instant::now();
            let resp = client
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{version:?}: the slow request failed: {e:?}"));
            assert_eq!(resp.version(), version);
            let status = resp.status();
            let body = resp.text().await.expect("the slow body");
            (status, body, started.elapsed())
        }
    };
    let ((s1, b1, t1), (s2, b2, t2)) = tokio::join!(
        slow(h1, http::Version::HTTP_11),
        slow(h2, http::Version::HTTP_2)
    );
    assert_eq!(
        (s1.as_u16(), b1.as_str()),
        (200, "slow\n"),
        "HTTP/1.1 after {t1:?}"
    );
    assert_eq!(
        (s2.as_u16(), b2.as_str()),
        (200, "slow\n"),
        "HTTP/2 after {t2:?}"
    );
    assert!(
        t1 >= Duration::from_millis(2400),
        "HTTP/1.1 answered after {t1:?}"
    );
    assert!(
        t2 >= Duration::from_millis(2400),
        "HTTP/2 answered after {t2:?}"
    );
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_deadline_runs_again_after_a_slow_request() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(&up, IDLE_1S)).await;

    let h2 = async {
        let (mut sender, task) = h2_connect(&proxy).await;
        let (parts, body) = h2_get(&mut sender, &proxy, "/slow/2500").await;
        assert_eq!(parts.status, 200, "h2 slow request");
        assert_eq!(&body[..], b"slow\n");
        let done = Instant::now();
        let closed = h2_closed_after(task, done, Duration::from_secs(4), "h2 after slow").await;
        drop(sender);
        closed
    };
    let h1 = async {
        let mut tls = proxy.tls().await;
        h1_keep_alive_request(&mut tls, "/slow/2500", 200, "h1 slow request").await;
        let done = Instant::now();
        let (bytes, closed) =
            read_until_closed(&mut tls, Duration::from_secs(4), "h1 after slow").await;
        assert_closed_quietly(&bytes, "h1 after slow");
        closed.saturating_duration_since(done)
    };
    let (h2_closed, h1_closed) = tokio::join!(h2, h1);
    for (name, closed) in [("h2", h2_closed), ("h1", h1_closed)] {
        assert!(
            closed >= Duration::from_millis(500),
            "{name}: closed {closed:?} after the slow response, well before idle_timeout (1s)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed_after_idle_timeout() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(&up, IDLE_1S)).await;

    let mut tls = proxy.tls().await;
    h1_keep_alive_request(&mut tls, "/one", 200, "first request").await;
    // The connection really is kept alive: a second request on it works.
    h1_keep_alive_request(&mut tls, "/two", 200, "second request").await;
    assert_closed_after_idle(&mut tls, "idle_timeout (1s)").await;
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed_after_header_timeout() {
    let up = TestUpstream::start().await;
    // idle_timeout far above: only header_timeout (the connection's head deadline, which
    // runs from the end of the last response: listener/io.rs) can close it.
    let proxy = TestProxy::start(&app_config(
        &up,
        "[client]\nheader_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    ))
    .await;

    let mut tls = proxy.tls().await;
    h1_keep_alive_request(&mut tls, "/one", 200, "first request").await;
    assert_closed_after_idle(&mut tls, "header_timeout (1s)").await;
    assert_eq!(up.count(), 1);
}

/// The head deadline runs only between responses: a response whose body pauses for longer than
/// `header_timeout` (a server sending events) is not cut, and the deadline starts again from its
/// last byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_timeout_does_not_cut_a_response_that_pauses() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(
        &up,
        "[client]\nheader_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    ))
    .await;

    let mut tls = proxy.tls().await;
    let started = Instant::now();
    // Three chunks 1.5 s apart: the body pauses longer than header_timeout, twice.
    tls.write_all(b"GET /stream/3/1500 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (resp, rest) = read_one_response(&mut tls, Duration::from_secs(20))
        .await
        .expect("the streamed response, whole");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, b"chunk-0\nchunk-1\nchunk-2\n", "{resp:?}");
    assert!(rest.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "the body paused as asked"
    );
    // The connection lives on: a next request, then the head deadline from its last byte.
    h1_keep_alive_request(&mut tls, "/after", 200, "request after the streamed one").await;
    assert_closed_after_idle(&mut tls, "header_timeout (1s)").await;
    assert_eq!(up.count(), 2);
}

/// hyper pings idle HTTP/2 connections (every 30 s it used to be), and the client's answer is
/// traffic: with an idle_timeout above the ping interval, an idle connection never closed. The
/// pings now come after idle_timeout. Needs an idle_timeout above 30 s, hence `#[ignore]`:
/// `cargo test --test idle_timeout -- --ignored` (about 32 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "waits 32 s"]
async fn keep_alive_pings_do_not_keep_an_idle_http2_connection_open() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(
        &up,
        "[client]\nidle_timeout = \"32s\"\nheader_timeout = \"60s\"\n",
    ))
    .await;

    let (mut sender, task) = h2_connect(&proxy).await;
    let (parts, _) = h2_get(&mut sender, &proxy, "/first").await;
    assert_eq!(parts.status, 200);
    let idle_since = Instant::now();
    let closed = h2_closed_after(task, idle_since, Duration::from_secs(40), "idle h2").await;
    assert!(
        closed >= Duration::from_secs(31),
        "closed after {closed:?}, well before idle_timeout (32s)"
    );
}
