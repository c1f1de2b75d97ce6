//! HTTP/2 abuse, sent as raw frames over TLS to the real `rampart` binary: rapid reset,
//! CONTINUATION flood, SETTINGS / PING / empty-DATA floods, more streams than allowed,
//! connection-specific headers, content-length not matching DATA.
//!
//! Each test checks what the attacking connection receives (GOAWAY and its code, resets), how
//! many requests reached the upstream, that a normal HTTP/2 client on another connection is
//! served during and after the attack, and the proxy process's peak memory (its own
//! /proc/PID/status, so the test's memory does not count).
//!
//! Small scale by default; `H2_ABUSE_SCALE=50` multiplies every flood (see
//! `benches/attacks/h2_abuse.sh`, which runs it on a release build and prints the figures).

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------------
// The proxy under attack: the real binary, so its memory can be read on its own
// ---------------------------------------------------------------------------------------------

struct Proxy {
    proc: Running,
    https: SocketAddr,
    admin: SocketAddr,
    cert_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn start_proxy(up: &TestUpstream, client_toml: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("proxy.crt");
    let key = dir.path().join("proxy.key");
    rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let config = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
         [log]\naccess = false\n\n\
         [client]\n{client_toml}\n\n{}",
        simple_config(up)
    );
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "--no-watch", "-c"]).arg(&path);
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    Proxy {
        https: logged_addr(&serving, "https"),
        admin: logged_addr(&serving, "admin"),
        cert_pem: std::fs::read(&cert).unwrap(),
        proc,
        _dir: dir,
    }
}

impl Proxy {
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(reqwest::Certificate::from_pem(&self.cert_pem).unwrap())
            .resolve("localhost", self.https)
            .build()
            .unwrap()
    }

    /// A sample of the admin listener's `/metrics`: `name{labels}` as written there.
    async fn metric(&self, series: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("the admin listener answers")
            .text()
            .await
            .unwrap();
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
    }

    /// (VmRSS, VmHWM) of the proxy process, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid()))
            .expect("the proxy process is running");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/PID/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// A normal request on a fresh HTTP/2 connection must be served.
    async fn assert_serves(&self, path: &str) {
        let resp = self.client().get(self.url(path)).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200, "a normal request after the attack");
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }
}

