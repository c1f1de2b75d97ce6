//! Slow request bodies and slow readers: `client.body_timeout` and `client.send_timeout`.
//!
//! A body that stalls gets 408 (HTTP/1.1 chunked or with a length, and HTTP/2) and its upstream
//! request is aborted, never complete; a slow but steady upload is served. A reader that stops
//! reading is closed (HTTP/1.1, and the plain-http listener) or has its stream reset (HTTP/2,
//! a window kept shut), and the upstream connection goes with it; a slow but steady reader gets
//! its whole response. Both keys apply to new requests after a reload.
//!
//! Timings are bounds only: never before the timeout, within the timeout plus a generous margin.

use crate::common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

const TIMEOUT: Duration = Duration::from_secs(1);
/// A loaded 2-core machine running the other tests is slow; the bounds stay generous.
const MARGIN: Duration = Duration::from_secs(3);
/// Both timeouts at 1 s; idle and header timeouts far above, so only ours can close.
const CLIENT: &str = "[client]\nbody_timeout = \"1s\"\nsend_timeout = \"1s\"\n\
                      idle_timeout = \"30s\"\nheader_timeout = \"30s\"\n";

/// `upstream` behind a catch-all route, with `client` as the `[client]` table.
fn config(upstream: &str, client: &str) -> String {
    format!(
        "{client}\n{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[upstream.to_string()], "response_timeout = \"20s\"")
    )
}

// ---------------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------------

/// What a [`BodySink`] connection received before it ended.
#[derive(Debug)]
struct Sunk {
    head: String,
    /// Every byte after the head, exactly as it arrived.
    body: Vec<u8>,
}

/// A raw upstream that reads a request head, then everything after it until the connection
/// ends, and never answers: whatever body it got, it got before the proxy gave up on it.
struct BodySink {
    addr: String,
    ended: mpsc::UnboundedReceiver<Sunk>,
    task: JoinHandle<()>,
}

impl Drop for BodySink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BodySink {
    async fn start() -> BodySink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (tx, ended) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = find(&got, b"\r\n\r\n").map_or(got.len(), |p| p + 4);
                    let _ = tx.send(Sunk {
                        head: String::from_utf8_lossy(&got[..end]).to_ascii_lowercase(),
                        body: got[end..].to_vec(),
                    });
                });
            }
        });
        BodySink { addr, ended, task }
    }

    /// The next connection that ended; panics if none ends within `limit`.
    async fn next_ended(&mut self, limit: Duration) -> Sunk {
        tokio::time::timeout(limit, self.ended.recv())
            .await
            .unwrap_or_else(|_| panic!("the upstream connection is still open {limit:?} later"))
            .expect("the sink runs")
    }
}

/// How one [`Downloads`] response ended.
#[derive(Debug)]
struct Served {
    at: Instant,
    /// Body bytes written into the connection.
    written: u64,
    /// The whole body was written; false: the proxy closed the connection first.
    complete: bool,
}

/// A raw HTTP/1.1 upstream: `GET /big/{n}` answers `n` bytes of [`pattern`], written 64 KiB at
/// a time; keep-alive. Reports how each response ended.
struct Downloads {
    addr: String,
    served: mpsc::UnboundedReceiver<Served>,
    task: JoinHandle<()>,
}

impl Drop for Downloads {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const CHUNK: usize = 64 * 1024;

impl Downloads {
    async fn start() -> Downloads {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (tx, served) = mpsc::unbounded_channel();
        // 64 KiB of the pattern from any offset: a window into one slightly longer buffer.
        let source: Arc<Vec<u8>> = Arc::new(pattern(CHUNK + 251));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_downloads(stream, tx.clone(), source.clone()));
            }
        });
        Downloads { addr, served, task }
    }

    async fn next_served(&mut self, limit: Duration) -> Served {
        tokio::time::timeout(limit, self.served.recv())
            .await
            .unwrap_or_else(|_| panic!("no response ended within {limit:?}"))
            .expect("the upstream runs")
    }
}

