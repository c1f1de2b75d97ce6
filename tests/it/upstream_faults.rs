//! Upstream faults against a real rampart: a refused server, a silent one, a connection reset
//! in the middle of a response body, garbage and oversized response heads, and a keep-alive
//! connection the server closes as it is reused. Each checks the status (502/504), the proxy's
//! own error shape (security headers, request id, no internal detail), what the upstream saw
//! (retried or not) and that the proxy keeps serving.
//!
//! `timeouts_and_errors.rs` has the basic 502/504 cases; client aborts (descriptor, task and
//! connection counts) and the memory of oversized heads are in `upstream_resources.rs`, alone in
//! their test binary.

use crate::common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// A raw upstream whose every connection runs a scripted behaviour
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct ScriptState {
    /// (connection index, request line) of every request head read.
    requests: Mutex<Vec<(usize, String)>>,
    open: AtomicUsize,
}

/// One accepted connection, handed to the script.
struct Conn {
    stream: TcpStream,
    index: usize,
    state: Arc<ScriptState>,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads one request (head and Content-Length or chunked body) and records its line;
    /// `None` when the peer closed first.
    async fn read_request(&mut self) -> Option<String> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let line = head.lines().next().unwrap_or_default().to_string();
        self.state
            .requests
            .lock()
            .unwrap()
            .push((self.index, line.clone()));
        self.buf.drain(..head_end);
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        if header("transfer-encoding").is_some() {
            // Enough for rampart's own chunked bodies: up to the last chunk.
            while find(&self.buf, b"0\r\n\r\n").is_none() {
                self.fill().await?;
            }
            let end = find(&self.buf, b"0\r\n\r\n").unwrap_or(0) + 5;
            self.buf.drain(..end);
        } else {
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while self.buf.len() < length {
                self.fill().await?;
            }
            self.buf.drain(..length);
        }
        Some(line)
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Waits until the peer closes the connection.
    async fn until_closed(&mut self) {
        while self.fill().await.is_some() {}
    }

    /// Closes with a TCP reset instead of a FIN.
    fn reset(self) {
        let _ = self.stream.set_zero_linger();
    }
}

struct ScriptedUpstream {
    addr: std::net::SocketAddr,
    state: Arc<ScriptState>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedUpstream {
    async fn start<F, Fut>(script: F) -> ScriptedUpstream
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ScriptState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut index = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.open.fetch_add(1, Ordering::SeqCst);
                let conn = Conn {
                    stream,
                    index,
                    state: st.clone(),
                    buf: Vec::new(),
                };
                index += 1;
                let (script, st) = (script(conn), st.clone());
                tokio::spawn(async move {
                    script.await;
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ScriptedUpstream { addr, state, task }
    }

    fn server(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<(usize, String)> {
        self.state.requests.lock().unwrap().clone()
    }

    fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

fn one_route(servers: &[String], upstream_extra: &str) -> String {
    format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", servers, upstream_extra)
    )
}

async fn error_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, String) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

const OK_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

// ---------------------------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------------------------

/// An address that refuses connections: a socket bound but never listening. Unlike a port
/// that was bound and released, no listener started meanwhile (the proxy's own) can take it.
fn refusing_addr() -> (std::net::SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap(), socket)
}

/// A refused connection: a bodiless GET is sent to the other server, a POST with a body never
/// (its body streams from the client and cannot be replayed; nginx would retry it here, rampart
/// does not: docs/configuration.md, `retries`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_server_get_goes_to_the_other_server_a_post_never() {
    let (dead, _reserved) = refusing_addr();
    let live = TestUpstream::start().await;
    let proxy = TestProxy::start(&one_route(
        &[format!("http://{dead}"), live.server()],
        "retries = 1\npassive_failures = 0",
    ))
    .await;

