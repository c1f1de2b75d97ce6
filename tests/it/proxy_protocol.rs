//! The PROXY protocol (`listen.proxy_protocol_from`): rampart behind a real HAProxy (Debian's
//! `haproxy`) in TCP mode, with `send-proxy-v2` and `send-proxy`, clients connecting to HAProxy
//! from their own loopback addresses (127.0.0.2, 127.0.0.3) and HAProxy connecting to rampart
//! from 127.0.0.10 (`source`): the access log, X-Forwarded-For, IP rules, rate limits and bans
//! see the clients. Then raw TCP clients: truncated, oversized, slow and forged headers from the
//! listed peer, and a header from a peer not listed, are refused (closed without an answer).
//!
//! The HAProxy tests need the `haproxy` binary and fail (not skip) without it. CI installs it
//! (`.ci/run`); elsewhere: `apt-get install haproxy`.

use crate::common;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{logged_addr, rampart, Running};
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// HAProxy's address towards rampart: the only peer allowed to send a header.
const BALANCER: &str = "127.0.0.10";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port()
}

/// A `haproxy` of this test, killed on drop.
struct Haproxy {
    child: Child,
    /// Frontends: `send-proxy-v2` to https, `send-proxy` (v1) to https, `send-proxy-v2` to http.
    v2: SocketAddr,
    v1: SocketAddr,
    http_v2: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(https: SocketAddr, http: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let [v2, v1, http_v2] =
            [free_port(), free_port(), free_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let config = format!(
            "global\n  maxconn 100\n\ndefaults\n  mode tcp\n  timeout connect 10s\n  timeout client 60s\n  timeout server 60s\n\n\
             frontend fe_v2\n  bind {v2}\n  default_backend be_v2\n\
             backend be_v2\n  server rampart {https} send-proxy-v2 source {BALANCER}\n\n\
             frontend fe_v1\n  bind {v1}\n  default_backend be_v1\n\
             backend be_v1\n  server rampart {https} send-proxy source {BALANCER}\n\n\
             frontend fe_http\n  bind {http_v2}\n  default_backend be_http\n\
             backend be_http\n  server rampart {http} send-proxy-v2 source {BALANCER}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start haproxy ({err}): these tests need it; install it with \
                     `apt-get install haproxy` (.ci/run does)"
                )
            });
        let haproxy = Haproxy {
            child,
            v2,
            v1,
            http_v2,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [v2, v1, http_v2] {
            while std::net::TcpStream::connect(addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "haproxy does not listen on {addr}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        haproxy
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client from `source` that reaches `localhost` at `via` (an HAProxy frontend).
fn client(dir: &Path, via: SocketAddr, source: &str) -> reqwest::Client {
    let pem = std::fs::read(dir.join("certs/dev.crt")).expect("the dev certificate was written");
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .http1_only()
        .local_address(source.parse::<IpAddr>().unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", via)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, via: SocketAddr, path: &str, id: &str) -> Option<u16> {
    client
        .get(format!("https://localhost:{}{path}", via.port()))
        .header("x-request-id", id)
        .send()
        .await
        .ok()
        .map(|resp| resp.status().as_u16())
}

/// The access-log lines (JSON) of the running binary, once there are `count`.
async fn access_lines(running: &Running, count: usize) -> Vec<serde_json::Map<String, Value>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines: Vec<_> = running
            .stdout()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|value| value.as_object().cloned())
            .collect();
        if lines.len() >= count || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_every_stage_sees_the_real_client() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nproxy_protocol_from = [\"{BALANCER}/32\"]\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [log]\naccess = true\n\n\
         [ban]\nafter = 3\n\n\
         [upstreams.app]\nservers = [{:?}]\n\n\
         [[routes]]\nname = \"staff\"\npath = \"/staff/\"\nupstream = \"app\"\nallow = [\"127.0.0.2/32\"]\n\n\
         [[routes]]\nname = \"limited\"\npath = \"/limited/\"\nupstream = \"app\"\nrate_limit = {{ rate = \"1/min\", burst = 1 }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        up.server()
    );
    std::fs::write(dir.path().join("rampart.toml"), config).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "-c", "rampart.toml", "--no-watch"]);
    let mut running = Running::spawn(cmd);
    let serving = running
        .wait_for_line("rampart is serving", Duration::from_secs(30))
        .await;
    let https = logged_addr(&serving, "https");
    let http = logged_addr(&serving, "http");
    let haproxy = Haproxy::start(https, http);

    let alice = client(dir.path(), haproxy.v2, "127.0.0.2");
    let bob = client(dir.path(), haproxy.v1, "127.0.0.3");

    // X-Forwarded-For and X-Real-IP name the client, through v2 and v1 alike.
    assert_eq!(get(&alice, haproxy.v2, "/who", "pp-alice").await, Some(200));
    let seen = up.last();
    assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.2"]);
    assert_eq!(seen.header_all("x-real-ip"), vec!["127.0.0.2"]);
    assert_eq!(get(&bob, haproxy.v1, "/who", "pp-bob").await, Some(200));
    assert_eq!(up.last().header_all("x-forwarded-for"), vec!["127.0.0.3"]);

    // IP rules: the staff route admits 127.0.0.2 only.
    assert_eq!(
        get(&alice, haproxy.v2, "/staff/", "pp-staff-a").await,
        Some(200)
    );
    assert_eq!(
        get(&bob, haproxy.v1, "/staff/", "pp-staff-b").await,
        Some(403)
    );

    // Rate limits: each client has its own quota, though both come through one balancer.
    assert_eq!(
        get(&alice, haproxy.v2, "/limited/", "pp-lim-a1").await,
        Some(200)
    );
    assert_eq!(
        get(&alice, haproxy.v2, "/limited/", "pp-lim-a2").await,
        Some(429)
    );
    assert_eq!(
        get(&bob, haproxy.v1, "/limited/", "pp-lim-b1").await,
        Some(200)
    );

    // The access log names each client.
    let lines = access_lines(&running, 7).await;
    let client_of = |id: &str| {
        lines
            .iter()
            .find(|line| line["request_id"] == id)
            .map(|line| line["client_ip"].clone())
            .unwrap_or_else(|| panic!("no access line for {id}: {lines:?}"))
    };
    assert_eq!(client_of("pp-alice"), "127.0.0.2");
    assert_eq!(client_of("pp-bob"), "127.0.0.3");
    assert_eq!(client_of("pp-staff-b"), "127.0.0.3");
    assert_eq!(client_of("pp-lim-a2"), "127.0.0.2");

    // Bans: three 429s ban Alice, not the balancer: Bob is still served through it.
    assert_eq!(
        get(&alice, haproxy.v2, "/limited/", "pp-lim-a3").await,
        Some(429)
    );
    assert_eq!(
        get(&alice, haproxy.v2, "/limited/", "pp-lim-a4").await,
        Some(429)
    );
    let fresh = client(dir.path(), haproxy.v2, "127.0.0.2");
    assert_ne!(get(&fresh, haproxy.v2, "/", "pp-banned").await, Some(200));
    assert_eq!(get(&bob, haproxy.v1, "/", "pp-bob-2").await, Some(200));

    // The plain-http listener too: the redirect is answered through a v2 header.
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new("127.0.0.3".parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(haproxy.http_v2).await.unwrap();
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_close(&mut stream, Duration::from_secs(10)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 308"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

// ---------------------------------------------------------------------------------------------
// Raw clients against the in-process proxy
// ---------------------------------------------------------------------------------------------

/// A proxy that expects headers from [`BALANCER`], with a short `header_timeout`.
async fn listed_proxy(up: &TestUpstream) -> TestProxy {
    TestProxy::builder()
        .listen(&format!("proxy_protocol_from = [\"{BALANCER}/32\"]"))
        .config(&simple_config(up))
        .config("[client]\nheader_timeout = \"2s\"\n")
        .start()
        .await
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `bytes` from `source`, then reads until the proxy closes (at most 20 s).
async fn send_from(source: &str, to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect_from(source, to).await;
    let _ = stream.write_all(bytes).await;
    read_until_close(&mut stream, Duration::from_secs(20)).await
}

fn refused(proxy: &TestProxy, reason: &str) -> f64 {
    let series = format!("rampart_proxy_protocol_refused_total{{reason=\"{reason}\"}} ");
    proxy
        .handle()
        .metrics()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

fn v2_header(command: u8, addresses: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(if addresses.is_empty() { 0x00 } else { 0x11 });
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(addresses);
    out
}

const REQUEST: &[u8] = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_header_is_taken_to_the_byte_and_local_is_the_balancer() {
    let up = TestUpstream::start().await;
    let proxy = listed_proxy(&up).await;
    let http = proxy.http_addr();
    let v1 = [
        b"PROXY TCP4 192.0.2.9 10.0.0.1 40000 80\r\n".as_slice(),
        REQUEST,
    ]
    .concat();
    let answer = send_from(BALANCER, http, &v1).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 308"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let local = [v2_header(0, &[]), REQUEST.to_vec()].concat();
    let answer = send_from(BALANCER, http, &local).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 308"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(refused(&proxy, "invalid") + refused(&proxy, "missing"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_from_the_balancer_are_closed_without_an_answer() {
    let up = TestUpstream::start().await;
    let proxy = listed_proxy(&up).await;
    for to in [proxy.https, proxy.http_addr()] {
        // No header at all: a request (or a TLS hello) straight away.
        assert!(send_from(BALANCER, to, REQUEST).await.is_empty());
        // Forged: not an address, and a v1 line without its CR.
        let forged = [
            b"PROXY TCP4 999.0.2.9 10.0.0.1 40000 80\r\n".as_slice(),
            REQUEST,
        ]
        .concat();
        assert!(send_from(BALANCER, to, &forged).await.is_empty());
        let no_cr = [
            b"PROXY TCP4 192.0.2.9 10.0.0.1 40000 80\n".as_slice(),
            REQUEST,
        ]
        .concat();
        assert!(send_from(BALANCER, to, &no_cr).await.is_empty());
        // Oversized: a v1 line past 107 bytes, a v2 length past 536.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200], b"\r\n", REQUEST].concat();
        assert!(send_from(BALANCER, to, &long).await.is_empty());
        let mut huge = v2_header(1, &[0; 12]);
        huge[14..16].copy_from_slice(&1000u16.to_be_bytes());
        assert!(send_from(BALANCER, to, &huge).await.is_empty());
    }
    assert_eq!(refused(&proxy, "invalid"), 10.0);

    // Truncated: half a header, then the balancer hangs up.
    for to in [proxy.https, proxy.http_addr()] {
        let mut stream = connect_from(BALANCER, to).await;
        stream
            .write_all(b"PROXY TCP4 192.0.2.9 10.0")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        assert!(read_until_close(&mut stream, Duration::from_secs(20))
            .await
            .is_empty());
    }
    // Slow: a byte every 300 ms, never whole within header_timeout (2 s).
    for to in [proxy.https, proxy.http_addr()] {
        let stream = connect_from(BALANCER, to).await;
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            for byte in b"PROXY TCP4 192.0.2.9 10.0.0.1 40000 80\r\n" {
                if write.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut out)).await;
        assert!(out.is_empty());
        writer.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused(&proxy, "missing") < 2.0 || refused(&proxy, "timeout") < 2.0 {
        assert!(Instant::now() < deadline, "missing and timeout are counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_a_peer_not_listed_is_never_believed() {
    let up = TestUpstream::start().await;
    let proxy = listed_proxy(&up).await;
    let spoof = [
        b"PROXY TCP4 6.6.6.6 10.0.0.1 40000 80\r\n".as_slice(),
        REQUEST,
    ]
    .concat();
    // Plain http: closed without a redirect (hyper never answers the would-be request line).
    assert!(send_from("127.0.0.1", proxy.http_addr(), &spoof)
        .await
        .is_empty());
    let v2 = [
        v2_header(1, &[6, 6, 6, 6, 10, 0, 0, 1, 0, 80, 0, 80]),
        REQUEST.to_vec(),
    ]
    .concat();
    assert!(send_from("127.0.0.1", proxy.http_addr(), &v2)
        .await
        .is_empty());
    // https: closed before any TLS.
    assert!(send_from("127.0.0.1", proxy.https, &spoof).await.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused(&proxy, "unlisted") < 3.0 {
        assert!(
            Instant::now() < deadline,
            "unlisted headers are counted: {}",
            proxy.handle().metrics().render()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same peer without a header is served as itself.
    proxy.assert_still_serves().await;
    assert_eq!(up.last().header_all("x-forwarded-for"), vec!["127.0.0.1"]);
}

/// `max_connections_per_ip` counts a balancer's connections against the clients its headers
/// name, not against the balancer: a third connection for one client is closed, another
/// client's is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_counts_the_clients_behind_the_balancer() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(&format!("proxy_protocol_from = [\"{BALANCER}/32\"]"))
        .config(&simple_config(&up))
        .config("[client]\nmax_connections_per_ip = 2\n")
        .start()
        .await;
    let http = proxy.http_addr();
    let header = |client: &str| format!("PROXY TCP4 {client} 10.0.0.1 40000 80\r\n").into_bytes();
    // Two connections of one client, held open (the header, no request yet).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(BALANCER, http).await;
        stream.write_all(&header("192.0.2.50")).await.unwrap();
        held.push(stream);
    }
    let refused_per_ip = || {
        let series = "rampart_connections_refused_total{reason=\"max_connections_per_ip\"} ";
        proxy
            .handle()
            .metrics()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The third for that client is closed; wait until the first two are counted (each is
    // counted once its header is read) by retrying it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let third = [header("192.0.2.50"), REQUEST.to_vec()].concat();
        let answer = send_from(BALANCER, http, &third).await;
        if answer.is_empty() {
            break;
        }
        assert!(answer.starts_with(b"HTTP/1.1 308"));
        assert!(
            Instant::now() < deadline,
            "the third connection is never refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused_per_ip() >= 1.0);
    // Another client behind the same balancer is served.
    let other = [header("192.0.2.51"), REQUEST.to_vec()].concat();
    assert!(send_from(BALANCER, http, &other)
        .await
        .starts_with(b"HTTP/1.1 308"));
    // The held connections are served too.
    for mut stream in held {
        stream.write_all(REQUEST).await.unwrap();
        let answer = read_until_close(&mut stream, Duration::from_secs(20)).await;
        assert!(answer.starts_with(b"HTTP/1.1 308"));
    }
}
