//! Process-wide resources under faults, alone in their test binary (descriptors, tasks and
//! RSS are counted for the whole process, which the test, the proxy and the upstreams share;
//! the two tests take turns).
//!
//! Clients that abort mid-upload and mid-download, by the thousand: afterwards the process's
//! open file descriptors, its live tokio tasks, the upstream's open connections and rampart's
//! `rampart_active_connections{listener="https"}` return to where they started. The default run
//! aborts 1,000 clients; the 10,000 run is `#[ignore]`d:
//! `cargo test --release --test upstream_resources -- --ignored --nocapture`.
//!
//! Hundreds of 1 MiB response heads (502 each, `upstream_faults.rs`) leave RSS flat.

#[path = "it/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The tests share the process: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Declared upload size; a client sends 16 KiB of it, then leaves.
const UPLOAD: usize = 1 << 20;
/// Download size; a client reads 32 KiB of it, then leaves.
const DOWNLOAD: usize = 8 << 20;
const CHUNK: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// An upstream that counts its open connections
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct CountingState {
    open: AtomicUsize,
    /// Ids of uploads whose request reached the app.
    uploads_started: Mutex<HashSet<u64>>,
    /// Ids of downloads whose request reached the app.
    downloads_started: Mutex<HashSet<u64>>,
}

