//! Slow and oversized clients: slowloris headers, slow handshakes, oversized header sections.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Requests completed per window of `width` in `[from, from + width × n)`, in order.
fn per_window(done: &[Instant], from: Instant, width: Duration, n: u32) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let start = from + width * i;
            let end = start + width;
            done.iter().filter(|t| **t >= start && **t < end).count()
        })
        .collect()
}

/// The real binary on `127.0.0.1:0` in front of `up`: its own process, so the work an attack
/// costs it does not slow anything else in the test.
struct BinaryProxy {
    _proc: common::binary::Running,
    https: std::net::SocketAddr,
    cert_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl BinaryProxy {
    /// `body`: everything after `[listen]`, `[tls]` and `[log]`.
    async fn start(body: &str) -> BinaryProxy {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("p.crt"), dir.path().join("p.key"));
        rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
        let config = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
             [log]\naccess = false\n\n{body}\n"
        );
        let path = dir.path().join("rampart.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = common::binary::rampart(dir.path());
        cmd.args(["run", "--no-watch", "-c"]).arg(&path);
        let mut proc = common::binary::Running::spawn(cmd);
        let serving = proc
            .wait_for_line("rampart is serving", Duration::from_secs(20))
            .await;
        BinaryProxy {
            https: common::binary::logged_addr(&serving, "https"),
            cert_pem: std::fs::read(&cert).unwrap(),
            _proc: proc,
            _dir: dir,
        }
    }

    /// A normal client requesting `/normal` one request after another on one keep-alive
    /// HTTP/1.1 connection until `stop`; each completion time is recorded. Returns the
    /// number of failed requests.
    fn normal_traffic(
        &self,
        done: Arc<Mutex<Vec<Instant>>>,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<usize> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(reqwest::Certificate::from_pem(&self.cert_pem).unwrap())
            .resolve("localhost", self.https)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/normal", self.https.port());
        tokio::spawn(async move {
            let mut failures = 0;
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = resp.bytes().await;
                        done.lock().unwrap().push(Instant::now());
                    }
                    _ => failures += 1,
                }
            }
            failures
        })
    }
}