async fn serve_downloads(
    mut stream: TcpStream,
    served: mpsc::UnboundedSender<Served>,
    source: Arc<Vec<u8>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let length: u64 = head
            .split_whitespace()
            .nth(1)
            .and_then(|target| target.strip_prefix("/big/"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let response_head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
             content-length: {length}\r\n\r\n"
        );
        if stream.write_all(response_head.as_bytes()).await.is_err() {
            return;
        }
        let mut written = 0u64;
        while written < length {
            let offset = (written % 251) as usize;
            let n = (length - written).min(CHUNK as u64) as usize;
            if stream.write_all(&source[offset..offset + n]).await.is_err() {
                let _ = served.send(Served {
                    at: Instant::now(),
                    written,
                    complete: false,
                });
                return;
            }
            written += n as u64;
        }
        let _ = served.send(Served {
            at: Instant::now(),
            written,
            complete: true,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Reads until the peer closes (EOF or reset); panics if it is still open after `limit`.
/// Returns what was read and when the close came.
async fn read_to_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
    context: &str,
) -> (Vec<u8>, Instant) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Instant::now()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "{context}: the connection is still open {limit:?} later ({} bytes read)",
                out.len()
            ),
        }
    }
}

/// Reads exactly `n` bytes (or panics).
async fn read_exactly<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut out))
        .await
        .expect("bytes within 10 s")
        .expect("the connection is open");
    out
}

/// TLS (ALPN http/1.1 or h2) over a socket whose receive buffer is `recv_buffer` bytes, so the
/// proxy's writes block as soon as the client stops reading.
async fn tls_small_window(
    proxy: &TestProxy,
    alpn: &[u8],
    recv_buffer: u32,
) -> TlsStream<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    let tcp = socket.connect(proxy.https_addr()).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            proxy.cert_der.clone(),
        ))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// A request body fed by the test, frame by frame; it waits (stalls) while nothing is sent.
struct FedBody(mpsc::Receiver<Bytes>);

impl Body for FedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|data| data.map(|d| Ok(Frame::data(d))))
    }
}

/// An HTTP/2 connection driven by hyper's client, with a 64 KiB stream window that only opens
/// again as the test reads the body. Keep the returned task: it drives the connection.
async fn h2_connect<B>(
    proxy: &TestProxy,
) -> (hyper::client::conn::http2::SendRequest<B>, JoinHandle<()>)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = tls_connect(proxy.https_addr(), Some("localhost"), &[b"h2"], None)
        .await
        .expect("TLS handshake with ALPN h2");
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

fn h2_request<B>(proxy: &TestProxy, method: &str, path: &str, body: B) -> http::Request<B> {
    http::Request::builder()
        .method(method)
        .uri(proxy.url(path))
        .body(body)
        .unwrap()
}

/// `GET /big/{size}` on an open HTTP/2 connection: the response, once its head says 200.
async fn h2_get_big(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    proxy: &TestProxy,
    size: u64,
) -> http::Response<hyper::body::Incoming> {
    let response = sender
        .send_request(h2_request(
            proxy,
            "GET",
            &format!("/big/{size}"),
            Empty::new(),
        ))
        .await
        .expect("the response head");
    assert_eq!(response.status(), 200);
    response
}

/// The proxy's 408: status, exact body, text/plain, request id, strict headers.
fn assert_408(raw: &[u8], context: &str) -> RawResponse {
    let (resp, _) = parse_response(raw, true).unwrap_or_else(|| {
        panic!(
            "{context}: no response in {:?}",
            String::from_utf8_lossy(raw)
        )
    });
    assert_eq!(resp.status, 408, "{context}: {resp:?}");
    assert_proxy_error(
        &resp,
        408,
        &resp.body_str(),
        "408 Request Timeout\n",
        context,
    );
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "{context}: Connection"
    );
    resp
}

/// A stalled reader closed at `at`. Its stall began after `asked` (before the request went
/// out: a conservative origin for "not before") and within moments of `stopped` (the client's
/// last read: the origin for "in time").
fn assert_reader_closed(at: Instant, asked: Instant, stopped: Instant, context: &str) {
    assert!(
        at - asked >= TIMEOUT,
        "{context}: closed {:?} after the request, before the timeout ({TIMEOUT:?})",
        at - asked
    );
    assert!(
        at.saturating_duration_since(stopped) < TIMEOUT + MARGIN,
        "{context}: closed {:?} after the client stopped reading",
        at.saturating_duration_since(stopped)
    );
}

