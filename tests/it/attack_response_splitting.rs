//! Response splitting through the error-head rewriter: hyper's bare error head
//! (`HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: …\r\n\r\n`) is
//! rewritten into the proxy's own error response, and a response body that holds those very
//! bytes at a write boundary must never be taken for it. If it were, the client would get more
//! bytes than `Content-Length` says, and on a keep-alive connection read them as the next
//! response: one the app's user chose.
//!
//! Each test sends a request, reads exactly its declared length, checks that nothing more
//! arrives, then sends a second request on the same connection and checks that its answer is
//! the real one.

use crate::common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// hyper's automatic error head, to the letter (the date is any IMF-fixdate).
const HYPER_ERROR_HEAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 04:00:00 GMT\r\n\r\n";

/// An upstream whose every response body is `first`, a pause (so the proxy writes it on its
/// own), then hyper's error head: a write of exactly those bytes.
async fn splitting_upstream(first: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while find(&buf, b"\r\n\r\n").is_none() {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = find(&buf, b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                        first.len() + HYPER_ERROR_HEAD.len()
                    );
                    let mut out = head.into_bytes();
                    out.extend_from_slice(first);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    if stream.write_all(HYPER_ERROR_HEAD).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), task)
}

/// One keep-alive request; returns the response, after checking that no byte follows it.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (response, extra) = read_one_response(stream, Duration::from_secs(5))
        .await
        .expect("a response");
    assert!(
        extra.is_empty(),
        "{path}: {} bytes beyond Content-Length: {:?}",
        extra.len(),
        String::from_utf8_lossy(&extra)
    );
    // Anything written after the declared length would be read as the next response.
    let mut more = [0u8; 1024];
    match tokio::time::timeout(Duration::from_millis(150), stream.read(&mut more)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("{path}: the connection closed after a good response"),
        Ok(Ok(n)) => panic!(
            "{path}: {n} bytes beyond Content-Length: {:?}",
            String::from_utf8_lossy(&more[..n])
        ),
        Ok(Err(err)) => panic!("{path}: {err}"),
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_body_holding_hypers_error_head_arrives_byte_exact() {
    let (server, _task) = splitting_upstream(b"first part;").await;
    let config = format!(
        "{}[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[server], "")
    );
    let proxy = TestProxy::start(&config).await;
    let mut stream = proxy.tls().await;
    let mut expected = b"first part;".to_vec();
    expected.extend_from_slice(HYPER_ERROR_HEAD);
    for round in 0..10 {
        let response = exchange(&mut stream, &format!("/body/{round}")).await;
        assert_eq!(response.status, 200, "round {round}");
        assert_eq!(response.body, expected, "round {round}");
    }
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_file_holding_hypers_error_head_arrives_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    // The error head starts exactly at the static stream's chunk boundary (128 KiB).
    let mut file = vec![b'a'; 128 * 1024];
    file.extend_from_slice(HYPER_ERROR_HEAD);
    std::fs::write(dir.path().join("trap.bin"), &file).unwrap();
    std::fs::write(dir.path().join("small.txt"), "small\n").unwrap();
    let config = format!(
        "[[routes]]\nname = \"files\"\npath = \"/files/\"\nstatic = {{ root = {:?} }}\n",
        dir.path()
    );
    let proxy = TestProxy::start(&config).await;
    let mut stream = proxy.tls().await;
    for round in 0..20 {
        let response = exchange(&mut stream, "/files/trap.bin").await;
        assert_eq!(response.status, 200, "round {round}");
        assert!(response.body == file, "round {round}: the body changed");
        // The next response on the connection is the real one.
        let next = exchange(&mut stream, "/files/small.txt").await;
        assert_eq!(next.status, 200, "round {round}");
        assert_eq!(next.body, b"small\n", "round {round}");
    }
}

/// The rewriter still does its work: a head hyper refuses gets the proxy's own 400, with the
/// security headers and a request id, and it is logged and counted (route `-`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_hyper_refuses_still_gets_the_proxys_400() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let raw = proxy
        .raw_h1(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header Name: x\r\n\r\n")
        .await;
    let response = one_response(&raw);
    assert_eq!(response.status, 400);
    assert_proxy_error(
        &response,
        400,
        &response.body_str(),
        "400 Bad Request\n",
        "refused head",
    );
    assert_eq!(up.count(), 0);
}
