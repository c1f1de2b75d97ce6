//! Upstream failures (502/504), body limits (413) and the shape of the proxy's own errors.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio::net::{TcpSocket, TcpStream};

fn single_route(servers: &[String], upstream_extra: &str, extra: &str) -> String {
    format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n\n{extra}\n",
        upstream_toml("app", servers, upstream_extra)
    )
}

async fn error_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, String) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_a_plain_502() {
    let dead = dead_addr().await;
    let proxy = TestProxy::start(&single_route(
        &[format!("http://{dead}")],
        "retries = 0",
        "",
    ))
    .await;

    for client in [proxy.client_h1(), proxy.client_h2()] {
        let (status, headers, body) =
            error_of(client.get(proxy.url("/x")).send().await.unwrap()).await;
        assert_eq!(status, 502);
        assert_proxy_error(
            &headers,
            502,
            &body,
            "502 Bad Gateway\n",
            "refused upstream",
        );
        assert!(
            !body.contains(&dead.port().to_string()),
            "the body names the upstream port"
        );
    }
}

/// `response_timeout` is one timer per upstream connection, moved lazily (upstream/conn.rs): on
/// a reused connection the deadline still runs from each request's own start. The timer fires
/// early for a later request (set for the one before), and has already fired for a request
/// after a long idle spell; neither may cut the request short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_timeout_runs_from_each_request_on_a_reused_connection() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&single_route(
        &[up.server()],
        "response_timeout = \"1s\"\nretries = 0",
        "",
    ))
    .await;
    let client = proxy.client_h1();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = proxy.url(path);
        async move {
            let started = Instant::now();
            let status = client.get(url).send().await.unwrap().status().as_u16();
            (status, started.elapsed())
        }
    };

    assert_eq!(get("/first").await.0, 200);
    // The connection's timer is set for the first request's deadline, 0.4 s into the next one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, elapsed) = get("/slow/700").await;
    assert_eq!(
        status, 200,
        "answered in 0.7 s of a 1 s deadline, after {elapsed:?}"
    );
    // Idle past the deadline: the timer fired while the connection sat in the pool.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, elapsed) = get("/slow/300").await;
    assert_eq!(status, 200, "after {elapsed:?}");
    // And it still ends a slow one at the deadline.
    let (status, elapsed) = get("/slow/3000").await;
    assert_eq!(status, 504);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?}"
    );
    assert_eq!(
        up.connections(),
        1,
        "the first three requests shared one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_after_response_timeout() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&single_route(
        &[up.server()],
        "response_timeout = \"500ms\"\nretries = 0",
        "",
    ))
    .await;

    let started = Instant::now();
    let (status, headers, body) = error_of(
        proxy
            .client_h1()
            .get(proxy.url("/slow/3000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 504);
    assert_proxy_error(
        &headers,
        504,
        &body,
        "504 Gateway Timeout\n",
        "slow upstream",
    );
    assert!(
        elapsed >= Duration::from_millis(400),
        "504 after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?}"
    );
    assert_eq!(up.count(), 1, "a timed-out request is not retried");

    // A fast request on the same upstream is fine.
    let resp = proxy
        .client_h1()
        .get(proxy.url("/slow/10"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A listener whose accept queue is full: further SYNs are dropped, so a connect hangs.
async fn blackhole() -> (std::net::SocketAddr, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(0).unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    // keep the listener alive (never accepting) for the whole test
    std::mem::forget(listener);
    (addr, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_to_a_blackhole_is_502() {
    let (addr, _held) = blackhole().await;
    let proxy = TestProxy::start(&single_route(
        &[format!("http://{addr}")],
        "connect_timeout = \"300ms\"\nresponse_timeout = \"10s\"\nretries = 0",
        "",
    ))
    .await;

    let started = Instant::now();
    let (status, headers, body) = error_of(
        proxy
            .client_h1()
            .get(proxy.url("/bh"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 502);
    assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", "blackhole");
    assert!(
        elapsed >= Duration::from_millis(250),
        "502 after {elapsed:?}: not a connect timeout"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "502 after {elapsed:?}: connect_timeout ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_silence_from_the_upstream_is_502() {
    let garbage = RawUpstream::start_with(b"garbage\r\n\r\n".to_vec(), true).await;
    let silent = RawUpstream::start_with(Vec::new(), true).await;
    let config = format!(
        "{}{}\
         [[routes]]\nname = \"g\"\npath = \"/garbage/\"\nupstream = \"garbage\"\n\n\
         [[routes]]\nname = \"s\"\npath = \"/silent/\"\nupstream = \"silent\"\n",
        upstream_toml("garbage", &[garbage.server()], "retries = 0"),
        upstream_toml("silent", &[silent.server()], "retries = 0"),
    );
    let proxy = TestProxy::start(&config).await;
    for path in ["/garbage/x", "/silent/x"] {
        let (status, headers, body) =
            error_of(proxy.client_h1().get(proxy.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 502, "{path}");
        assert_proxy_error(&headers, 502, &body, "502 Bad Gateway\n", path);
    }
    assert_eq!(garbage.heads().len(), 1);
    assert_eq!(silent.heads().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_unchanged() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let resp = proxy
        .client_h1()
        .get(proxy.url("/status/503"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "status 503\n");
    let resp = proxy
        .client_h1()
        .get(proxy.url("/status/404"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "status 404\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_body_over_max_body_is_413_before_the_upstream_sees_anything() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[client]\nmax_body = \"2KiB\"\n").await;

    for client in [proxy.client_h1(), proxy.client_h2()] {
        let (status, headers, body) = error_of(
            client
                .post(proxy.url("/upload"))
                .body(vec![b'x'; 4096])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 413);
        assert_proxy_error(&headers, 413, &body, "413 Payload Too Large\n", "413");
    }
    assert_eq!(up.count(), 0, "the upstream saw an over-limit request");

    // exactly at the limit is fine
    let resp = proxy
        .client_h1()
        .post(proxy.url("/upload"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().body.len(), 2048);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_max_body_is_counted_and_the_upstream_never_gets_it_whole() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[client]\nmax_body = \"2KiB\"\n").await;

    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        request.extend_from_slice(b"3e8\r\n");
        request.extend_from_slice(&[b'y'; 1000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let raw = proxy.raw_h1(&request).await;
    let responses = parse_responses(&raw);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(responses[0].status, 413);
    assert_eq!(responses[0].body_str(), "413 Payload Too Large\n");

    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in up.requests() {
        assert!(
            !r.body_complete,
            "the upstream received a complete over-limit body ({} bytes)",
            r.body.len()
        );
        assert!(
            r.body.len() <= 2048,
            "the upstream received {} bytes",
            r.body.len()
        );
    }

    // chunked under the limit works
    let ok = b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let resp = one_response(&proxy.raw_h1(ok).await);
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().body, b"hello");
    assert!(up.last().body_complete);
}

/// Sends a POST announcing a 40 MiB body and keeps sending it while reading the answer: returns
/// the response and whether the connection was closed (EOF or reset) within `close_within`
/// after it, while the client was still sending.
async fn upload_refused_midway(
    proxy: &TestProxy,
    head_extra: &str,
    path: &str,
    close_within: Duration,
) -> (RawResponse, bool, u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = proxy.tls().await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n{head_extra}\r\n",
        40u64 << 20
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let sender = tokio::spawn(async move {
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..4096 {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let (response, _) = read_one_response(&mut reader, Duration::from_secs(10))
        .await
        .expect("an error response");
    let mut rest = [0u8; 4096];
    let closed = tokio::time::timeout(close_within, async {
        loop {
            match reader.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    sender.abort();
    (response, closed, sent.load(Ordering::Relaxed))
}

/// An error sent while the request body is still coming (504 from a silent upstream, 431 from
/// an oversized head) says `Connection: close`, and the proxy closes instead of reading the
/// rest of the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_the_body_is_read_close_the_connection() {
    // Accepts and never reads: the upload backs up, and the answer is a 504.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let proxy = TestProxy::start(&single_route(
        &[format!("http://{silent_addr}")],
        "response_timeout = \"500ms\"\nretries = 0",
        "[client]\nmax_header_bytes = \"1KiB\"\n",
    ))
    .await;

    let (response, closed, sent) =
        upload_refused_midway(&proxy, "", "/slow/5000", Duration::from_secs(3)).await;
    assert_eq!(response.status, 504);
    assert_eq!(response.header("connection"), Some("close"), "504");
    assert!(
        closed,
        "504: the connection stayed open ({sent} body bytes sent)"
    );

    let big = format!("X-Big: {}\r\n", "b".repeat(2000));
    let (response, closed, sent) =
        upload_refused_midway(&proxy, &big, "/echo", Duration::from_secs(3)).await;
    assert_eq!(response.status, 431);
    assert_eq!(response.header("connection"), Some("close"), "431");
    assert!(
        closed,
        "431: the connection stayed open ({sent} body bytes sent)"
    );

    // Errors of requests without a body keep the connection.
    let mut stream = proxy.tls().await;
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        format!("GET /x HTTP/1.1\r\nHost: localhost\r\n{big}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (response, _) = read_one_response(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response.status, 431);
    assert_eq!(response.header("connection"), None);
    // … and the connection serves the next request.
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        format!("GET /y HTTP/1.1\r\nHost: localhost\r\n{big}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (response, _) = read_one_response(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response.status, 431);
}

/// nginx's `proxy_read_timeout` in a `location`: a route's `response_timeout` replaces the
/// upstream's for that route only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_response_timeout_overrides_the_upstream_one() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::start(&format!(
        "{}[[routes]]\nname = \"reports\"\npath = \"/\"\nmethods = [\"POST\"]\n\
         upstream = \"app\"\nresponse_timeout = \"60s\"\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml(
            "app",
            &[up.server()],
            "response_timeout = \"500ms\"\nretries = 0"
        )
    ))
    .await;

    for client in [proxy.client_h1(), proxy.client_h2()] {
        // The upstream default: the slow answer is cut with 504.
        let resp = client.get(proxy.url("/slow/3000")).send().await.unwrap();
        assert_eq!(resp.status(), 504, "the upstream's 500ms applies");
        // The route's longer timeout: the same slow answer comes through.
        let resp = client
            .post(proxy.url("/slow/3000"))
            .body("report")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "the route's 60s applies");
        assert_eq!(resp.text().await.unwrap(), "slow\n");
    }
}

#[test]
fn a_route_response_timeout_is_refused_where_nothing_waits_for_an_upstream() {
    for (route, message) in [
        (
            "respond = { status = 200, body = \"x\" }\nresponse_timeout = \"5s\"",
            "only an upstream route waits for a response; remove it here",
        ),
        (
            "upstream = \"app\"\nresponse_timeout = \"0s\"",
            "must be more than 0s",
        ),
    ] {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
             self_signed_if_missing = true\n\
             [upstreams.app]\nservers = [\"http://127.0.0.1:1\"]\n\
             [[routes]]\npath = \"/\"\n{route}\n"
        );
        let errors =
            rampart::config::load_str_with(&text, "t.toml", rampart::config::MissingCert::InMemory)
                .unwrap_err();
        let line = text
            .lines()
            .position(|l| l.starts_with("response_timeout"))
            .unwrap()
            + 1;
        let printed = errors.0.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            printed,
            vec![format!(
                "t.toml:{line}:20: routes[0].response_timeout: {message}"
            )],
        );
    }
}
