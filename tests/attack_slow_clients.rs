//! Slow and oversized clients: slowloris headers, slow handshakes, oversized header sections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: &str = "[client]\nheader_timeout = \"1s\"\nmax_header_bytes = \"4KiB\"\n";

/// Drips `first` then one byte of `drip` every `every`; returns when the server closes (with
/// what it sent and when), or None if it was still open after `limit`.
async fn drip_until_closed<S>(
    stream: S,
    first: &[u8],
    drip: &[u8],
    every: Duration,
    limit: Duration,
) -> Option<(Duration, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let first = first.to_vec();
    let drip = drip.to_vec();
    let writer_task = tokio::spawn(async move {
        if writer.write_all(&first).await.is_err() {
            return;
        }
        let _ = writer.flush().await;
        for b in drip {
            tokio::time::sleep(every).await;
            if writer.write_all(&[b]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        // keep the write half open
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(limit, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer_task.abort();
    result.ok().map(|_| (started.elapsed(), got))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_headers_are_cut_off_while_normal_clients_are_served() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, LIMITS).await;

    let mut slow = Vec::new();
    for _ in 0..8 {
        let stream = proxy.tls().await;
        slow.push(tokio::spawn(drip_until_closed(
            stream,
            b"GET /slow-loris HTTP/1.1\r\nHost: localhost\r\n",
            b"X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n",
            Duration::from_millis(1000),
            Duration::from_secs(5),
        )));
    }

    // While they drip, a normal client is served promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let resp = proxy
        .client_h1()
        .get(proxy.url("/normal"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "a normal request waited {:?}",
        started.elapsed()
    );

    for task in slow {
        let (elapsed, got) = task
            .await
            .unwrap()
            .expect("a slowloris connection stayed open for 5 s");
        assert!(
            elapsed >= Duration::from_millis(700),
            "closed after {elapsed:?}, before header_timeout"
        );
        assert!(
            elapsed < Duration::from_millis(3500),
            "closed after {elapsed:?}"
        );
        if let Some((resp, _)) = parse_response(&got, true) {
            assert_ne!(
                resp.status, 200,
                "the slow request was answered as if complete"
            );
        }
    }
    assert!(
        up.requests().iter().all(|r| r.path != "/slow-loris"),
        "an incomplete head reached the upstream"
    );
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_handshake_is_cut_off() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, LIMITS).await;

    let tcp = TcpStream::connect(proxy.https).await.unwrap();
    // A handshake record announced as 512 bytes, dripped a byte at a time.
    let closed = drip_until_closed(
        tcp,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
        &[0u8; 64],
        Duration::from_millis(250),
        Duration::from_secs(5),
    )
    .await;
    let (elapsed, _) = closed.expect("a dripping handshake stayed open for 5 s");
    assert!(
        elapsed >= Duration::from_millis(700),
        "closed after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(3500),
        "closed after {elapsed:?}"
    );
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_sections_are_431() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, LIMITS).await;

    let one_big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(6000)
    );
    let mut many = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-Many-{i}: {}\r\n", "b".repeat(40)));
    }
    many.push_str("Connection: close\r\n\r\n");
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "c".repeat(6000)
    );
    for (what, attack) in [
        ("one big header", &one_big),
        ("many headers", &many),
        ("long request line", &long_uri),
    ] {
        let resp = one_response(&proxy.raw_h1(attack.as_bytes()).await);
        assert_eq!(resp.status, 431, "{what}");
        assert_proxy_error(
            &resp,
            431,
            &resp.body_str(),
            "431 Request Header Fields Too Large\n",
            what,
        );
    }
    assert_eq!(up.count(), 0, "an oversized request reached the upstream");

    // over HTTP/2 too
    let resp = proxy
        .client_h2()
        .get(proxy.url("/"))
        .header("X-Big", "a".repeat(6000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 431, "HTTP/2");
    assert_eq!(up.count(), 0);

    // just under the limit is fine
    let resp = proxy
        .client_h1()
        .get(proxy.url("/"))
        .header("X-Fits", "a".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_section_is_refused_without_reaching_the_upstream() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, LIMITS).await;
    let attack = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Huge: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(512 * 1024)
    );
    let raw = proxy.raw_h1(attack.as_bytes()).await;
    // Beyond hyper's read buffer, hyper answers itself; the answer must still be ours in shape.
    let (resp, _) = parse_response(&raw, true).expect("a 431 response");
    assert_eq!(resp.status, 431);
    common::assert_strict_headers(&resp, "hyper's 431");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    common::assert_proxy_error(
        &resp,
        431,
        &body,
        "431 Request Header Fields Too Large\n",
        "hyper's 431",
    );
    assert_eq!(up.count(), 0);
    proxy.assert_still_serves().await;
}