fn assert_timed(elapsed: Duration, timeout: Duration, context: &str) {
    assert!(
        elapsed >= timeout,
        "{context}: after {elapsed:?}, before the timeout ({timeout:?})"
    );
    assert!(
        elapsed < timeout + MARGIN,
        "{context}: after {elapsed:?}, long past the timeout ({timeout:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// Slow request bodies
// ---------------------------------------------------------------------------------------------

/// A head with `Content-Length: 100`, 10 bytes of body, then nothing: 408 at body_timeout, the
/// connection closed, and the upstream got the 10 bytes and then its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_with_a_length_gets_408_and_is_aborted_upstream() {
    let mut sink = BodySink::start().await;
    let proxy = TestProxy::start(&config(&sink.addr, CLIENT)).await;

    let mut tls = proxy.tls().await;
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    // The stall can only start once these bytes are read: timed from before they are sent.
    let sent = Instant::now();
    tls.write_all(b"0123456789").await.unwrap();
    tls.flush().await.unwrap();
    let (raw, closed) = read_to_close(&mut tls, TIMEOUT + MARGIN, "stalled body").await;
    assert_timed(closed - sent, TIMEOUT, "the 408");
    assert_408(&raw, "stalled body (Content-Length)");

    let sunk = sink.next_ended(MARGIN).await;
    assert!(
        sunk.head.starts_with("post /upload http/1.1\r\n"),
        "{sunk:?}"
    );
    assert!(
        sunk.head.contains("\r\ncontent-length: 100\r\n"),
        "{sunk:?}"
    );
    assert_eq!(
        sunk.body, b"0123456789",
        "the upstream got what the client sent, no more"
    );
    // Counted (issue 15): one body timeout, no send timeout.
    let timeouts = &proxy.handle().metrics().client_timeouts;
    assert_eq!(timeouts.with_label_values(&["body"]).get(), 1);
    assert_eq!(timeouts.with_label_values(&["send"]).get(), 0);
}

/// The same with `Transfer-Encoding: chunked`: the upstream never sees the last chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_chunked_body_gets_408_and_is_aborted_upstream() {
    let mut sink = BodySink::start().await;
    let proxy = TestProxy::start(&config(&sink.addr, CLIENT)).await;

    let mut tls = proxy.tls().await;
    tls.write_all(
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    let sent = Instant::now();
    tls.write_all(b"a\r\n0123456789\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let (raw, closed) = read_to_close(&mut tls, TIMEOUT + MARGIN, "stalled chunked body").await;
    assert_timed(closed - sent, TIMEOUT, "the 408");
    assert_408(&raw, "stalled body (chunked)");

    let sunk = sink.next_ended(MARGIN).await;
    assert!(
        sunk.head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{sunk:?}"
    );
    assert_eq!(
        sunk.body.to_ascii_lowercase(),
        b"a\r\n0123456789\r\n",
        "the upstream got the one chunk and no last-chunk"
    );
}

/// HTTP/2: a body that sends 10 of its 100 bytes and stalls gets 408 on its stream; the
/// connection goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_body_gets_408_and_the_connection_goes_on() {
    let mut sink = BodySink::start().await;
    let ok_route = "[[routes]]\nname = \"ok\"\npath = \"/ok\"\n\
                    respond = { status = 200, body = \"ok\" }\n";
    let proxy = TestProxy::start(&format!("{}\n{ok_route}", config(&sink.addr, CLIENT))).await;

    let (mut sender, _conn) = h2_connect::<FedBody>(&proxy).await;
    let (feed, body) = mpsc::channel(4);
    let mut request = h2_request(&proxy, "POST", "/upload", FedBody(body));
    request
        .headers_mut()
        .insert("content-length", http::HeaderValue::from_static("100"));
    let sent = Instant::now();
    feed.send(Bytes::from_static(b"0123456789")).await.unwrap();
    let response = tokio::time::timeout(TIMEOUT + MARGIN, sender.send_request(request))
        .await
        .expect("an answer within body_timeout + margin")
        .expect("a response, not a reset");
    assert_timed(sent.elapsed(), TIMEOUT, "the HTTP/2 408");
    let (parts, body) = response.into_parts();
    assert_eq!(parts.status, 408);
    let body = body.collect().await.expect("the 408's body").to_bytes();
    assert_proxy_error(
        &parts.headers,
        408,
        &String::from_utf8_lossy(&body),
        "408 Request Timeout\n",
        "HTTP/2 stalled body",
    );

    let sunk = sink.next_ended(MARGIN).await;
    assert!(
        sunk.head.contains("\r\ncontent-length: 100\r\n"),
        "{sunk:?}"
    );
    assert_eq!(sunk.body, b"0123456789");
    // The stall cost the client its stream, not its connection.
    drop(feed);
    let (_, body) = mpsc::channel(1);
    let response = tokio::time::timeout(
        TIMEOUT + MARGIN,
        sender.send_request(h2_request(&proxy, "GET", "/ok", FedBody(body))),
    )
    .await
    .expect("a second stream is answered")
    .expect("the connection is still open");
    assert_eq!(response.status(), 200);
}

/// Ten bytes every 500 ms for 3 s with body_timeout 1 s: the timeout is between reads, not a
/// bound on the whole upload, so the request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upload_is_served() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&config(&up.server(), CLIENT)).await;

    let mut tls = proxy.tls().await;
    tls.write_all(b"POST /steady HTTP/1.1\r\nHost: localhost\r\nContent-Length: 70\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..7 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tls.write_all(b"0123456789").await.unwrap();
        tls.flush().await.unwrap();
    }
    let (resp, _) = read_one_response(&mut tls, Duration::from_secs(10))
        .await
        .expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        started.elapsed() >= 3 * TIMEOUT,
        "the upload lasted {:?}",
        started.elapsed()
    );
    let echo: serde_json::Value = serde_json::from_str(&resp.body_str()).unwrap();
    assert_eq!(echo["body_len"], 70);
    let recorded = up.last();
    assert!(recorded.body_complete);
    assert_eq!(recorded.body, b"0123456789".repeat(7));
}