/// Multiplies every flood (default 1: the small scale of the default test run).
fn scale() -> usize {
    std::env::var("H2_ABUSE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// A normal HTTP/2 client requesting `/normal/N` in a loop on its own connection while the
/// attack runs.
struct NormalTraffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl NormalTraffic {
    fn start(proxy: &Proxy) -> NormalTraffic {
        let client = proxy.client();
        let base = proxy.url("/normal/");
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                match client.get(format!("{base}{i}")).send().await {
                    Ok(resp)
                        if resp.status() == 200 && resp.version() == reqwest::Version::HTTP_2 =>
                    {
                        let _ = resp.bytes().await;
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => f.lock().unwrap().push(format!("status {}", resp.status())),
                    Err(err) => f.lock().unwrap().push(err.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        NormalTraffic {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Stops the loop; asserts every request was served and at least one was.
    async fn finish(self, attack: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let failed = self.failed.lock().unwrap().clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failed.is_empty(),
            "{attack}: normal requests failed during the attack: {failed:?}"
        );
        assert!(
            ok > 0,
            "{attack}: no normal request was served during the attack"
        );
        ok
    }
}

/// Runs the checks every attack shares after it: the normal client was served during and is
/// served after, and the proxy's peak memory stayed within `bound_mib` of what it held before.
async fn after_attack(
    proxy: &Proxy,
    normal: NormalTraffic,
    attack: &str,
    baseline_kib: u64,
    bound_mib: u64,
    started: Instant,
) {
    let served = normal.finish(attack).await;
    proxy.assert_serves("/after-attack").await;
    let (rss, peak) = proxy.memory_kib();
    println!(
        "{attack}: {:?}; normal requests served during it: {served}; proxy RSS before {} KiB, \
         peak {} KiB, after {} KiB",
        started.elapsed(),
        baseline_kib,
        peak,
        rss
    );
    assert!(
        peak.saturating_sub(baseline_kib) < bound_mib * 1024,
        "{attack}: the proxy's peak RSS grew from {baseline_kib} KiB to {peak} KiB"
    );
}

/// Starts the upstream and the proxy, warms the proxy up (so its baseline memory includes the
/// TLS and HTTP/2 machinery) and starts the normal traffic.
async fn setup(client_toml: &str) -> (TestUpstream, Proxy, NormalTraffic, u64) {
    let up = TestUpstream::start().await;
    let proxy = start_proxy(&up, client_toml).await;
    proxy.assert_serves("/warm-up").await;
    let (baseline, _) = proxy.memory_kib();
    let normal = NormalTraffic::start(&proxy);
    (up, proxy, normal, baseline)
}

fn attack_requests(up: &TestUpstream, prefix: &str) -> Vec<Recorded> {
    up.requests()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2 frames
// ---------------------------------------------------------------------------------------------

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    push_frame(&mut out, kind, flags, stream, payload);
    out
}

/// HPACK integer with an N-bit prefix (RFC 7541 §5.1); `high` holds the representation's bits.
fn hpack_int(out: &mut Vec<u8>, prefix_bits: u32, high: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, no Huffman: the plainest encoding, so
/// the bytes say exactly what was sent.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_int(out, 7, 0, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 7, 0, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", method),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ] {
        hpack_literal(&mut block, name, value);
    }
    for (name, value) in extra {
        hpack_literal(&mut block, name, value);
    }
    block
}

/// The `:status` of a response header block, which h2 encodes first. The client announced a
/// header table size of 0, so only the static table is in use; h2 Huffman-codes literal values,
/// and status digits have short codes (RFC 7541 Appendix B).
fn decode_status(block: &[u8]) -> Option<u16> {
    fn read_int(bytes: &[u8], prefix_bits: u32) -> Option<(usize, usize)> {
        let max = (1usize << prefix_bits) - 1;
        let first = (*bytes.first()? as usize) & max;
        if first < max {
            return Some((first, 1));
        }
        let (mut value, mut shift, mut used) = (max, 0, 1);
        loop {
            let b = *bytes.get(used)? as usize;
            used += 1;
            value += (b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return Some((value, used));
            }
        }
    }
    fn huffman_digits(bytes: &[u8]) -> Option<String> {
        let bits: Vec<u8> = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect();
        let (mut out, mut i) = (String::new(), 0);
        let take = |from: usize, n: usize| bits[from..from + n].iter().fold(0u8, |a, b| a << 1 | b);
        while i < bits.len() {
            let rest = bits.len() - i;
            if bits[i..].iter().all(|b| *b == 1) && rest < 8 {
                break; // padding: the most significant bits of EOS
            }
            if rest >= 5 && take(i, 5) <= 2 {
                out.push((b'0' + take(i, 5)) as char);
                i += 5;
            } else if rest >= 6 && (0x19..=0x1f).contains(&take(i, 6)) {
                out.push((b'3' + take(i, 6) - 0x19) as char);
                i += 6;
            } else {
                return None;
            }
        }
        Some(out)
    }
    let mut i = 0;
    // dynamic table size updates (the answer to our SETTINGS_HEADER_TABLE_SIZE = 0)
    while block.get(i)? & 0xe0 == 0x20 {
        i += read_int(&block[i..], 5)?.1;
    }
    let first = *block.get(i)?;
    if first & 0x80 != 0 {
        let (index, _) = read_int(&block[i..], 7)?;
        return [200, 204, 206, 304, 400, 404, 500]
            .get(index.checked_sub(8)?)
            .copied();
    }
    let (index, used) = read_int(&block[i..], if first & 0x40 != 0 { 6 } else { 4 })?;
    if index != 8 {
        return None;
    }
    i += used;
    let huffman = block.get(i)? & 0x80 != 0;
    let (len, used) = read_int(&block[i..], 7)?;
    let value = block.get(i + used..i + used + len)?;
    let digits = if huffman {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    digits.parse().ok()
}

/// What the server sent on one raw connection.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// (last stream id, error code, debug data)
    goaway: Option<(u32, u32, String)>,
    /// (stream, error code)
    resets: Vec<(u32, u32)>,
    /// stream → `:status` (None: a status this decoder does not read)
    responses: HashMap<u32, Option<u16>>,
    settings_acks: usize,
    ping_acks: usize,
    data_bytes: usize,
    /// The server closed the connection (or it failed).
    closed: bool,
}

impl Seen {
    fn resets_with(&self, code: u32) -> usize {
        self.resets.iter().filter(|(_, c)| *c == code).count()
    }

    fn goaway_code(&self) -> Option<u32> {
        self.goaway.as_ref().map(|(_, code, _)| *code)
    }
}

/// One raw HTTP/2 connection: frames go out as given; a reader task records what comes back.
struct RawH2 {
    writer: WriteHalf<TlsStream<TcpStream>>,
    seen: Arc<Mutex<Seen>>,
    reader: JoinHandle<()>,
}

impl Drop for RawH2 {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RawH2 {
    /// TLS with ALPN h2, the preface, our SETTINGS (no dynamic table, no push, the largest
    /// windows so responses never stall), and the ACK of the server's SETTINGS.
    async fn open(addr: SocketAddr) -> RawH2 {
        let tls = tls_connect(addr, Some("localhost"), &[b"h2"], None)
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut reader, mut writer) = tokio::io::split(tls);
        let mut hello = PREFACE.to_vec();
        let mut settings = Vec::new();
        for (id, value) in [(0x1u16, 0u32), (0x2, 0), (0x4, 0x7fff_ffff)] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        push_frame(&mut hello, SETTINGS, 0, 0, &settings);
        push_frame(
            &mut hello,
            WINDOW_UPDATE,
            0,
            0,
            &(0x7fff_ffffu32 - 65_535).to_be_bytes(),
        );
        writer.write_all(&hello).await.unwrap();
        writer.flush().await.unwrap();

        // The server's first frame is its SETTINGS.
        let mut head = [0u8; 9];
        reader.read_exact(&mut head).await.unwrap();
        assert_eq!(head[3], SETTINGS, "the server starts with SETTINGS");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await.unwrap();
        writer
            .write_all(&frame(SETTINGS, ACK, 0, &[]))
            .await
            .unwrap();
        writer.flush().await.unwrap();

        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = tokio::spawn(read_frames(reader, seen.clone()));
        RawH2 {
            writer,
            seen,
            reader,
        }
    }

    /// Writes bytes; false once the connection is closed, or when the server has not taken
    /// them within 5 s (it stopped reading).
    async fn send(&mut self, bytes: &[u8]) -> bool {
        let write = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(5), write).await,
            Ok(Ok(()))
        )
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `pred` holds on what the server sent, up to `limit`.
    async fn wait(&self, limit: Duration, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.seen();
            if pred(&seen) || Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn read_frames(mut reader: ReadHalf<TlsStream<TcpStream>>, seen: Arc<Mutex<Seen>>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                seen.lock().unwrap().closed = true;
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut used = 0;
        while buf.len() - used >= 9 {
            let head = &buf[used..used + 9];
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            if buf.len() - used - 9 < len {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let payload = &buf[used + 9..used + 9 + len];
            record_frame(&mut seen.lock().unwrap(), kind, flags, stream, payload);
            used += 9 + len;
        }
        buf.drain(..used);
    }
}

fn record_frame(seen: &mut Seen, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let u32_at = |i: usize| {
        payload
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match kind {
        HEADERS => {
            let mut block = payload;
            if flags & PADDED != 0 {
                let pad = *block.first().unwrap_or(&0) as usize;
                block = &block[1..block.len().saturating_sub(pad)];
            }
            if flags & PRIORITY_FLAG != 0 {
                block = &block[5.min(block.len())..];
            }
            seen.responses.insert(stream, decode_status(block));
        }
        RST_STREAM => seen.resets.push((stream, u32_at(0).unwrap_or(u32::MAX))),
        GOAWAY => {
            let last = u32_at(0).unwrap_or(0) & 0x7fff_ffff;
            let code = u32_at(4).unwrap_or(u32::MAX);
            let debug = String::from_utf8_lossy(payload.get(8..).unwrap_or(&[])).into_owned();
            seen.goaway = Some((last, code, debug));
        }
        SETTINGS if flags & ACK != 0 => seen.settings_acks += 1,
        PING if flags & ACK != 0 => seen.ping_acks += 1,
        DATA => seen.data_bytes += payload.len(),
        _ => {}
    }
}

/// Writes `total` copies of `one` in batches; returns how many were written before the
/// server closed the connection or stopped reading.
async fn flood(conn: &mut RawH2, one: &[u8], total: usize) -> usize {
    let per_batch = (64 * 1024 / one.len().max(1)).max(1);
    let mut sent = 0;
    while sent < total {
        let n = per_batch.min(total - sent);
        if !conn.send(&one.repeat(n)).await {
            break;
        }
        sent += n;
    }
    sent
}

// ---------------------------------------------------------------------------------------------
// The attacks
// ---------------------------------------------------------------------------------------------

const CLIENT: &str = "header_timeout = \"5s\"";

/// Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM(CANCEL) at once, stream after stream.
/// Reset streams are not "concurrent", so max_concurrent_streams alone does not stop it; h2
/// counts streams reset before hyper accepted them and answers GOAWAY(ENHANCE_YOUR_CALM)
/// beyond `max_pending_accept_reset_streams`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rapid_reset_gets_goaway_and_few_requests_reach_the_upstream() {
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    let mut conn = RawH2::open(proxy.https).await;
    let streams = 2000 * scale();
    let mut opened = 0;
    let mut batch = Vec::new();
    for i in 0..streams {
        let id = 1 + 2 * i as u32;
        push_frame(
            &mut batch,
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("GET", &format!("/rapid-reset/{id}"), &[]),
        );
        push_frame(&mut batch, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
        if batch.len() > 32 * 1024 || i + 1 == streams {
            if !conn.send(&batch).await {
                break;
            }
            opened = i + 1;
            batch.clear();
        }
    }
    let seen = conn
        .wait(Duration::from_secs(5), |s| s.goaway.is_some() && s.closed)
        .await;
    let reached = attack_requests(&up, "/rapid-reset/").len();
    println!(
        "rapid reset: {opened} streams opened and reset, {reached} reached the upstream, \
         GOAWAY {:?}",
        seen.goaway
    );
    assert_eq!(
        seen.goaway_code(),
        Some(ENHANCE_YOUR_CALM),
        "rapid reset: {:?}",
        seen.goaway
    );
    assert!(seen.closed, "the attacking connection stayed open");
    assert!(
        reached <= 200,
        "{reached} of {opened} reset streams reached the upstream"
    );
    after_attack(&proxy, normal, "rapid reset", baseline, 64, started).await;
}

/// Rapid reset, paced: HEADERS for a batch of streams, a pause long enough for hyper to accept
/// them (so h2's pending-accept count never trips), then RST_STREAM for the batch, and again.
/// Each stream has started work in the proxy, and maybe upstream, before it is cancelled.
/// rampart counts streams a client resets before their response (hyper drops the request's
/// future): once 100 of them make up half of the connection's streams, it closes the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paced_rapid_reset_is_cut_off_after_a_bounded_number_of_streams() {
    const PACE_MS: u64 = 200;
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    let mut conn = RawH2::open(proxy.https).await;
    let rounds = 40 * scale();
    let per_round = 50;
    let mut opened = 0;
    'rounds: for round in 0..rounds {
        let ids: Vec<u32> = (0..per_round)
            .map(|i| 1 + 2 * (round * per_round + i) as u32)
            .collect();
        let mut batch = Vec::new();
        for id in &ids {
            push_frame(
                &mut batch,
                HEADERS,
                END_HEADERS | END_STREAM,
                *id,
                &request_block("GET", &format!("/slow/1000?paced={id}"), &[]),
            );
        }
        if !conn.send(&batch).await {
            break;
        }
        opened += per_round;
        tokio::time::sleep(Duration::from_millis(PACE_MS)).await;
        batch.clear();
        for id in &ids {
            push_frame(&mut batch, RST_STREAM, 0, *id, &CANCEL.to_be_bytes());
        }
        if !conn.send(&batch).await || conn.seen().closed {
            break 'rounds;
        }
    }
    let seen = conn.wait(Duration::from_secs(5), |s| s.closed).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reached = up
        .requests()
        .iter()
        .filter(|r| r.uri.contains("paced="))
        .count();
    println!(
        "paced rapid reset: {opened} streams opened then reset, {reached} reached the upstream, \
         GOAWAY {:?}, closed {}",
        seen.goaway, seen.closed
    );
    assert!(seen.closed, "the attacking connection stayed open");
    // Counted once (issue 15).
    assert_eq!(
        proxy
            .metric("rampart_http2_resets_total{reason=\"rapid_reset\"}")
            .await,
        1
    );
    // The check trips at the 100th cancelled stream; one more batch may be on its way.
    assert!(
        reached <= 100 + per_round,
        "{reached} of {opened} reset streams reached the upstream"
    );
    after_attack(&proxy, normal, "paced rapid reset", baseline, 64, started).await;
}

/// CONTINUATION flood: one HEADERS without END_HEADERS, then CONTINUATION frames that never
/// end the block. h2 caps the frames of one header block (max_header_list_size / frame size
/// + 25%, at least 5) and the decoded size (max_header_list_size = client.max_header_bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuation_flood_gets_goaway_and_nothing_is_forwarded() {
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    for (what, fragment) in [
        ("empty CONTINUATION frames", Vec::new()),
        ("1 KiB CONTINUATION frames", {
            let mut f = Vec::new();
            hpack_literal(&mut f, "x-flood", &"a".repeat(1000));
            f
        }),
    ] {
        let mut conn = RawH2::open(proxy.https).await;
        let first = frame(
            HEADERS,
            0,
            1,
            &request_block("GET", "/continuation-flood", &[]),
        );
        assert!(conn.send(&first).await);
        let sent = flood(
            &mut conn,
            &frame(CONTINUATION, 0, 1, &fragment),
            2000 * scale(),
        )
        .await;
        let seen = conn
            .wait(Duration::from_secs(5), |s| s.goaway.is_some() && s.closed)
            .await;
        println!(
            "CONTINUATION flood ({what}): {sent} frames written, GOAWAY {:?}",
            seen.goaway
        );
        assert_eq!(
            seen.goaway_code(),
            Some(ENHANCE_YOUR_CALM),
            "{what}: {:?}",
            seen.goaway
        );
        assert!(seen.closed, "{what}: the attacking connection stayed open");
    }
    assert_eq!(attack_requests(&up, "/continuation-flood").len(), 0);
    after_attack(&proxy, normal, "CONTINUATION flood", baseline, 64, started).await;
}

/// Empty DATA frames (no END_STREAM) cost the server work and carry nothing: h2 answers
/// GOAWAY(ENHANCE_YOUR_CALM) after 100 of them on a connection. The request they belong to
/// was forwarded (its head is valid) but its body never completes upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_data_flood_gets_goaway() {
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    let mut conn = RawH2::open(proxy.https).await;
    assert!(
        conn.send(&frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/empty-data", &[]),
        ))
        .await
    );
    let sent = flood(&mut conn, &frame(DATA, 0, 1, &[]), 5000 * scale()).await;
    let seen = conn
        .wait(Duration::from_secs(5), |s| s.goaway.is_some() && s.closed)
        .await;
    println!(
        "empty DATA flood: {sent} frames written, GOAWAY {:?}",
        seen.goaway
    );
    assert_eq!(
        seen.goaway_code(),
        Some(ENHANCE_YOUR_CALM),
        "{:?}",
        seen.goaway
    );
    assert!(seen.closed, "the attacking connection stayed open");
    let forwarded = attack_requests(&up, "/empty-data");
    assert!(
        forwarded.len() <= 1,
        "{} requests forwarded",
        forwarded.len()
    );
    // The upstream connection is aborted with the client's stream; give it a moment to see it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        attack_requests(&up, "/empty-data")
            .iter()
            .all(|r| !r.body_complete),
        "an aborted body reached the upstream as complete"
    );
    after_attack(&proxy, normal, "empty DATA flood", baseline, 64, started).await;
}

/// SETTINGS and PING floods. h2 holds one unsent SETTINGS ACK / PING ACK at a time and stops
/// reading the connection until it is written, so a client that floods faster than it reads
/// gets back-pressure (its writes stall), not a growing buffer in the proxy. Each frame is
/// answered; the cost is the attacker's own bandwidth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_and_ping_floods_are_answered_one_for_one_with_bounded_memory() {
    let (_up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    let total = 20_000 * scale();

    let mut settings_payload = Vec::new();
    settings_payload.extend_from_slice(&0x4u16.to_be_bytes()); // INITIAL_WINDOW_SIZE
    settings_payload.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let floods = [
        ("SETTINGS", frame(SETTINGS, 0, 0, &settings_payload)),
        ("PING", frame(PING, 0, 0, b"12345678")),
    ];
    for (what, one) in floods {
        let mut conn = RawH2::open(proxy.https).await;
        let sent = flood(&mut conn, &one, total).await;
        // The ACK of the SETTINGS that `open` sent arrives with the flood's.
        let acked = |s: &Seen| {
            if what == "SETTINGS" {
                s.settings_acks.saturating_sub(1)
            } else {
                s.ping_acks
            }
        };
        // Every frame that was written is answered.
        let seen = conn
            .wait(Duration::from_secs(10), |s| acked(s) >= sent || s.closed)
            .await;
        println!(
            "{what} flood: {sent} frames written, {} ACKs, GOAWAY {:?}, closed {}",
            acked(&seen),
            seen.goaway,
            seen.closed
        );
        assert_eq!(sent, total, "{what}: the flood was cut short");
        assert_eq!(acked(&seen), sent, "{what}: every frame is answered");
        // The connection is still usable: the flood itself is not an error.
        let mut request = Vec::new();
        push_frame(
            &mut request,
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("GET", "/after-flood", &[]),
        );
        assert!(conn.send(&request).await);
        let seen = conn
            .wait(Duration::from_secs(5), |s| s.responses.contains_key(&1))
            .await;
        assert_eq!(seen.responses.get(&1), Some(&Some(200)), "{what}");
    }

    // The variant that never reads: the PONGs fill the socket buffers (a few MiB on loopback),
    // then the proxy stops reading, and the attacker's writes stall instead of the proxy's
    // memory growing.
    let tls = tls_connect(proxy.https, Some("localhost"), &[b"h2"], None)
        .await
        .unwrap();
    let (_reader, mut writer) = tokio::io::split(tls);
    let mut hello = PREFACE.to_vec();
    push_frame(&mut hello, SETTINGS, 0, 0, &[]);
    writer.write_all(&hello).await.unwrap();
    let pings = frame(PING, 0, 0, b"abcdefgh").repeat(4096);
    let most = 256 * 1024 * 1024 / pings.len(); // 256 MiB of PINGs
    let mut written = 0usize;
    for _ in 0..most {
        match tokio::time::timeout(Duration::from_secs(2), writer.write_all(&pings)).await {
            Ok(Ok(())) => written += 4096,
            _ => break,
        }
    }
    println!(
        "PING flood, never reading: {written} frames ({} MiB) taken before the proxy stopped \
         reading",
        written * 17 / (1024 * 1024)
    );
    assert!(
        written < most * 4096,
        "the proxy kept reading 256 MiB of PINGs it could not answer"
    );
    after_attack(
        &proxy,
        normal,
        "SETTINGS and PING floods",
        baseline,
        64,
        started,
    )
    .await;
}

/// Sends `streams` requests for `/slow/2000` in one write (each waits 2 s upstream, so the
/// first ones are still open when the rest arrive) and waits for the outcome.
async fn open_streams_at_once(conn: &mut RawH2, streams: usize, tag: &str) -> Seen {
    let mut batch = Vec::new();
    for i in 0..streams {
        let id = 1 + 2 * i as u32;
        push_frame(
            &mut batch,
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("GET", &format!("/slow/2000?{tag}={id}"), &[]),
        );
    }
    let _ = conn.send(&batch).await;
    conn.wait(Duration::from_secs(5), |s| {
        s.goaway.is_some() || s.resets.len() + s.responses.len() >= streams
    })
    .await
}

/// More streams than SETTINGS_MAX_CONCURRENT_STREAMS (128): the extra ones get
/// RST_STREAM(REFUSED_STREAM) and never reach the upstream, the others are served. Refusals
/// count towards `max_local_error_reset_streams` (256): a client that keeps opening streams
/// beyond the limit gets GOAWAY(ENHANCE_YOUR_CALM) and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();

    // 200 at once: 128 served, 72 refused, the connection stays.
    let mut conn = RawH2::open(proxy.https).await;
    let seen = open_streams_at_once(&mut conn, 200, "within").await;
    let refused = seen.resets_with(REFUSED_STREAM);
    println!(
        "200 streams at once: {refused} REFUSED_STREAM, GOAWAY {:?}",
        seen.goaway
    );
    assert_eq!(refused, 200 - 128);
    assert!(seen.goaway.is_none(), "{:?}", seen.goaway);
    let seen = conn
        .wait(Duration::from_secs(10), |s| s.responses.len() >= 128)
        .await;
    assert_eq!(seen.responses.len(), 128);
    assert!(seen.responses.values().all(|s| *s == Some(200)));
    assert_eq!(attack_requests(&up, "/slow/2000").len(), 128);

    // Far beyond: GOAWAY once 256 streams were refused; nothing more reaches the upstream.
    let mut conn = RawH2::open(proxy.https).await;
    let streams = 600 * scale();
    let seen = open_streams_at_once(&mut conn, streams, "beyond").await;
    let seen = conn
        .wait(Duration::from_secs(5), |s| {
            s.closed || seen.goaway.is_none()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reached = up
        .requests()
        .iter()
        .filter(|r| r.uri.contains("beyond="))
        .count();
    println!(
        "{streams} streams at once: {reached} reached the upstream, {} REFUSED_STREAM, \
         GOAWAY {:?}",
        seen.resets_with(REFUSED_STREAM),
        seen.goaway
    );
    assert!(
        reached <= 128,
        "{reached} concurrent streams reached the upstream"
    );
    assert_eq!(seen.resets_with(REFUSED_STREAM), 256);
    assert_eq!(
        seen.goaway_code(),
        Some(ENHANCE_YOUR_CALM),
        "{:?}",
        seen.goaway
    );
    assert!(seen.closed, "the attacking connection stayed open");
    after_attack(&proxy, normal, "too many streams", baseline, 64, started).await;
}

/// Connection-specific header fields are malformed in HTTP/2 (RFC 9113 §8.2.2): the stream is
/// reset with PROTOCOL_ERROR by h2 before rampart sees it, and nothing is forwarded. `te:
/// trailers` is the one allowed form (and rampart drops it as hop-by-hop).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_specific_headers_are_refused_and_never_forwarded() {
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    let cases: &[(&str, &str)] = &[
        ("connection", "keep-alive"),
        ("connection", "close"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
        ("te", "trailers, gzip"),
    ];
    let mut conn = RawH2::open(proxy.https).await;
    let mut batch = Vec::new();
    for (i, (name, value)) in cases.iter().enumerate() {
        push_frame(
            &mut batch,
            HEADERS,
            END_HEADERS | END_STREAM,
            1 + 2 * i as u32,
            &request_block("GET", &format!("/conn-specific/{i}"), &[(name, value)]),
        );
    }
    let allowed = 1 + 2 * cases.len() as u32;
    push_frame(
        &mut batch,
        HEADERS,
        END_HEADERS | END_STREAM,
        allowed,
        &request_block("GET", "/te-trailers", &[("te", "trailers")]),
    );
    assert!(conn.send(&batch).await);
    let seen = conn
        .wait(Duration::from_secs(5), |s| {
            s.resets.len() + s.responses.len() > cases.len()
        })
        .await;
    for (i, case) in cases.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        let reset = seen.resets.iter().find(|(s, _)| *s == id).map(|(_, c)| *c);
        let status = seen.responses.get(&id).copied().flatten();
        println!("{case:?}: reset {reset:?}, status {status:?}");
        assert!(
            reset == Some(PROTOCOL_ERROR) || status == Some(400),
            "{case:?}: reset {reset:?}, status {status:?}"
        );
    }
    assert_eq!(attack_requests(&up, "/conn-specific/").len(), 0);
    assert_eq!(
        seen.responses.get(&allowed),
        Some(&Some(200)),
        "te: trailers"
    );
    let forwarded = attack_requests(&up, "/te-trailers");
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].header("te"), None, "TE is hop-by-hop");
    assert!(seen.goaway.is_none(), "{:?}", seen.goaway);
    after_attack(
        &proxy,
        normal,
        "connection-specific headers",
        baseline,
        64,
        started,
    )
    .await;
}

