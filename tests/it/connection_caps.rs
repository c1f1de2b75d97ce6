//! Connection caps: `client.max_connections_per_ip` and `client.max_connections`, enforced at
//! accept before any TLS work, shared by the https and http listeners.
//!
//! On Linux every address of 127.0.0.0/8 is local, so client sockets bound to 127.0.0.2,
//! 127.0.0.3… are distinct clients of the same proxy.

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection from `from` (no TLS: the cap counts at accept, before the handshake).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// True when the proxy closed the connection at once (refused at accept); false when it is
/// still open after 300 ms (accepted, waiting for a TLS ClientHello or a request).
async fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("the proxy sent {n} bytes unasked"),
        Err(_) => false,
    }
}

/// Connects from `from` until a connection is accepted (a closed connection's place is freed
/// when the proxy notices the close); panics after 5 s.
async fn eventually_accepted(from: &str, to: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = connect_from(from, to).await;
        if !closed_at_once(&mut stream).await {
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "no connection from {from} accepted within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn refused(proxy: &TestProxy, reason: &str) -> u64 {
    proxy
        .handle()
        .metrics()
        .connections_refused
        .with_label_values(&[reason])
        .get()
}

/// reqwest from a chosen local address.
fn client_from(proxy: &TestProxy, from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_der(&proxy.cert_der).unwrap())
        .resolve("localhost", proxy.https)
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_cap_refuses_one_address_and_not_the_others() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(
        &up,
        "[client]\nmax_connections_per_ip = 4\nmax_connections = 100\nheader_timeout = \"5s\"\n",
    )
    .await;

    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from("127.0.0.1", proxy.https).await;
        assert!(!closed_at_once(&mut stream).await, "under the cap");
        held.push(stream);
    }
    // The fifth from the same address is closed at once, and so is a TLS handshake.
    let mut fifth = connect_from("127.0.0.1", proxy.https).await;
    assert!(closed_at_once(&mut fifth).await, "the fifth connection");
    assert!(
        tls_connect(proxy.https, Some("localhost"), &[b"http/1.1"], None)
            .await
            .is_err(),
        "a TLS handshake over the cap"
    );
    assert_eq!(refused(&proxy, "max_connections_per_ip"), 2);
    assert_eq!(refused(&proxy, "max_connections"), 0);

    // Another address is another client: served.
    let resp = client_from(&proxy, "127.0.0.2")
        .get(proxy.url("/other-client"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-real-ip").as_deref(), Some("127.0.0.2"));

    // One place freed (once the proxy has seen the close): 127.0.0.1 is served again.
    held.pop();
    let client = client_from(&proxy, "127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.get(proxy.url("/after")).send().await {
            Ok(resp) => {
                assert_eq!(resp.status(), 200);
                break;
            }
            Err(err) => assert!(
                Instant::now() < deadline,
                "127.0.0.1 not served again within 5 s: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overall_cap_counts_every_address() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(
        &up,
        "[client]\nmax_connections = 3\nmax_connections_per_ip = 2\nheader_timeout = \"5s\"\n",
    )
    .await;
    let mut held = Vec::new();
    for from in ["127.0.0.1", "127.0.0.1", "127.0.0.2"] {
        let mut stream = connect_from(from, proxy.https).await;
        assert!(!closed_at_once(&mut stream).await, "{from} under the caps");
        held.push(stream);
    }
    // A fresh address is under its own per-IP cap, but the proxy is full.
    let mut fourth = connect_from("127.0.0.3", proxy.https).await;
    assert!(closed_at_once(&mut fourth).await, "over max_connections");
    assert_eq!(refused(&proxy, "max_connections"), 1);
    assert_eq!(refused(&proxy, "max_connections_per_ip"), 0);

    held.remove(0);
    drop(eventually_accepted("127.0.0.3", proxy.https).await);
    assert_eq!(refused(&proxy, "max_connections_per_ip"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_shares_the_count() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(
        &up,
        "[client]\nmax_connections_per_ip = 2\nheader_timeout = \"5s\"\n",
    )
    .await;
    let mut plain = connect_from("127.0.0.1", proxy.http_addr()).await;
    assert!(!closed_at_once(&mut plain).await);
    let mut tls = connect_from("127.0.0.1", proxy.https).await;
    assert!(!closed_at_once(&mut tls).await);
    // Two open, on two listeners: the third, on either, is refused.
    let mut third = connect_from("127.0.0.1", proxy.http_addr()).await;
    assert!(closed_at_once(&mut third).await, "http over the cap");
    let mut fourth = connect_from("127.0.0.1", proxy.https).await;
    assert!(closed_at_once(&mut fourth).await, "https over the cap");
    assert_eq!(refused(&proxy, "max_connections_per_ip"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_per_ip_means_only_the_overall_cap() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(
        &up,
        "[client]\nmax_connections_per_ip = 0\nmax_connections = 300\nheader_timeout = \"5s\"\n",
    )
    .await;
    // Beyond the default per-IP cap of 256, from one address.
    let mut held = Vec::new();
    for _ in 0..280 {
        held.push(connect_from("127.0.0.1", proxy.https).await);
    }
    let mut last = connect_from("127.0.0.1", proxy.https).await;
    assert!(!closed_at_once(&mut last).await);
    assert_eq!(refused(&proxy, "max_connections_per_ip"), 0);
    assert_eq!(refused(&proxy, "max_connections"), 0);
    drop(held);
    proxy.assert_still_serves().await;
}

#[test]
fn max_connections_of_zero_is_refused() {
    let Err(errors) = rampart::config::load_str(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[client]\nmax_connections = 0\n",
        "caps.toml",
    ) else {
        panic!("max_connections = 0 was accepted");
    };
    let errors = errors.to_string();
    assert!(
        errors.contains("client.max_connections: must be at least 1"),
        "{errors}"
    );
}