/// `/upload/{id}` reads the body to its end (or break), `/download/{id}` sends 8 MiB, anything
/// else answers `ok`.
struct CountingUpstream {
    addr: std::net::SocketAddr,
    state: Arc<CountingState>,
    task: JoinHandle<()>,
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` bytes of a repeated pattern, 16 KiB per frame, made as they are read.
struct Pattern {
    left: usize,
    chunk: Bytes,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

async fn counting_handle(
    state: Arc<CountingState>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let path = request.uri().path().to_string();
    let id = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|id| id.parse::<u64>().ok())
    };
    if let Some(id) = id("/upload/") {
        state.uploads_started.lock().unwrap().insert(id);
        let mut body = request.into_body();
        while let Some(Ok(_)) = body.frame().await {}
        return Ok(Response::new(Full::new(Bytes::from("uploaded\n")).boxed()));
    }
    if let Some(id) = id("/download/") {
        state.downloads_started.lock().unwrap().insert(id);
        let body = Pattern {
            left: DOWNLOAD,
            chunk: Bytes::from(pattern(CHUNK)),
        };
        let mut response = Response::new(body.boxed());
        response.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(DOWNLOAD),
        );
        return Ok(response);
    }
    Ok(Response::new(Full::new(Bytes::from("ok\n")).boxed()))
}

impl CountingUpstream {
    async fn start() -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(CountingState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.open.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let service_state = st.clone();
                    let service =
                        service_fn(move |request| counting_handle(service_state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingUpstream { addr, state, task }
    }

    fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    fn started(&self, upload: bool, id: u64) -> bool {
        let set = if upload {
            &self.state.uploads_started
        } else {
            &self.state.downloads_started
        };
        set.lock().unwrap().contains(&id)
    }
}

// ---------------------------------------------------------------------------------------------
// What is counted
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    descriptors: usize,
    tasks: usize,
    upstream_connections: usize,
    https_connections: i64,
}

fn counts(proxy: &TestProxy, upstream: &CountingUpstream) -> Counts {
    Counts {
        descriptors: std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count()),
        // The test's own runtime and the proxy's https workers (runtimes of their own).
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            + proxy.handle().worker_tasks(),
        upstream_connections: upstream.open(),
        https_connections: proxy
            .handle()
            .metrics()
            .active_connections
            .with_label_values(&["https"])
            .get(),
    }
}

/// Polls until the counts equal `baseline` (true), or `limit` passes (false).
async fn settle(
    proxy: &TestProxy,
    upstream: &CountingUpstream,
    baseline: Counts,
    limit: Duration,
) -> (bool, Counts, Duration) {
    let started = Instant::now();
    loop {
        let now = counts(proxy, upstream);
        if now == baseline {
            return (true, now, started.elapsed());
        }
        if started.elapsed() >= limit {
            return (false, now, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The aborting clients
// ---------------------------------------------------------------------------------------------

/// Starts an upload of 1 MiB, sends 16 KiB, waits until the app is reading it, and leaves
/// (odd ids with a TCP reset, even ids with a FIN). False when the upload never reached the app.
async fn abort_upload(proxy: &TestProxy, upstream: &CountingUpstream, id: u64) -> bool {
    let Ok(mut stream) = tls_connect(proxy.https, Some("localhost"), &[b"http/1.1"], None).await
    else {
        return false;
    };
    let mut request = format!(
        "POST /upload/{id} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {UPLOAD}\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&pattern(CHUNK));
    if stream.write_all(&request).await.is_err() || stream.flush().await.is_err() {
        return false;
    }
    let reached = eventually(Duration::from_secs(5), || upstream.started(true, id)).await;
    if id % 2 == 1 {
        let _ = stream.get_ref().0.set_zero_linger();
    }
    reached
}

/// Downloads 8 MiB, reads the head and 32 KiB of body, and leaves (odd ids with a reset).
async fn abort_download(proxy: &TestProxy, upstream: &CountingUpstream, id: u64) -> bool {
    let Ok(mut stream) = tls_connect(proxy.https, Some("localhost"), &[b"http/1.1"], None).await
    else {
        return false;
    };
    let request = format!("GET /download/{id} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16384];
    let enough = loop {
        if let Some(head_end) = find(&received, b"\r\n\r\n") {
            if received.len() - head_end - 4 >= 2 * CHUNK {
                break received.starts_with(b"HTTP/1.1 200");
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break false,
        }
    };
    if id % 2 == 1 {
        let _ = stream.get_ref().0.set_zero_linger();
    }
    enough && upstream.started(false, id)
}

/// A complete exchange afterwards: the proxy is still fine.
async fn still_serves(proxy: &TestProxy) -> bool {
    let raw = proxy.raw_h1(&get_close("/ok", "localhost")).await;
    parse_responses(&raw)
        .first()
        .is_some_and(|r| r.status == 200 && r.body == b"ok\n")
}

async fn aborts_release_everything(per_kind: u64) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let upstream = Arc::new(CountingUpstream::start().await);
    let config = format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n\n[log]\naccess = false\n",
        upstream_toml("app", &[format!("http://{}", upstream.addr)], "")
    );
    let proxy = Arc::new(ProxyBuilder::new().no_http().config(&config).start().await);

    // Warm-up: the same aborts, so that everything made once (pools, timers) exists.
    for id in 0..20 {
        assert!(abort_upload(&proxy, &upstream, 1_000_000 + id).await);
        assert!(abort_download(&proxy, &upstream, 1_000_000 + id).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = counts(&proxy, &upstream);

    // 32 clients at a time, spawned as others finish (so the task count is theirs, not a
    // queue's).
    let started = Instant::now();
    let mut pending = (0..per_kind).flat_map(|id| [(id, true), (id, false)]);
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = 0;
    let mut peak = counts(&proxy, &upstream);
    loop {
        while tasks.len() < 32 {
            let Some((id, upload)) = pending.next() else {
                break;
            };
            let (proxy, upstream) = (proxy.clone(), upstream.clone());
            tasks.spawn(async move {
                if upload {
                    abort_upload(&proxy, &upstream, id).await
                } else {
                    abort_download(&proxy, &upstream, id).await
                }
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        if !done.unwrap_or(false) {
            failed += 1;
        }
        let now = counts(&proxy, &upstream);
        peak.descriptors = peak.descriptors.max(now.descriptors);
        peak.tasks = peak.tasks.max(now.tasks);
        peak.upstream_connections = peak.upstream_connections.max(now.upstream_connections);
        peak.https_connections = peak.https_connections.max(now.https_connections);
    }
    let aborting = started.elapsed();
    let (settled, after, waited) =
        settle(&proxy, &upstream, baseline, Duration::from_secs(10)).await;
    println!(
        "{} aborted clients ({per_kind} mid-upload, {per_kind} mid-download) in {aborting:.1?}, \
         {failed} that did not reach the app\n\
         baseline {baseline:?}\npeak     {peak:?}\nafter    {after:?} ({waited:.1?} after the last abort)",
        2 * per_kind
    );
    assert_eq!(failed, 0, "aborts whose request never reached the app");
    assert!(
        settled,
        "counts did not return: {after:?}, baseline {baseline:?}"
    );
    assert!(still_serves(&proxy).await, "a request after the aborts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_aborted_clients_leave_nothing_behind() {
    aborts_release_everything(500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10,000 aborts: cargo test --release --test upstream_resources -- --ignored --nocapture"]
async fn ten_thousand_aborted_clients_leave_nothing_behind() {
    aborts_release_everything(5000).await;
}

// ---------------------------------------------------------------------------------------------
// Oversized response heads
// ---------------------------------------------------------------------------------------------

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 200 response heads of 1 MiB (one huge header, or ten thousand small ones), each a 502:
/// if each left its megabyte behind, RSS would grow by 200 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_heads_leave_memory_flat() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut one_header = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    one_header.extend(std::iter::repeat_n(b'a', 1 << 20));
    one_header.extend_from_slice(b"\r\nContent-Length: 3\r\n\r\nok\n");
    let mut many_headers = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..10_000 {
        many_headers.extend_from_slice(format!("X-H{i:05}: {:0>96}\r\n", i).as_bytes());
    }
    many_headers.extend_from_slice(b"Content-Length: 3\r\n\r\nok\n");
    let big = RawUpstream::start_with(one_header, true).await;
    let many = RawUpstream::start_with(many_headers, true).await;
    let config = format!(
        "{}{}[[routes]]\nname = \"big\"\npath = \"/big/\"\nupstream = \"big\"\n\n\
         [[routes]]\nname = \"many\"\npath = \"/many/\"\nupstream = \"many\"\n\n[log]\naccess = false\n",
        upstream_toml("big", &[big.server()], "retries = 0"),
        upstream_toml("many", &[many.server()], "retries = 0"),
    );
    let proxy = ProxyBuilder::new().no_http().config(&config).start().await;
    let client = proxy.client_h1();
    // Warm-up: buffers and pools made once are not growth.
    for path in ["/big/x", "/many/x"] {
        assert_eq!(
            client.get(proxy.url(path)).send().await.unwrap().status(),
            502
        );
    }
    let before = rss_kib();
    for i in 0..100 {
        for path in ["/big/", "/many/"] {
            let resp = client
                .get(proxy.url(&format!("{path}{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 502);
        }
    }
    let grown = rss_kib().saturating_sub(before);
    println!("RSS {before} KiB before 200 oversized response heads, grew by {grown} KiB");
    assert!(before > 0, "no VmRSS in /proc/self/status");
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB over 200 requests"
    );
}