/// When response_timeout runs out while the upload waits for the client, the client is at
/// fault: 408, not the upstream's 504. (body_timeout is above response_timeout here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_still_awaited_at_response_timeout_is_the_clients_fault() {
    let mut sink = BodySink::start().await;
    let config = format!(
        "[client]\nbody_timeout = \"30s\"\n\n{}[[routes]]\nname = \"app\"\npath = \"/\"\n\
         upstream = \"app\"\n",
        upstream_toml("app", &[sink.addr.clone()], "response_timeout = \"1s\"")
    );
    let proxy = TestProxy::start(&config).await;

    let mut tls = proxy.tls().await;
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let (raw, _) = read_to_close(&mut tls, TIMEOUT + MARGIN, "trickled body").await;
    assert_408(&raw, "a body awaited at response_timeout");
    let sunk = sink.next_ended(MARGIN).await;
    assert_eq!(sunk.body, b"0123");
}

/// The other side of that rule: an upstream that reads none of the body is the one holding the
/// exchange up, so response_timeout gives 504, though the body is not complete either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_upstream_does_not_read_is_the_upstreams_fault() {
    // Reads the request head, then holds the connection without reading a byte more.
    let deaf = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf_addr = format!("http://{}", deaf.local_addr().unwrap());
    let deaf_task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = deaf.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while find(&head, b"\r\n\r\n").is_none() {
                match stream.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            held.push(stream);
        }
    });
    let config = format!(
        "[client]\nbody_timeout = \"30s\"\n\n{}[[routes]]\nname = \"app\"\npath = \"/\"\n\
         upstream = \"app\"\n",
        upstream_toml("app", &[deaf_addr], "response_timeout = \"1s\"")
    );
    let proxy = TestProxy::start(&config).await;

    let tls = proxy.tls().await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    // Far more than the buffers on the way hold, under the default max_body (50 MiB).
    const SIZE: usize = 40 << 20;
    let uploading = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {SIZE}\r\n\r\n");
        writer.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..SIZE / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let (resp, _) = read_one_response(&mut reader, TIMEOUT + MARGIN)
        .await
        .expect("a response within response_timeout + margin");
    assert_eq!(resp.status, 504, "{resp:?}");
    uploading.abort();
    deaf_task.abort();
}