/// 200 slowloris connections (150 dripping their request head after the TLS handshake, 50
/// dripping the TLS handshake itself), 25 slow POSTs (a complete head, then one body byte
/// every 200 ms) and 25 stalled POSTs (a head and 10 body bytes, then nothing), all at once,
/// against the real binary, while a normal client sends requests one after another on a
/// keep-alive connection. Every slow connection is closed within its timeout: the head or
/// handshake within `header_timeout`, the stalled POST at `body_timeout`, the slow POST when
/// its upstream exchange passes `response_timeout` while waiting for the client's body (both
/// 408: the client's fault, not the app's).
///
/// The normal client's rate while they are all open stays at ≥ 90% of its rate just before:
/// a comparison of two periods of one run (twelve 250 ms windows each), not an absolute time.
/// A second, identical proxy that is not attacked serves a second normal client at the same
/// time, and each window's count is taken relative to the control's in the same window, so
/// the machine's own ups and downs (other tests, other processes) cancel out: the median of
/// those ratios during the attack must be ≥ 90% of their median before.
///
/// Not in the default run: a rate measured on a 2-core machine that also runs the other tests
/// swings past 10% (82% seen while a benchmark ran beside it). Run it on a quiet machine:
/// `cargo test --test attack_slow_clients -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "rate-sensitive: run alone on a quiet machine"]
async fn hundreds_of_slow_connections_are_closed_in_time_and_normal_traffic_keeps_its_rate() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    const RESPONSE_TIMEOUT: Duration = Duration::from_secs(6);
    const BODY_TIMEOUT: Duration = Duration::from_secs(3);
    const WINDOW: Duration = Duration::from_millis(250);
    const WINDOWS: u32 = 12;
    // The proxy starts a connection's header timer when it has finished the handshake, which a
    // debug build does late when hundreds arrive at once on a loaded 2-core machine.
    const MARGIN: Duration = Duration::from_secs(3);
    let up = TestUpstream::start().await;
    let config = format!(
        "[client]\nheader_timeout = \"5s\"\nbody_timeout = \"3s\"\n\
         max_connections_per_ip = 1000\n\n{}\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], "response_timeout = \"6s\"")
    );
    let attacked = BinaryProxy::start(&config).await;
    let control = BinaryProxy::start(&config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let control_done = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let normal = attacked.normal_traffic(done.clone(), stop.clone());
    let control_normal = control.normal_traffic(control_done.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline_from = Instant::now();
    tokio::time::sleep(WINDOW * WINDOWS).await;

    // The attack: every connection reports its kind, when it was closed (measured from its
    // last step before the wait: the handshake done, or the connect for the handshake
    // drippers) and what it received.
    let established = Arc::new(tokio::sync::Barrier::new(251));
    let mut attackers = Vec::new();
    for i in 0..250 {
        let https = attacked.https;
        let established = established.clone();
        attackers.push(tokio::spawn(async move {
            let (kind, started, closed) = if i < 50 {
                let tcp = TcpStream::connect(https).await.unwrap();
                established.wait().await;
                // A ClientHello announced as 512 bytes, one byte every 200 ms.
                let closed = drip_until_closed(
                    tcp,
                    &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
                    &[0u8; 100],
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                ("handshake", Instant::now(), closed.await)
            } else if i < 200 {
                let tls = tls_connect(https, Some("localhost"), &[b"http/1.1"], None)
                    .await
                    .unwrap();
                let started = Instant::now();
                established.wait().await;
                let closed = drip_until_closed(
                    tls,
                    b"GET /slow-loris HTTP/1.1\r\nHost: localhost\r\n",
                    &[b'X'; 100],
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                ("head", started, closed.await)
            } else if i < 225 {
                let tls = tls_connect(https, Some("localhost"), &[b"http/1.1"], None)
                    .await
                    .unwrap();
                established.wait().await;
                let started = Instant::now();
                let closed = drip_until_closed(
                    tls,
                    b"POST /slow-post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\
                      Content-Type: application/x-www-form-urlencoded\r\n\r\n",
                    &[b'a'; 100],
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                ("post", started, closed.await)
            } else {
                let tls = tls_connect(https, Some("localhost"), &[b"http/1.1"], None)
                    .await
                    .unwrap();
                established.wait().await;
                let started = Instant::now();
                let closed = drip_until_closed(
                    tls,
                    b"POST /stalled-post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\
                      Content-Type: application/x-www-form-urlencoded\r\n\r\n0123456789",
                    &[],
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                ("stalled-post", started, closed.await)
            };
            let (_, got) = closed.unwrap_or_else(|| panic!("a slow {kind} stayed open 10 s"));
            (kind, started.elapsed(), got)
        }));
    }
    established.wait().await;
    // The proxy finishes the last handshakes a moment after the clients do.
    tokio::time::sleep(WINDOW).await;
    let attack_from = Instant::now();
    tokio::time::sleep(WINDOW * WINDOWS).await;

    let mut slowest: std::collections::BTreeMap<&str, Duration> = Default::default();
    for attacker in attackers {
        let (kind, closed_after, got) = attacker.await.unwrap();
        let timeout = match kind {
            "post" => RESPONSE_TIMEOUT,
            "stalled-post" => BODY_TIMEOUT,
            _ => HEADER_TIMEOUT,
        };
        assert!(
            closed_after < timeout + MARGIN,
            "a slow {kind} connection was closed after {closed_after:?}"
        );
        if kind != "handshake" {
            assert!(
                closed_after >= timeout - Duration::from_millis(300),
                "a slow {kind} connection was closed early, after {closed_after:?}"
            );
        }
        if kind.ends_with("post") {
            let (resp, _) = parse_response(&got, true).expect("a response to the slow POST");
            assert_eq!(resp.status, 408, "a {kind}: the client's body did not come");
        }
        let entry = slowest.entry(kind).or_default();
        *entry = (*entry).max(closed_after);
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(normal.await.unwrap(), 0, "normal requests failed");
    assert_eq!(control_normal.await.unwrap(), 0, "control requests failed");

    let rates = |done: &Mutex<Vec<Instant>>| {
        let done = done.lock().unwrap().clone();
        (
            per_window(&done, baseline_from, WINDOW, WINDOWS),
            per_window(&done, attack_from, WINDOW, WINDOWS),
        )
    };
    let (before, during) = rates(&done);
    let (control_before, control_during) = rates(&control_done);
    println!(
        "normal requests per {WINDOW:?}, attacked proxy: before {before:?}, during \
         {during:?}; control proxy: before {control_before:?}, during {control_during:?}; \
         slowest close per kind: {slowest:?}"
    );
    // Per window, the attacked proxy's count over the control's: both clients share every
    // window's machine, so what other processes do cancels out.
    let ratio = |attacked: &[usize], control: &[usize]| {
        let mut ratios: Vec<f64> = attacked
            .iter()
            .zip(control)
            .filter(|(_, c)| **c > 0)
            .map(|(a, c)| *a as f64 / *c as f64)
            .collect();
        ratios.sort_by(f64::total_cmp);
        assert!(!ratios.is_empty(), "the control proxy served nothing");
        ratios[ratios.len() / 2]
    };
    let (ratio_before, ratio_during) = (
        ratio(&before, &control_before),
        ratio(&during, &control_during),
    );
    println!(
        "median attacked/control per window: before {ratio_before:.2}, during {ratio_during:.2}"
    );
    assert!(
        ratio_during >= 0.9 * ratio_before,
        "the normal rate fell to {:.0}% of its baseline (attacked/control {ratio_before:.2}, \
         then {ratio_during:.2})",
        100.0 * ratio_during / ratio_before
    );
    assert!(
        up.requests().iter().all(|r| r.path != "/slow-loris"),
        "an incomplete head reached the upstream"
    );
    assert!(
        up.requests()
            .iter()
            .filter(|r| r.path == "/slow-post" || r.path == "/stalled-post")
            .all(|r| !r.body_complete),
        "a slow POST reached the upstream complete"
    );
}