/// content-length that the DATA frames contradict (more, or fewer before END_STREAM): h2 resets
/// the stream with PROTOCOL_ERROR (RFC 9113 §8.1.1). The request head may already be on its
/// way upstream (bodies stream), but its body never completes there: the upstream connection
/// is aborted, so the app never handles it as a complete request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn content_length_not_matching_data_is_reset_and_never_complete_upstream() {
    let (up, proxy, normal, baseline) = setup(CLIENT).await;
    let started = Instant::now();
    let mut conn = RawH2::open(proxy.https).await;
    let cases = [
        ("more data than content-length", "10", 1u32, vec![b'm'; 20]),
        ("less data than content-length", "20", 3, vec![b'l'; 10]),
    ];
    for (what, length, id, body) in &cases {
        let mut batch = Vec::new();
        push_frame(
            &mut batch,
            HEADERS,
            END_HEADERS,
            *id,
            &request_block(
                "POST",
                &format!("/content-length/{id}"),
                &[("content-length", length)],
            ),
        );
        push_frame(&mut batch, DATA, END_STREAM, *id, body);
        assert!(conn.send(&batch).await, "{what}");
    }
    let seen = conn
        .wait(Duration::from_secs(5), |s| {
            cases.iter().all(|(_, _, id, _)| {
                s.resets.iter().any(|(s, _)| s == id) || s.responses.contains_key(id)
            })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (what, _, id, _) in &cases {
        let reset = seen.resets.iter().find(|(s, _)| s == id).map(|(_, c)| *c);
        let status = seen.responses.get(id).copied().flatten();
        println!("{what}: reset {reset:?}, status {status:?}");
        assert!(
            reset == Some(PROTOCOL_ERROR) || status == Some(400),
            "{what}: reset {reset:?}, status {status:?}"
        );
        let forwarded = attack_requests(&up, &format!("/content-length/{id}"));
        assert!(
            forwarded.iter().all(|r| !r.body_complete),
            "{what}: the upstream received it as a complete request: {forwarded:?}"
        );
    }
    after_attack(
        &proxy,
        normal,
        "content-length mismatch",
        baseline,
        64,
        started,
    )
    .await;
}

#[test]
fn status_decoder_reads_indexed_and_huffman_statuses() {
    assert_eq!(decode_status(&[0x88]), Some(200));
    assert_eq!(decode_status(&[0x20, 0x8c]), Some(400));
    // literal with incremental indexing, name index 8, Huffman "431": 011010 011001 00001, then
    // seven 1 bits of padding
    assert_eq!(decode_status(&[0x48, 0x83, 0x69, 0x90, 0xff]), Some(431));
    assert_eq!(decode_status(&[0x08, 0x03, b'5', b'0', b'2']), Some(502));
}

// ---------------------------------------------------------------------------------------------
// The connection preface (RFC 9113 §3.4)
// ---------------------------------------------------------------------------------------------

/// How a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// TLS close_notify, then EOF: a clean close.
    CloseNotify,
    /// The read failed: TCP closed without close_notify, or reset.
    Error(String),
    /// Still open when the limit came.
    TimedOut,
}