// ---------------------------------------------------------------------------------------------
// Slow readers
// ---------------------------------------------------------------------------------------------

/// 50 MiB asked for, 64 KiB read, then nothing: once the proxy's writes have made no progress
/// for send_timeout the connection is closed, and the upstream connection with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_closed_and_the_upstream_released() {
    const SIZE: u64 = 50 << 20;
    let mut up = Downloads::start().await;
    let proxy = TestProxy::start(&config(&up.addr, CLIENT)).await;

    let mut tls = tls_small_window(&proxy, b"http/1.1", 16 * 1024).await;
    let asked = Instant::now();
    tls.write_all(format!("GET /big/{SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let first = read_exactly(&mut tls, 64 * 1024).await;
    assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let stopped = Instant::now();
    let served = up.next_served(TIMEOUT + MARGIN).await;
    assert!(!served.complete, "{served:?}");
    assert!(served.written < SIZE);
    assert_reader_closed(
        served.at,
        asked,
        stopped,
        "the upstream connection released",
    );
    // The client sees its connection end once it drains what was already on the way.
    let (rest, _) = read_to_close(&mut tls, MARGIN, "the stalled reader").await;
    assert!(
        ((first.len() + rest.len()) as u64) < SIZE,
        "the whole body arrived: nothing was cut"
    );
    // Counted once (issue 15).
    let metrics = proxy.handle().metrics();
    assert_eq!(
        metrics.client_timeouts.with_label_values(&["send"]).get(),
        1
    );
    assert_eq!(
        metrics.client_timeouts.with_label_values(&["body"]).get(),
        0
    );
    // A fresh client is served.
    let fresh = proxy
        .client_h1()
        .get(proxy.url("/big/1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.bytes().await.unwrap().len(), 1000);
}

/// Reading 64 KiB every 300 ms with send_timeout 1 s: the proxy's writes block again and
/// again, never for 1 s, and the whole 1 MiB arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_gets_the_whole_response() {
    const SIZE: usize = 1 << 20;
    let mut up = Downloads::start().await;
    let proxy = TestProxy::start(&config(&up.addr, CLIENT)).await;

    let mut tls = tls_small_window(&proxy, b"http/1.1", 16 * 1024).await;
    tls.write_all(
        format!("GET /big/{SIZE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut this_round = 0;
        while this_round < 64 * 1024 {
            match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf[this_round..]))
                .await
                .expect("bytes within 10 s")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => this_round += n,
            }
        }
        got.extend_from_slice(&buf[..this_round]);
        if this_round < 64 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (resp, _) = parse_response(&got, true).expect("a response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), SIZE, "the whole body");
    assert!(resp.body == pattern(SIZE), "the body's bytes");
    assert!(
        started.elapsed() >= 3 * TIMEOUT,
        "the download took {:?}: too fast for the test to mean anything",
        started.elapsed()
    );
    let served = up.next_served(MARGIN).await;
    assert!(served.complete, "{served:?}");
}

/// HTTP/2: a stream whose window the client never opens again (its body is not read) is reset
/// after send_timeout, which releases the upstream; the connection's other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_left_with_a_shut_window_is_reset() {
    const SIZE: u64 = 50 << 20;
    let mut up = Downloads::start().await;
    let proxy = TestProxy::start(&config(&up.addr, CLIENT)).await;

    let (mut sender, conn) = h2_connect::<Empty<Bytes>>(&proxy).await;
    let asked = Instant::now();
    let response = h2_get_big(&mut sender, &proxy, SIZE).await;
    // Not a byte of the body is read: the 64 KiB window fills and stays shut.
    let stopped = Instant::now();
    let served = up.next_served(TIMEOUT + MARGIN).await;
    assert!(!served.complete, "{served:?}");
    assert_reader_closed(served.at, asked, stopped, "the upstream released");

    // Another stream on the same connection is served whole.
    let other = h2_get_big(&mut sender, &proxy, 100_000)
        .await
        .into_body()
        .collect()
        .await
        .expect("the other body")
        .to_bytes();
    assert_eq!(other.len(), 100_000);
    assert!(!conn.is_finished(), "the connection is open");

    // The stalled stream: what was in its window, then the reset.
    let mut body = response.into_body();
    let mut received = 0usize;
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(err)) => break err,
            None => panic!("the stalled stream ended cleanly after {received} bytes"),
        }
    };
    assert!(received <= 65_535, "{received} bytes past a 64 KiB window");
    assert!(
        format!("{err:?}").contains("CANCEL"),
        "the stream was reset with CANCEL: {err:?}"
    );
    // Counted once, as a send timeout and as an HTTP/2 stream reset (issue 15).
    let metrics = proxy.handle().metrics();
    assert_eq!(
        metrics.client_timeouts.with_label_values(&["send"]).get(),
        1
    );
    assert_eq!(
        metrics
            .http2_resets
            .with_label_values(&["send_timeout"])
            .get(),
        1
    );
    assert_eq!(
        metrics
            .http2_resets
            .with_label_values(&["rapid_reset"])
            .get(),
        0
    );
}