    for i in 0..6 {
        let client = if i % 2 == 0 {
            proxy.client_h1()
        } else {
            proxy.client_h2()
        };
        let resp = client
            .get(proxy.url(&format!("/get/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {i}");
    }
    let gets: Vec<String> = live.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        gets,
        (0..6).map(|i| format!("/get/{i}")).collect::<Vec<_>>(),
        "every GET reached the live server exactly once"
    );

    // Round robin alternates: two of four POSTs go to the dead server.
    let mut refused = Vec::new();
    for i in 0..4 {
        let client = if i % 2 == 0 {
            proxy.client_h1()
        } else {
            proxy.client_h2()
        };
        let resp = client
            .post(proxy.url(&format!("/post/{i}")))
            .body(vec![b'p'; 1000])
            .send()
            .await
            .unwrap();
        let (status, headers, body) = error_of(resp).await;
        if status == 502 {
            assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", "refused POST");
            assert!(!body.contains(&dead.port().to_string()));
            refused.push(format!("/post/{i}"));
        } else {
            assert_eq!(status, 200, "POST {i}");
        }
    }
    assert_eq!(refused.len(), 2, "refused POSTs: {refused:?}");
    let posts: Vec<String> = live
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect();
    assert_eq!(posts.len(), 2, "POSTs at the live server: {posts:?}");
    for path in &refused {
        assert!(
            !posts.contains(path),
            "a refused POST was sent again: {path}"
        );
    }
    proxy.assert_still_serves().await;
}

// ---------------------------------------------------------------------------------------------
// Silent
// ---------------------------------------------------------------------------------------------

/// Accepts, reads the request, never answers: 504 at `response_timeout`, and rampart closes the
/// upstream connection it gave up on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_504_at_response_timeout_and_its_connection_is_closed() {
    let silent = ScriptedUpstream::start(|mut conn| async move {
        if conn.read_request().await.is_some() {
            conn.until_closed().await;
        }
    })
    .await;
    let live = TestUpstream::start().await;
    let config = format!(
        "{}{}[[routes]]\nname = \"live\"\npath = \"/live/\"\nupstream = \"live\"\n\n\
         [[routes]]\nname = \"silent\"\npath = \"/\"\nupstream = \"silent\"\n",
        upstream_toml(
            "silent",
            &[silent.server()],
            "response_timeout = \"500ms\"\nretries = 0"
        ),
        upstream_toml("live", &[live.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;

    for (i, client) in [proxy.client_h1(), proxy.client_h2()].iter().enumerate() {
        let started = Instant::now();
        let resp = client
            .get(proxy.url(&format!("/quiet/{i}")))
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let (status, headers, body) = error_of(resp).await;
        assert_eq!(status, 504);
        assert_proxy_error(&headers, 504, &body, "504 Gateway Timeout\n", "silent");
        assert!(
            elapsed >= Duration::from_millis(450),
            "504 after {elapsed:?}"
        );
    }
    let seen: Vec<String> = silent.requests().into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        seen,
        ["GET /quiet/0 HTTP/1.1", "GET /quiet/1 HTTP/1.1"],
        "each timed-out request was sent once"
    );
    assert!(
        eventually(Duration::from_secs(3), || silent.open() == 0).await,
        "rampart kept {} connections to the silent server",
        silent.open()
    );
    proxy.assert_still_serves_at("/live/ok").await;
}

// ---------------------------------------------------------------------------------------------
// Reset in the middle of a body
// ---------------------------------------------------------------------------------------------

const DECLARED: usize = 100_000;
const SENT: usize = 10_000;

/// Sends the head and 10,000 of the 100,000 body bytes it declares, then resets.
async fn start_resetting(chunked: bool) -> ScriptedUpstream {
    ScriptedUpstream::start(move |mut conn| async move {
        if conn.read_request().await.is_none() {
            return;
        }
        let mut response = if chunked {
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{DECLARED:x}\r\n")
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {DECLARED}\r\n\r\n")
        }
        .into_bytes();
        response.extend_from_slice(&pattern(SENT));
        conn.write(&response).await;
        // Let rampart pass the start on before the connection breaks.
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.reset();
    })
    .await
}

/// A response that breaks off mid-body never reaches the client as a clean, shorter body:
/// HTTP/1.1 closes before the declared length (or the last chunk), HTTP/2 resets the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_is_a_broken_response_never_a_clean_short_one() {
    for chunked in [false, true] {
        let what = if chunked { "chunked" } else { "content-length" };
        let up = start_resetting(chunked).await;
        let live = TestUpstream::start().await;
        let config = format!(
            "{}{}[[routes]]\nname = \"live\"\npath = \"/live/\"\nupstream = \"live\"\n\n\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            upstream_toml("app", &[up.server()], "retries = 0"),
            upstream_toml("live", &[live.server()], ""),
        );
        let proxy = TestProxy::start(&config).await;

        // HTTP/1.1, raw: the head, part of the body, then the connection closes.
        let raw = proxy.raw_h1(&get_close("/file", "localhost")).await;
        let head_end = find(&raw, b"\r\n\r\n").expect("a response head") + 4;
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{what}: {head}");
        let body = &raw[head_end..];
        if chunked {
            assert!(
                head.contains("transfer-encoding: chunked"),
                "{what}: {head}"
            );
            assert!(
                !body.ends_with(b"0\r\n\r\n"),
                "{what}: the client got a last chunk: a clean end"
            );
        } else {
            assert!(
                head.contains(&format!("content-length: {DECLARED}")),
                "{what}: {head}"
            );
            assert!(
                body.len() < DECLARED,
                "{what}: {} body bytes arrived",
                body.len()
            );
        }
        // Whatever did arrive is the upstream's bytes, in order.
        if !chunked {
            assert_eq!(body, &pattern(body.len())[..], "{what}: body bytes");
            assert!(body.len() <= SENT, "{what}: {} bytes", body.len());
        }

        // reqwest over HTTP/1.1 and HTTP/2: reading the body is an error.
        for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
            let resp = client.get(proxy.url("/file")).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{what} {label}");
            let read = resp.bytes().await;
            assert!(
                read.is_err(),
                "{what} {label}: a clean body of {} bytes",
                read.map(|b| b.len()).unwrap_or(0)
            );
        }
        proxy.assert_still_serves_at("/live/ok").await;
        // The three broken bodies counted (issue 15); the heads came, so nothing else.
        let errors = &proxy.handle().metrics().upstream_errors;
        assert_eq!(
            errors.with_label_values(&["app", "body"]).get(),
            3,
            "{what}"
        );
        assert_eq!(
            errors.with_label_values(&["app", "protocol"]).get(),
            0,
            "{what}"
        );
        assert_eq!(
            errors.with_label_values(&["live", "body"]).get(),
            0,
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Garbage and oversized heads
// ---------------------------------------------------------------------------------------------

/// Response heads hyper's client refuses: each is a 502 in the proxy's own shape, sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_response_heads_are_502() {
    let cases: &[(&str, &[u8])] = &[
        (
            "status not a number",
            b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "status below 100",
            b"HTTP/1.1 99 Low\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "status of four digits",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "HTTP/2.0 in an HTTP/1 head",
            b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        ("not HTTP", b"ICY 200 OK\r\n\r\n"),
        ("binary", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n"),
        (
            "two different Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "malformed Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
        ),
        (
            "obs-fold",
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "NUL in a header",
            b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "space in a header name",
            b"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "unsolicited 101",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
        ),
    ];
    // hyper's client takes at most 100 header lines.
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let cases: Vec<(&str, &[u8])> = cases
        .iter()
        .copied()
        .chain([("101 header lines", &many[..])])
        .collect();
    let mut upstreams = Vec::new();
    let mut config = String::new();
    for (i, (_, canned)) in cases.iter().enumerate() {
        let up = RawUpstream::start_with(canned.to_vec(), true).await;
        config.push_str(&upstream_toml(
            &format!("g{i}"),
            &[up.server()],
            "retries = 0",
        ));
        config.push_str(&format!(
            "[[routes]]\nname = \"g{i}\"\npath = \"/g{i}/\"\nupstream = \"g{i}\"\n\n"
        ));
        upstreams.push(up);
    }
    let live = TestUpstream::start().await;
    config.push_str(&simple_config(&live));
    let proxy = TestProxy::start(&config).await;

    for (i, (what, _)) in cases.iter().enumerate() {
        for client in [proxy.client_h1(), proxy.client_h2()] {
            let resp = client
                .get(proxy.url(&format!("/g{i}/x")))
                .send()
                .await
                .unwrap();
            let (status, headers, body) = error_of(resp).await;
            assert_eq!(status, 502, "{what}");
            assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", what);
        }
        assert_eq!(
            upstreams[i].heads().len(),
            2,
            "{what}: sent once per request"
        );
    }
    proxy.assert_still_serves().await;
}

/// 1 MiB of response headers (one huge header, or ten thousand small ones) is beyond hyper's
/// client limits (a head buffer of about 400 KiB, 100 headers): 502. That memory stays flat
/// over hundreds of them is checked in `upstream_resources.rs` (RSS is per process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_of_response_headers_is_502() {
    let mut one_header = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    one_header.extend(std::iter::repeat_n(b'a', 1 << 20));
    one_header.extend_from_slice(b"\r\nContent-Length: 3\r\n\r\nok\n");
    let mut many_headers = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..10_000 {
        many_headers.extend_from_slice(format!("X-H{i:05}: {:0>96}\r\n", i).as_bytes());
    }
    many_headers.extend_from_slice(b"Content-Length: 3\r\n\r\nok\n");
    assert!(many_headers.len() > 1 << 20);

    let big = RawUpstream::start_with(one_header, true).await;
    let many = RawUpstream::start_with(many_headers, true).await;
    let live = TestUpstream::start().await;
    let config = format!(
        "{}{}[[routes]]\nname = \"big\"\npath = \"/big/\"\nupstream = \"big\"\n\n\
         [[routes]]\nname = \"many\"\npath = \"/many/\"\nupstream = \"many\"\n\n{}",
        upstream_toml("big", &[big.server()], "retries = 0"),
        upstream_toml("many", &[many.server()], "retries = 0"),
        simple_config(&live),
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    for path in ["/big/x", "/many/x"] {
        let (status, headers, body) =
            error_of(client.get(proxy.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 502, "{path}");
        assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", path);
    }

    proxy.assert_still_serves().await;
}

// ---------------------------------------------------------------------------------------------
// A keep-alive connection closed as it is reused
// ---------------------------------------------------------------------------------------------

/// Answers the first request of each connection (keep-alive), then reads the next one and
/// closes without a word: a pooled connection that died as it was reused. `reset` closes with
/// RST instead of FIN.
async fn start_closing_on_reuse(reset: bool) -> ScriptedUpstream {
    ScriptedUpstream::start(move |mut conn| async move {
        if conn.read_request().await.is_none() || !conn.write(OK_KEEP_ALIVE).await {
            return;
        }
        if conn.read_request().await.is_some() && reset {
            conn.reset();
        }
    })
    .await
}

/// The upstream saw the request at the second read of a reused connection and dropped it: a
/// bodiless GET (or HEAD, PUT, DELETE…) is sent again on a new connection and succeeds, even
/// with `retries = 0`; a POST whose body went out is never sent again (502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_keep_alive_connection_resends_a_get_never_a_post() {
    for reset in [false, true] {
        let how = if reset { "RST" } else { "FIN" };
        let up = start_closing_on_reuse(reset).await;
        let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
        let client = proxy.client_h1();

        // /first opens connection 0; /second is sent on it, dropped, and sent again on 1.
        for path in ["/first", "/second"] {
            let resp = client.get(proxy.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{how}: GET {path}");
            assert_eq!(resp.text().await.unwrap(), "ok\n");
        }
        assert_eq!(
            up.requests(),
            [
                (0, "GET /first HTTP/1.1".to_string()),
                (0, "GET /second HTTP/1.1".to_string()),
                (1, "GET /second HTTP/1.1".to_string()),
            ],
            "{how}: the GET went out again on a new connection"
        );

        // Connection 1 is pooled again: the POST goes out on it, with its body, and is dropped.
        let resp = client
            .post(proxy.url("/order"))
            .body("item=1")
            .send()
            .await
            .unwrap();
        let (status, headers, body) = error_of(resp).await;
        assert_eq!(status, 502, "{how}: POST on a stale connection");
        assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", "stale POST");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let posts: Vec<(usize, String)> = up
            .requests()
            .into_iter()
            .filter(|(_, line)| line.starts_with("POST"))
            .collect();
        assert_eq!(
            posts,
            [(1, "POST /order HTTP/1.1".to_string())],
            "{how}: the POST reached the upstream exactly once"
        );
        proxy.assert_still_serves().await;
    }
}

/// A fresh connection that closes before answering is not a stale one: the request is not
/// sent again (the server saw it and may have worked on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_connection_closed_before_answering_is_not_resent() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        let _ = conn.read_request().await;
    })
    .await;
    let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
    let (status, headers, body) = error_of(
        proxy
            .client_h1()
            .get(proxy.url("/crash"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", "fresh close");
    assert_eq!(up.requests(), [(0, "GET /crash HTTP/1.1".to_string())]);
}

// ---------------------------------------------------------------------------------------------
// The upstream pool's reuse rules (upstream/conn.rs): a connection goes back to its worker's
// idle list only clean, and is checked before reuse.
// ---------------------------------------------------------------------------------------------

/// Each request gets its answer with the connection's index, so a test sees which connection
/// served it.
fn answer_with_index(index: usize) -> Vec<u8> {
    let body = format!("conn {index}\n");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The server closes a keep-alive connection while it is idle (its keep-alive timeout): the
/// next request, a POST included, goes out on a new connection and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_while_idle_is_not_reused() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        if conn.read_request().await.is_some() {
            conn.write(OK_KEEP_ALIVE).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // dropped: FIN while rampart holds it idle
    })
    .await;
    let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
    let client = proxy.client_h1();
    for round in 0..3 {
        let resp = client
            .get(proxy.url(&format!("/get/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {round}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resp = client
            .post(proxy.url(&format!("/post/{round}")))
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "POST {round}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requests = up.requests();
    assert_eq!(requests.len(), 6, "{requests:?}");
    let connections: std::collections::HashSet<usize> = requests.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        connections.len(),
        6,
        "a closed connection was reused: {requests:?}"
    );
}

/// `Connection: close` from the server: the connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closes_is_not_reused() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        while conn.read_request().await.is_some() {
            let index = conn.index;
            let mut answer = answer_with_index(index);
            if index % 2 == 0 {
                answer = String::from_utf8(answer)
                    .unwrap()
                    .replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
                    .into_bytes();
                conn.write(&answer).await;
                // Kept open: only the header says it is over.
                conn.until_closed().await;
                return;
            }
            conn.write(&answer).await;
        }
    })
    .await;
    let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
    let client = proxy.client_h1();
    for round in 0..6 {
        let resp = client
            .get(proxy.url(&format!("/r/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    let requests = up.requests();
    // Every connection that said `Connection: close` served exactly one request.
    for (index, _) in requests.iter().filter(|(c, _)| c % 2 == 0) {
        let served = requests.iter().filter(|(c, _)| c == index).count();
        assert_eq!(
            served, 1,
            "connection {index} reused after close: {requests:?}"
        );
    }
}

/// The server answers before it has read the request body (a 413 of its own, say) and the
/// upload goes on: the next request on the proxy reaches the server as a clean request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_during_an_upload_leaves_no_bytes_behind() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        loop {
            // Read the head only.
            let head_end = loop {
                if let Some(pos) = find(&conn.buf, b"\r\n\r\n") {
                    break pos + 4;
                }
                if conn.fill().await.is_none() {
                    return;
                }
            };
            let head = String::from_utf8_lossy(&conn.buf[..head_end]).into_owned();
            let line = head.lines().next().unwrap_or_default().to_string();
            conn.state
                .requests
                .lock()
                .unwrap()
                .push((conn.index, line.clone()));
            conn.buf.drain(..head_end);
            if line.starts_with("POST") {
                // Early answer, body unread, and the connection kept.
                conn.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig\n")
                    .await;
                // Whatever follows on this connection is the rest of the body: never a head.
                conn.until_closed().await;
                return;
            }
            conn.write(OK_KEEP_ALIVE).await;
        }
    })
    .await;
    let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
    // A raw client announces 1 MiB and sends 64 KiB, then waits for the answer: the upload is
    // unfinished when the answer comes, whatever the loopback buffers hold.
    let mut upload = proxy.tls().await;
    upload
        .write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n")
        .await
        .unwrap();
    upload.write_all(&vec![b'x'; 64 << 10]).await.unwrap();
    upload.flush().await.unwrap();
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let early = loop {
        if let Some((resp, _)) = parse_response(&answer, false) {
            break resp;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline.into(), upload.read(&mut chunk))
            .await
            .expect("the early answer within 5 s")
            .unwrap_or(0);
        assert!(read > 0, "connection closed before an answer: {answer:?}");
        answer.extend_from_slice(&chunk[..read]);
    };
    assert_eq!(early.status, 413);
    // The upload is cut short with the upstream connection: the client is told so.
    assert_eq!(early.header("connection"), Some("close"));
    drop(upload);
    let client = proxy.client_h1();
    for round in 0..5 {
        let resp = client
            .get(proxy.url(&format!("/after/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "round {round}");
    }
    let requests = up.requests();
    assert!(
        requests
            .iter()
            .all(|(_, line)| line.starts_with("POST /upload ") || line.starts_with("GET /after/")),
        "a request arrived garbled: {requests:?}"
    );
    let post_conn = requests
        .iter()
        .find(|(_, l)| l.starts_with("POST"))
        .unwrap()
        .0;
    assert_eq!(
        requests.iter().filter(|(c, _)| *c == post_conn).count(),
        1,
        "the connection of the early answer was reused: {requests:?}"
    );
}

/// The client goes away in the middle of a large response: that upstream connection is not
/// reused (it still has body bytes in flight), and the next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_dropped_midway_does_not_return_its_connection() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        while let Some(line) = conn.read_request().await {
            if line.starts_with("GET /big") {
                // Far more than loopback socket buffers hold (a few MiB each way), so the body
                // is still in flight when the client goes.
                const SIZE: usize = 64 << 20;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
                if !conn.write(head.as_bytes()).await {
                    return;
                }
                let chunk = vec![b'b'; 1 << 20];
                for _ in 0..SIZE / chunk.len() {
                    if !conn.write(&chunk).await {
                        return;
                    }
                }
            } else if !conn.write(&answer_with_index(conn.index)).await {
                return;
            }
        }
    })
    .await;
    let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
    for round in 0..3 {
        let mut tls = proxy.tls().await;
        tokio::io::AsyncWriteExt::write_all(
            &mut tls,
            format!("GET /big/{round} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut some = vec![0u8; 32 * 1024];
        tokio::io::AsyncReadExt::read_exact(&mut tls, &mut some)
            .await
            .unwrap();
        drop(tls);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let resp = proxy
            .client_h1()
            .get(proxy.url(&format!("/small/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.starts_with("conn "), "{text:?}");
    }
    let requests = up.requests();
    for (at, (index, line)) in requests.iter().enumerate() {
        if line.starts_with("GET /big") {
            assert!(
                requests[at + 1..].iter().all(|(c, _)| c != index),
                "the connection of {line} was reused after the client dropped it: {requests:?}"
            );
        }
    }
}

/// A server that writes bytes nobody asked for on an idle keep-alive connection (an extra
/// response: it is out of step): the check before reuse drops that connection, so the next
/// request never reads those bytes as its answer, nor fails on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_stray_bytes_while_idle_is_not_reused() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        while let Some(_line) = conn.read_request().await {
            if !conn.write(&answer_with_index(conn.index)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            if !conn
                .write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY\n")
                .await
            {
                return;
            }
        }
    })
    .await;
    let proxy = TestProxy::start(&one_route(&[up.server()], "retries = 0")).await;
    let client = proxy.client_h1();
    for round in 0..4 {
        let resp = client
            .get(proxy.url(&format!("/r/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "round {round}");
        let text = resp.text().await.unwrap();
        assert_eq!(text, format!("conn {round}\n"), "round {round}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Idle upstream connections are closed after `keepalive_timeout` even when no request comes
/// to reuse (or expire) them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_keepalive_timeout_without_traffic() {
    let up = ScriptedUpstream::start(|mut conn| async move {
        while conn.read_request().await.is_some() {
            if !conn.write(OK_KEEP_ALIVE).await {
                return;
            }
        }
    })
    .await;
    let proxy = TestProxy::start(&one_route(
        &[up.server()],
        "retries = 0\nkeepalive_timeout = \"1s\"",
    ))
    .await;
    let client = proxy.client_h1();
    for round in 0..3 {
        let resp = client
            .get(proxy.url(&format!("/k/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(up.open() >= 1, "the connection is kept while fresh");
    assert!(
        eventually(Duration::from_secs(4), || up.open() == 0).await,
        "{} idle upstream connections still open after keepalive_timeout",
        up.open()
    );
}