/// Reads every frame the server sends until it closes; (kind, stream, payload) in order.
async fn frames_until_close(
    tls: &mut TlsStream<TcpStream>,
    limit: Duration,
) -> (Vec<(u8, u32, Vec<u8>)>, Ending) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let ending = loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await {
            Ok(Ok(0)) => break Ending::CloseNotify,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(err)) => break Ending::Error(err.to_string()),
            Err(_) => break Ending::TimedOut,
        }
    };
    let mut frames = Vec::new();
    let mut rest = &buf[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        frames.push((rest[3], stream, payload.to_vec()));
        rest = &rest[9 + len..];
    }
    assert!(rest.is_empty(), "a partial frame at the end: {rest:?}");
    (frames, ending)
}

/// A client that negotiated h2 by ALPN and then sends something else than the 24-byte
/// connection preface commits a connection error of type PROTOCOL_ERROR: it gets the server's
/// SETTINGS, a GOAWAY (last stream 0, PROTOCOL_ERROR) and a TLS close_notify, as HAProxy
/// answers; not a bare close. Nothing reaches the upstream, and a normal HTTP/2 client on a new
/// connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_preface_gets_goaway_protocol_error_and_a_clean_close() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[client]\nheader_timeout = \"5s\"").await;
    let mut corrupted = PREFACE.to_vec();
    corrupted[PREFACE.len() - 1] = b'X';
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "an HTTP/1.1 request",
            b"GET /h1-over-h2 HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("a preface with its last byte changed", corrupted),
        (
            "HTTP/1.1 in the preface's version",
            b"PRI * HTTP/1.1\r\n".to_vec(),
        ),
        (
            "a SETTINGS frame without the preface",
            frame(SETTINGS, 0, 0, &[]),
        ),
    ];
    for (what, bytes) in cases {
        let mut tls = tls_connect(proxy.https, Some("localhost"), &[b"h2"], None)
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "{what}");
        tls.write_all(&bytes).await.unwrap();
        tls.flush().await.unwrap();
        let (frames, ending) = frames_until_close(&mut tls, Duration::from_secs(4)).await;
        let kinds: Vec<u8> = frames.iter().map(|(kind, _, _)| *kind).collect();
        println!("{what}: frames {kinds:?}, then {ending:?}");
        assert_eq!(
            kinds.first(),
            Some(&SETTINGS),
            "{what}: the server preface first"
        );
        let Some((GOAWAY, 0, payload)) = frames.last() else {
            panic!("{what}: no GOAWAY as the last frame: {frames:?} ({ending:?})");
        };
        let last_stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        assert_eq!((last_stream, code), (0, PROTOCOL_ERROR), "{what}");
        assert_eq!(ending, Ending::CloseNotify, "{what}: not a clean close");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        up.requests().is_empty(),
        "a request reached the upstream: {:?}",
        up.requests()
    );
    let resp = proxy
        .client_h2()
        .get(proxy.url("/after-bad-preface"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // Each refused connection counted (issue 15).
    assert_eq!(
        proxy
            .handle()
            .metrics()
            .connections_refused
            .with_label_values(&["invalid_preface"])
            .get(),
        4
    );
    proxy.shutdown().await;
}

/// The preface split over several TLS records, and frames right behind it in the same record:
/// both still make a working HTTP/2 connection. A client that sends part of the preface and
/// then closes gets a bare close (there is no HTTP/2 connection to end), and one that stops
/// sending is closed at `header_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_preface_is_served_and_a_short_one_just_ends() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[client]\nheader_timeout = \"1s\"").await;
    for pieces in [vec![1usize, 5, 10, 8], vec![23, 1], vec![24]] {
        let mut tls = tls_connect(proxy.https, Some("localhost"), &[b"h2"], None)
            .await
            .expect("TLS handshake");
        let mut at = 0;
        for piece in &pieces {
            tls.write_all(&PREFACE[at..at + piece]).await.unwrap();
            tls.flush().await.unwrap();
            at += piece;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SETTINGS, its ACK of ours comes later; then one GET.
        let mut hello = frame(SETTINGS, 0, 0, &[]);
        push_frame(
            &mut hello,
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("GET", "/split-preface", &[]),
        );
        tls.write_all(&hello).await.unwrap();
        tls.flush().await.unwrap();
        let (reader, _writer) = tokio::io::split(tls);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(read_frames(reader, seen.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen.lock().unwrap().responses.contains_key(&1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.responses.get(&1),
            Some(&Some(200)),
            "preface in pieces {pieces:?}: {seen:?}"
        );
    }
    assert_eq!(attack_requests(&up, "/split-preface").len(), 3);

    // Part of the preface, then close_notify: the server just closes.
    let mut tls = tls_connect(proxy.https, Some("localhost"), &[b"h2"], None)
        .await
        .expect("TLS handshake");
    tls.write_all(&PREFACE[..10]).await.unwrap();
    tls.shutdown().await.unwrap();
    let (frames, ending) = frames_until_close(&mut tls, Duration::from_secs(4)).await;
    assert!(
        frames.iter().all(|(kind, _, _)| *kind != GOAWAY),
        "a GOAWAY for a preface cut short: {frames:?}"
    );
    if let Ending::Error(err) = &ending {
        println!("a preface cut short: the connection ended with {err}");
    }
    assert_ne!(
        ending,
        Ending::TimedOut,
        "still open after a short preface and close"
    );

    // Part of the preface, then nothing: closed at header_timeout.
    let started = Instant::now();
    let mut tls = tls_connect(proxy.https, Some("localhost"), &[b"h2"], None)
        .await
        .expect("TLS handshake");
    tls.write_all(&PREFACE[..10]).await.unwrap();
    tls.flush().await.unwrap();
    let (_, ending) = frames_until_close(&mut tls, Duration::from_secs(6)).await;
    assert_ne!(ending, Ending::TimedOut, "a stalled preface was not closed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before header_timeout: {:?}",
        started.elapsed()
    );
    proxy.shutdown().await;
}

/// HTTP/2 only where ALPN chose it: a connection negotiated as HTTP/1.1 (or with no ALPN) that
/// opens with the HTTP/2 preface is closed, and nothing of it reaches the upstream (hyper-util's
/// upgrade-capable builder would otherwise serve it as HTTP/2, outside the HTTP/2 guards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_not_spoken_on_a_connection_negotiated_as_http1() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("GET", "/h2-over-h1", &[]),
    ));
    let alpns: [&[&[u8]]; 2] = [&[b"http/1.1"], &[]];
    for alpn in alpns {
        let mut tls = tls_connect(proxy.https, Some("localhost"), alpn, None)
            .await
            .expect("TLS handshake");
        assert_ne!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(&bytes).await.unwrap();
        tls.flush().await.unwrap();
        let answer = read_until_close(&mut tls, Duration::from_secs(4)).await;
        // No HTTP/2 server preface (a SETTINGS frame: type 4 at byte 3).
        assert!(
            answer.len() < 9 || answer[3] != SETTINGS,
            "{alpn:?}: answered as HTTP/2: {answer:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    proxy.assert_still_serves().await;
}