/// HTTP/2, reading 64 KiB every 300 ms: each read opens the window again, and the whole
/// response arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_http2_reader_gets_the_whole_response() {
    const SIZE: usize = 1 << 20;
    let mut up = Downloads::start().await;
    let proxy = TestProxy::start(&config(&up.addr, CLIENT)).await;

    let (mut sender, _conn) = h2_connect::<Empty<Bytes>>(&proxy).await;
    let started = Instant::now();
    let response = h2_get_big(&mut sender, &proxy, SIZE as u64).await;
    let mut body = response.into_body();
    let mut got = Vec::with_capacity(SIZE);
    let mut next_pause = 64 * 1024;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the body streams without a reset");
        if let Some(data) = frame.data_ref() {
            got.extend_from_slice(data);
        }
        if got.len() >= next_pause {
            next_pause += 64 * 1024;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(got.len(), SIZE);
    assert!(got == pattern(SIZE), "the body's bytes");
    assert!(
        started.elapsed() >= 3 * TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    let served = up.next_served(MARGIN).await;
    assert!(served.complete, "{served:?}");
}

/// The plain-http listener: a client that sends request after request and reads none of the
/// redirects is closed once the proxy's writes stop moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_closes_a_client_that_reads_nothing() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&config(&up.server(), CLIENT)).await;

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(proxy.http_addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // 2 KiB paths make 2 KiB redirects: 20,000 of them are far more than the buffers between
    // us hold, so the proxy's writes block once they are full.
    let request = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(2048)
    );
    let writing = tokio::spawn(async move {
        for _ in 0..20_000 {
            if writer.write_all(request.as_bytes()).await.is_err() {
                return;
            }
        }
        panic!("20,000 requests written: the proxy read them all without blocking");
    });
    // idle_timeout and header_timeout are 30 s: a close within 20 s is send_timeout's.
    tokio::time::timeout(Duration::from_secs(20), writing)
        .await
        .expect("the proxy closed the connection within 20 s")
        .unwrap();
    let (got, _) = read_to_close(&mut reader, MARGIN, "the http reader").await;
    assert!(
        got.starts_with(b"HTTP/1.1 308 Permanent Redirect\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

#[test]
fn both_keys_are_validated_by_name() {
    for (line, error) in [
        (
            "body_timeout = \"0s\"",
            "client.body_timeout: must be more than 0s",
        ),
        (
            "send_timeout = \"0ms\"",
            "client.send_timeout: must be more than 0s",
        ),
        (
            "body_timeout = \"2d\"",
            "client.body_timeout: must be at most 1d",
        ),
        (
            "send_timeout = \"25h\"",
            "client.send_timeout: must be at most 1d",
        ),
    ] {
        let text = format!("[listen]\nhttps = \"127.0.0.1:0\"\n\n[client]\n{line}\n");
        let errors = match rampart::config::load_str(&text, "bad.toml") {
            Ok(_) => panic!("{line} was accepted"),
            Err(errors) => errors.to_string(),
        };
        assert!(errors.contains(error), "{line}: {errors}");
    }
}

/// After a reload, new requests and connections get the new timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_both_timeouts_to_new_requests() {
    let mut sink = BodySink::start().await;
    let mut up = Downloads::start().await;
    let slow = "[client]\nbody_timeout = \"30s\"\nsend_timeout = \"30s\"\n";
    let config = format!(
        "{slow}\n{}{}[[routes]]\nname = \"upload\"\npath = \"/upload\"\nupstream = \"sink\"\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("sink", &[sink.addr.clone()], ""),
        upstream_toml("app", &[up.addr.clone()], "")
    );
    let proxy = TestProxy::start(&config).await;
    let reloaded = proxy.config.replace(slow, CLIENT);
    assert_ne!(reloaded, proxy.config);
    proxy
        .handle()
        .reload(rampart::config::load_str(&reloaded, "test.toml").expect("a valid config"));

    let upload = async {
        let mut tls = proxy.tls().await;
        tls.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        let sent = Instant::now();
        tls.write_all(b"0123456789").await.unwrap();
        tls.flush().await.unwrap();
        let (raw, closed) = read_to_close(&mut tls, TIMEOUT + MARGIN, "after the reload").await;
        assert_timed(closed - sent, TIMEOUT, "the 408 after the reload");
        assert_408(&raw, "after the reload");
        sink.next_ended(MARGIN).await;
    };
    let download = async {
        let mut tls = tls_small_window(&proxy, b"http/1.1", 16 * 1024).await;
        let asked = Instant::now();
        tls.write_all(b"GET /big/52428800 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        read_exactly(&mut tls, 1024).await;
        let stopped = Instant::now();
        let served = up.next_served(TIMEOUT + MARGIN).await;
        assert!(!served.complete, "{served:?}");
        assert_reader_closed(served.at, asked, stopped, "the reader after the reload");
    };
    tokio::join!(upload, download);
}

/// An HTTP/2 upload whose declared length is over the limit (issue 17): the 413 comes at once
/// and the rest of the upload is read and dropped, as nginx does, instead of a RST_STREAM in the
/// middle of the client's sending (curl 7.88: `(92) Stream error in the HTTP/2 framing layer`).
/// 3 MiB is far more than the client's 64 KiB of stream window: without the discard the
/// client's body is dropped at the reset and the feeding below fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upload_over_the_declared_limit_gets_413_and_is_read_to_its_end() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&format!(
        "[client]\nmax_body = \"1KiB\"\n\n{}",
        simple_config(&up)
    ))
    .await;
    let (mut sender, _conn) = h2_connect::<FedBody>(&proxy).await;
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    const TOTAL: usize = 3 << 20;
    const CHUNK: usize = 16 << 10;
    let mut request = h2_request(&proxy, "POST", "/upload", FedBody(rx));
    request
        .headers_mut()
        .insert("content-length", TOTAL.to_string().parse().unwrap());
    let response = tokio::spawn(sender.send_request(request));
    let mut sent = 0;
    while sent < TOTAL {
        let fed = tokio::time::timeout(
            Duration::from_secs(20),
            tx.send(Bytes::from(vec![b'a'; CHUNK])),
        )
        .await;
        match fed {
            Ok(Ok(())) => sent += CHUNK,
            Ok(Err(_)) => panic!("the upload was cut after {sent} of {TOTAL} bytes (stream reset)"),
            Err(_) => panic!("the upload stalled after {sent} of {TOTAL} bytes"),
        }
    }
    drop(tx);
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("the 413 in time")
        .unwrap()
        .expect("a response, not a stream error");
    assert_eq!(response.status(), 413);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"413 Payload Too Large\n");
    assert_eq!(up.count(), 0, "the refused upload reached the app");
    proxy.assert_still_serves().await;
}
