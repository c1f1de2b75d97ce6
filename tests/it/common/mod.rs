//! Test harness: a real rampart on `127.0.0.1:0`, real upstreams, real clients.
//!
//! Nothing here is global or on a fixed port: every test starts its own proxy and upstreams
//! and they are dropped with the test.

#![allow(dead_code)]

pub mod binary;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// Default time a raw client waits for the server to close the connection.
pub const RAW_READ_LIMIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Upstream: a real hyper HTTP/1.1 server that records what it receives
// ---------------------------------------------------------------------------------------------

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request-target exactly as received (path and query).
    pub uri: String,
    pub path: String,
    pub query: Option<String>,
    pub version: Version,
    pub headers: HeaderMap,
    /// Body bytes received so far (appended while the body streams in).
    pub body: Vec<u8>,
    /// True once the body ended cleanly; false while it streams or after it broke off.
    pub body_complete: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

#[derive(Default)]
struct UpstreamState {
    requests: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
}

type UpBody = BoxBody<Bytes, Infallible>;

/// A hyper HTTP/1.1 upstream on `127.0.0.1:0` (or a unix socket) that records every request.
///
/// Paths: default → 200 JSON echo; `/status/{code}`; `/slow/{ms}`; `/stream/{chunks}/{ms}`;
/// `/big/{bytes}`; `/headers`; `/ws` (101 + raw echo); `/ws-refuse` (400);
/// `/set-cookie` (the four [`UPSTREAM_SET_COOKIES`]); `/cors` (the upstream's own CORS headers
/// and `Vary: Accept-Encoding`), `/cors/vary-origin` (the same with `Vary: origin`).
pub struct TestUpstream {
    pub addr: Option<SocketAddr>,
    pub unix_path: Option<PathBuf>,
    state: Arc<UpstreamState>,
    task: JoinHandle<()>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestUpstream {
    pub async fn start() -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_upstream_connection(stream, st.clone()));
            }
        });
        TestUpstream {
            addr: Some(addr),
            unix_path: None,
            state,
            task,
        }
    }

    pub async fn start_unix(path: &Path) -> TestUpstream {
        let listener = tokio::net::UnixListener::bind(path).expect("bind unix upstream");
        let state = Arc::new(UpstreamState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_upstream_connection(stream, st.clone()));
            }
        });
        TestUpstream {
            addr: None,
            unix_path: Some(path.to_path_buf()),
            state,
            task,
        }
    }

    /// The value for `servers = [...]` in an upstream.
    pub fn server(&self) -> String {
        match (&self.addr, &self.unix_path) {
            (Some(addr), _) => format!("http://{addr}"),
            (None, Some(path)) => format!("unix:{}", path.display()),
            _ => unreachable!(),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The last recorded request (panics when none).
    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    /// Waits until `pred` holds on the recorded requests, up to `limit`.
    pub async fn wait_for(&self, limit: Duration, pred: impl Fn(&[Recorded]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.requests()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve_upstream_connection<S>(stream: S, state: Arc<UpstreamState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| upstream_handle(state.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<UpBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp
}

async fn upstream_handle(
    state: Arc<UpstreamState>,
    mut req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_string();
    let upgrade = if path == "/ws" {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };
    let index = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(Recorded {
            method: req.method().to_string(),
            uri: req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| req.uri().to_string()),
            path: path.clone(),
            query: req.uri().query().map(str::to_string),
            version: req.version(),
            headers: req.headers().clone(),
            body: Vec::new(),
            body_complete: false,
        });
        requests.len() - 1
    };

    // Read the body frame by frame so tests can watch it arrive.
    let body = req.body_mut();
    let mut body_ok = true;
    if upgrade.is_none() {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        state.requests.lock().unwrap()[index]
                            .body
                            .extend_from_slice(data);
                    }
                }
                Some(Err(_)) => {
                    body_ok = false;
                    break;
                }
                None => break,
            }
        }
        if body_ok {
            state.requests.lock().unwrap()[index].body_complete = true;
        }
    }
    let body_len = state.requests.lock().unwrap()[index].body.len();

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match segments.as_slice() {
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(500);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if code == 204 || code == 304 {
                full(status, Bytes::new())
            } else {
                full(status, format!("status {code}\n"))
            }
        }
        ["slow", ms] => {
            let ms: u64 = ms.parse().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, "slow\n")
        }
        ["stream", chunks, ms] => {
            let chunks: usize = chunks.parse().unwrap_or(3);
            let ms: u64 = ms.parse().unwrap_or(100);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                for i in 0..chunks {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if tx.send(Bytes::from(format!("chunk-{i}\n"))).await.is_err() {
                        return;
                    }
                }
            });
            let mut resp = Response::new(ChannelBody { rx }.boxed());
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain"));
            resp
        }
        ["big", bytes] => {
            let n: usize = bytes.parse().unwrap_or(0);
            full(StatusCode::OK, pattern(n))
        }
        ["headers"] => {
            let mut resp = full(StatusCode::OK, "headers\n");
            let h = resp.headers_mut();
            h.insert("server", HeaderValue::from_static("upstream-server/1.0"));
            h.insert("x-powered-by", HeaderValue::from_static("PHP/5.4"));
            h.insert(
                "content-security-policy",
                HeaderValue::from_static("upstream-csp"),
            );
            h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
            h.insert("connection", HeaderValue::from_static("X-Secret"));
            h.insert("x-secret", HeaderValue::from_static("hop-by-hop-leak"));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert("x-app", HeaderValue::from_static("kept"));
            resp
        }
        ["ws"] => {
            let wants_ws = state.requests.lock().unwrap()[index]
                .header("upgrade")
                .map(|u| u.eq_ignore_ascii_case("websocket"))
                .unwrap_or(false);
            if !wants_ws {
                full(StatusCode::BAD_REQUEST, "not an upgrade\n")
            } else {
                let on_upgrade = upgrade.unwrap();
                tokio::spawn(async move {
                    if let Ok(upgraded) = on_upgrade.await {
                        let mut io = TokioIo::new(upgraded);
                        let mut buf = [0u8; 8192];
                        loop {
                            match io.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                    let _ = io.flush().await;
                                }
                            }
                        }
                    }
                });
                let mut resp = full(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
                let h = resp.headers_mut();
                h.insert("upgrade", HeaderValue::from_static("websocket"));
                h.insert("connection", HeaderValue::from_static("Upgrade"));
                h.insert(
                    "sec-websocket-accept",
                    HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                );
                resp
            }
        }
        ["ws-refuse"] => full(StatusCode::BAD_REQUEST, "no websocket here\n"),
        ["set-cookie"] => {
            let mut resp = full(StatusCode::OK, "cookies\n");
            for cookie in UPSTREAM_SET_COOKIES {
                resp.headers_mut()
                    .append("set-cookie", HeaderValue::from_static(cookie));
            }
            resp
        }
        ["cors", rest @ ..] => {
            let mut resp = full(StatusCode::OK, "cors\n");
            let h = resp.headers_mut();
            h.insert(
                "access-control-allow-origin",
                HeaderValue::from_static("https://upstream-choice.example"),
            );
            h.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
            h.insert(
                "access-control-expose-headers",
                HeaderValue::from_static("X-Total"),
            );
            let vary = if rest == ["vary-origin"] {
                "origin"
            } else {
                "Accept-Encoding"
            };
            h.insert("vary", HeaderValue::from_static(vary));
            resp
        }
        _ => {
            let rec = state.requests.lock().unwrap()[index].clone();
            let mut headers = serde_json::Map::new();
            for name in rec.headers.keys() {
                let values: Vec<serde_json::Value> = rec
                    .header_all(name.as_str())
                    .into_iter()
                    .map(serde_json::Value::String)
                    .collect();
                headers.insert(name.as_str().to_string(), serde_json::Value::Array(values));
            }
            let echo = serde_json::json!({
                "method": rec.method,
                "uri": rec.uri,
                "path": rec.path,
                "query": rec.query,
                "version": format!("{:?}", rec.version),
                "headers": headers,
                "body_len": body_len,
            });
            let mut resp = full(StatusCode::OK, echo.to_string());
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            resp
        }
    };
    Ok(resp)
}

/// What the upstream's `/set-cookie` sends, in order.
pub const UPSTREAM_SET_COOKIES: [&str; 4] = [
    "session=s3cr3t-session; Path=/; Secure; HttpOnly; SameSite=Strict",
    "theme=dark",
    "csrftoken=tok3n; samesite=none; secure",
    "lang=en; Path=/; httponly",
];

/// Deterministic body content: byte `i` is `i % 251`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

// ---------------------------------------------------------------------------------------------
// Raw upstream: canned bytes after each request head
// ---------------------------------------------------------------------------------------------

/// A TCP upstream that reads each request head (and a Content-Length body) and answers with
/// canned bytes, counting connections and requests. Closes after answering when the canned
/// bytes say `Connection: close` or `close_after` is set.
pub struct RawUpstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub async fn start(canned: impl Into<Vec<u8>>) -> RawUpstream {
        let canned: Vec<u8> = canned.into();
        let close_after = String::from_utf8_lossy(&canned)
            .to_ascii_lowercase()
            .contains("connection: close");
        Self::start_with(canned, close_after).await
    }

    pub async fn start_with(canned: Vec<u8>, close_after: bool) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let canned = Arc::new(canned);
        let (c, h) = (connections.clone(), heads.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (h, canned) = (h.clone(), canned.clone());
                tokio::spawn(async move {
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        // read one head
                        let head_end = loop {
                            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                                break Some(pos + 4);
                            }
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => break None,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let Some(head_end) = head_end else { return };
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        let body_len = head
                            .lines()
                            .find_map(|l| {
                                let (n, v) = l.split_once(':')?;
                                n.trim()
                                    .eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        h.lock().unwrap().push(head);
                        buf.drain(..head_end);
                        while buf.len() < body_len {
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..body_len);
                        if stream.write_all(&canned).await.is_err() {
                            return;
                        }
                        let _ = stream.flush().await;
                        if close_after {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        RawUpstream {
            addr,
            connections,
            heads,
            task,
        }
    }

    pub fn server(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// An address where nothing listens (a port that was just bound and released).
/// A port that was free a moment ago, for a listener the test cannot ask for its address.
pub async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// An address that refuses connections: a socket bound but never listening, kept open for the
/// rest of the test process (a port merely released could be taken by the next listener, the
/// proxy's own included).
pub async fn dead_addr() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket);
    addr
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// Builds a full config around the caller's TOML and starts the real server.
pub struct ProxyBuilder {
    cert_hosts: Vec<String>,
    listen_extra: String,
    tls_extra: String,
    extra_certs: Vec<Vec<String>>,
    body: String,
    with_http: bool,
}

impl ProxyBuilder {
    pub fn new() -> Self {
        ProxyBuilder {
            cert_hosts: vec!["localhost".into(), "127.0.0.1".into()],
            listen_extra: String::new(),
            tls_extra: String::new(),
            extra_certs: Vec::new(),
            body: String::new(),
            with_http: true,
        }
    }

    /// Names in the default certificate (default: localhost, 127.0.0.1).
    pub fn cert_hosts(mut self, hosts: &[&str]) -> Self {
        self.cert_hosts = hosts.iter().map(|h| h.to_string()).collect();
        self
    }

    /// Lines added to `[listen]`.
    pub fn listen(mut self, lines: &str) -> Self {
        self.listen_extra.push_str(lines);
        self.listen_extra.push('\n');
        self
    }

    /// Lines added to `[tls]`.
    pub fn tls(mut self, lines: &str) -> Self {
        self.tls_extra.push_str(lines);
        self.tls_extra.push('\n');
        self
    }

    /// An additional `[[tls.certificates]]` entry with a freshly generated certificate.
    pub fn extra_cert(mut self, hosts: &[&str]) -> Self {
        self.extra_certs
            .push(hosts.iter().map(|h| h.to_string()).collect());
        self
    }

    pub fn no_http(mut self) -> Self {
        self.with_http = false;
        self
    }

    /// The rest of the config (upstreams, routes, headers, client …).
    pub fn config(mut self, toml: &str) -> Self {
        self.body.push_str(toml);
        self.body.push('\n');
        self
    }

    pub async fn start(self) -> TestProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert_path = dir.path().join("default.crt");
        let key_path = dir.path().join("default.key");
        let generated =
            rampart::certgen::write_self_signed(&self.cert_hosts, &cert_path, &key_path)
                .expect("generate the default certificate");

        let mut text = String::new();
        text.push_str("[listen]\nhttps = \"127.0.0.1:0\"\n");
        if self.with_http {
            text.push_str("http = \"127.0.0.1:0\"\n");
        }
        text.push_str(&self.listen_extra);
        text.push_str(&format!(
            "\n[tls]\ncert = {}\nkey = {}\n{}\n",
            toml_str(&cert_path),
            toml_str(&key_path),
            self.tls_extra
        ));
        let mut extra_cert_ders = Vec::new();
        for (i, hosts) in self.extra_certs.iter().enumerate() {
            let cert = dir.path().join(format!("extra{i}.crt"));
            let key = dir.path().join(format!("extra{i}.key"));
            let g = rampart::certgen::write_self_signed(hosts, &cert, &key)
                .expect("generate an extra certificate");
            extra_cert_ders.push(g.cert_der.clone());
            let hosts_toml: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            text.push_str(&format!(
                "[[tls.certificates]]\nhosts = [{}]\ncert = {}\nkey = {}\n\n",
                hosts_toml.join(", "),
                toml_str(&cert),
                toml_str(&key)
            ));
        }
        text.push_str(&self.body);

        let snapshot = match rampart::config::load_str(&text, "test.toml") {
            Ok(s) => s,
            Err(errors) => panic!("config refused:\n{errors}\n--- config ---\n{text}"),
        };
        let handle = rampart::Server::start(snapshot)
            .await
            .unwrap_or_else(|e| panic!("server did not start: {e}\n--- config ---\n{text}"));
        let https = handle.https_addr();
        let http = handle.http_addr();
        TestProxy {
            handle: Some(handle),
            https,
            http,
            cert_der: generated.cert_der,
            extra_cert_ders,
            cert_hosts: self.cert_hosts,
            config: text,
            dir,
        }
    }
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn toml_str(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `[upstreams.NAME]` with these servers plus extra lines.
pub fn upstream_toml(name: &str, servers: &[String], extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "[upstreams.{name}]\nservers = [{}]\n{extra}\n",
        servers.join(", ")
    )
}

/// The common case: one upstream `app` and a catch-all route to it.
pub fn simple_config(up: &TestUpstream) -> String {
    format!(
        "{}\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], "")
    )
}

pub struct TestProxy {
    handle: Option<rampart::ServerHandle>,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    /// DER of the default certificate.
    pub cert_der: Vec<u8>,
    pub extra_cert_ders: Vec<Vec<u8>>,
    pub cert_hosts: Vec<String>,
    /// The config text the proxy was started with.
    pub config: String,
    pub dir: tempfile::TempDir,
}

impl TestProxy {
    pub async fn start(extra_toml: &str) -> TestProxy {
        ProxyBuilder::new().config(extra_toml).start().await
    }

    /// A proxy with one upstream `app` and a catch-all route, plus `extra` config.
    pub async fn simple(up: &TestUpstream, extra: &str) -> TestProxy {
        ProxyBuilder::new()
            .config(&simple_config(up))
            .config(extra)
            .start()
            .await
    }

    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::new()
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("the proxy has no http listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.https.port(), path)
    }

    pub fn url_for(&self, host: &str, path: &str) -> String {
        format!("https://{}:{}{}", host, self.https.port(), path)
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .add_root_certificate(reqwest::Certificate::from_der(&self.cert_der).unwrap());
        for der in &self.extra_cert_ders {
            b = b.add_root_certificate(reqwest::Certificate::from_der(der).unwrap());
        }
        b = b.resolve("localhost", self.https);
        for host in &self.cert_hosts {
            if host.parse::<std::net::IpAddr>().is_err() && !host.contains('*') {
                b = b.resolve(host, self.https);
            }
        }
        b
    }

    /// reqwest over HTTP/1.1 only.
    pub fn client_h1(&self) -> reqwest::Client {
        self.client_builder().http1_only().build().unwrap()
    }

    /// reqwest offering ALPN h2 and http/1.1 (expects h2).
    pub fn client_h2(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    /// A TLS connection with SNI `localhost` and ALPN http/1.1.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        tls_connect(self.https, Some("localhost"), &[b"http/1.1"], None)
            .await
            .expect("TLS handshake with the proxy")
    }

    /// Sends raw bytes over TLS (SNI localhost, ALPN http/1.1); reads until close or 3 s.
    pub async fn raw_h1(&self, bytes: &[u8]) -> Vec<u8> {
        self.raw_h1_for(bytes, RAW_READ_LIMIT).await
    }

    pub async fn raw_h1_for(&self, bytes: &[u8], limit: Duration) -> Vec<u8> {
        let mut stream = self.tls().await;
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        read_until_close(&mut stream, limit).await
    }

    /// Sends raw bytes over TLS and returns the parsed responses.
    pub async fn raw_h1_responses(&self, bytes: &[u8]) -> Vec<RawResponse> {
        parse_responses(&self.raw_h1(bytes).await)
    }

    /// Sends raw bytes to the plain-http listener; reads until close or 3 s.
    pub async fn raw_http(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.http_addr()).await.unwrap();
        let _ = stream.write_all(bytes).await;
        read_until_close(&mut stream, RAW_READ_LIMIT).await
    }

    /// A fresh, legitimate request must still work (after an attack).
    pub async fn assert_still_serves(&self) {
        self.assert_still_serves_at("/still-ok").await
    }

    pub async fn assert_still_serves_at(&self, path: &str) {
        let resp = self
            .client_h1()
            .get(self.url(path))
            .send()
            .await
            .expect("a fresh request after the attack");
        assert_eq!(resp.status(), 200, "a legitimate request after the attack");
    }

    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    /// The admin listener (start the proxy with `.listen("admin = \"127.0.0.1:0\"")`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.handle
            .as_ref()
            .and_then(|handle| handle.admin_addr())
            .expect("the proxy has no admin listener")
    }

    /// `http://{admin}{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr(), path)
    }
}

pub async fn read_until_close<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 16384];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until one complete response is buffered (or close / limit). Returns the response and
/// any bytes read past it.
pub async fn read_one_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<(RawResponse, Vec<u8>)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 16384];
    loop {
        if let Some((resp, used)) = parse_response(&out, false) {
            return Some((resp, out[used..].to_vec()));
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                return parse_response(&out, true).map(|(r, used)| (r, out[used..].to_vec()))
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw TLS client
// ---------------------------------------------------------------------------------------------

/// Accepts any server certificate (the tests look at which one was presented).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens a TLS connection to `addr`. `sni`: `None` sends no SNI. `versions`: `None` offers
/// TLS 1.2 and 1.3. Any certificate is accepted; look at `peer_certificates()`.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
    versions: Option<&[&'static rustls::SupportedProtocolVersion]>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = versions.unwrap_or(rustls::ALL_VERSIONS);
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = match sni {
        Some(host) => rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => rustls_pki_types::ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timeout"))?
}

/// [`tls_connect`] (SNI localhost, ALPN http/1.1) from a source address of the caller's
/// choice (a loopback address such as 127.0.0.2: bans and IP rules see it as the client).
pub async fn tls_connect_from(
    addr: SocketAddr,
    source: std::net::IpAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost")
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(addr).await?;
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timeout"))?
}

/// The DER of the certificate the server presented.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.as_ref().to_vec())
        .expect("the server presented a certificate")
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1 response parser
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response from the start of `buf`. `eof`: the connection closed, so a body
/// without framing ends at the end of `buf`. Returns the response and the bytes it used.
pub fn parse_response(buf: &[u8], eof: bool) -> Option<(RawResponse, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?.to_string();
    let status: u16 = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut resp = RawResponse {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((resp, head_end));
    }
    let chunked = resp
        .header("transfer-encoding")
        .map(|te| te.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        let mut pos = head_end;
        loop {
            let line_end = find(&buf[pos..], b"\r\n")? + pos;
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // trailers until an empty line
                loop {
                    let end = find(&buf[pos..], b"\r\n")? + pos;
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        return Some((resp, pos));
                    }
                }
            }
            if buf.len() < pos + size + 2 {
                return None;
            }
            resp.body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().ok()?;
        if buf.len() < head_end + len {
            return None;
        }
        resp.body = buf[head_end..head_end + len].to_vec();
        return Some((resp, head_end + len));
    }
    if eof {
        resp.body = buf[head_end..].to_vec();
        return Some((resp, buf.len()));
    }
    None
}

/// Every complete response in `buf` (read until the connection closed).
pub fn parse_responses(buf: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match parse_response(&buf[pos..], true) {
            Some((resp, used)) if used > 0 => {
                let upgraded = resp.status == 101;
                out.push(resp);
                pos += used;
                if upgraded {
                    break;
                }
            }
            _ => break,
        }
    }
    out
}

/// Exactly one response, or a panic that shows the bytes.
pub fn one_response(buf: &[u8]) -> RawResponse {
    let responses = parse_responses(buf);
    assert_eq!(
        responses.len(),
        1,
        "expected exactly one response, got {}: {:?}",
        responses.len(),
        String::from_utf8_lossy(buf)
    );
    responses.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Assertions shared by the test files
// ---------------------------------------------------------------------------------------------

/// The "strict" preset, exactly.
pub const STRICT: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Header access for both reqwest responses and raw responses.
pub trait Headers {
    fn all(&self, name: &str) -> Vec<String>;
    fn one(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

impl Headers for HeaderMap {
    fn all(&self, name: &str) -> Vec<String> {
        self.get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

impl Headers for RawResponse {
    fn all(&self, name: &str) -> Vec<String> {
        self.header_all(name)
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

/// Every strict-preset header present exactly once with its exact value; Server and
/// X-Powered-By absent.
pub fn assert_strict_headers(h: &impl Headers, context: &str) {
    for (name, value) in STRICT {
        assert_eq!(
            h.all(name),
            vec![value.to_string()],
            "{context}: header {name} (exactly one copy with the strict value)"
        );
    }
    assert_eq!(h.all("server"), Vec::<String>::new(), "{context}: Server");
    assert_eq!(
        h.all("x-powered-by"),
        Vec::<String>::new(),
        "{context}: X-Powered-By"
    );
}

/// 32 lowercase hex digits.
pub fn is_generated_request_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A proxy-made error: exact short body, text/plain, request id, strict headers, no leaks.
pub fn assert_proxy_error(
    h: &impl Headers,
    status: u16,
    body: &str,
    expected: &str,
    context: &str,
) {
    assert!(
        expected.starts_with(&format!("{status} ")),
        "{context}: expected body {expected:?} is not the {status} error"
    );
    assert_eq!(body, expected, "{context}: body");
    assert_eq!(
        h.one("content-type").as_deref(),
        Some("text/plain; charset=utf-8"),
        "{context}: content-type"
    );
    let id = h.one("x-request-id");
    assert!(
        id.as_deref().map(|i| !i.is_empty()).unwrap_or(false),
        "{context}: X-Request-Id missing"
    );
    assert_strict_headers(h, context);
    assert_no_leak(body, context);
}

/// No OS error text, IP addresses or crate names in a client-facing body.
pub fn assert_no_leak(body: &str, context: &str) {
    let lower = body.to_ascii_lowercase();
    for word in [
        "hyper",
        "rustls",
        "tokio",
        "os error",
        "connection refused",
        "127.0.0.1",
        "timed out",
        "error trying",
        "rampart",
    ] {
        assert!(
            !lower.contains(word),
            "{context}: body leaks {word:?}: {body:?}"
        );
    }
    // no dotted quad
    let bytes = body.as_bytes();
    let mut run_dots = 0;
    let mut digits = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            digits += 1;
        } else if b == b'.' && digits > 0 {
            run_dots += 1;
            digits = 0;
            assert!(
                run_dots < 3,
                "{context}: body contains an IP address: {body:?}"
            );
        } else {
            run_dots = 0;
            digits = 0;
        }
    }
}

/// A simple request with `Connection: close`.
pub fn get_close(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Health checks: the running server's handle, and an upstream whose health answer is switched
// ---------------------------------------------------------------------------------------------

impl TestProxy {
    /// The running server (reload, metrics, the snapshot in use).
    pub fn handle(&self) -> &rampart::ServerHandle {
        self.handle.as_ref().expect("the proxy is running")
    }
}

/// One `/health` request as a [`SwitchableUpstream`] saw it.
#[derive(Debug, Clone)]
pub struct HealthCheckSeen {
    /// The status it was answered.
    pub status: u16,
    pub host: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Default)]
struct SwitchableState {
    /// The status `/health` answers (0 until set: 200).
    health_status: std::sync::atomic::AtomicU16,
    checks: Mutex<Vec<HealthCheckSeen>>,
    /// Every other request's path.
    served: Mutex<Vec<String>>,
}

/// An HTTP/1.1 upstream (TCP or unix socket) whose `/health` answers a status the test
/// switches at will; every other path answers 200 `ok`.
pub struct SwitchableUpstream {
    pub addr: Option<SocketAddr>,
    pub unix_path: Option<PathBuf>,
    state: Arc<SwitchableState>,
    task: JoinHandle<()>,
}

impl Drop for SwitchableUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SwitchableUpstream {
    pub async fn start(health_status: u16) -> SwitchableUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(SwitchableState::default());
        state.health_status.store(health_status, Ordering::SeqCst);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve_switchable(stream, st.clone()));
            }
        });
        SwitchableUpstream {
            addr: Some(addr),
            unix_path: None,
            state,
            task,
        }
    }

    pub async fn start_unix(path: &Path, health_status: u16) -> SwitchableUpstream {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let state = Arc::new(SwitchableState::default());
        state.health_status.store(health_status, Ordering::SeqCst);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve_switchable(stream, st.clone()));
            }
        });
        SwitchableUpstream {
            addr: None,
            unix_path: Some(path.to_path_buf()),
            state,
            task,
        }
    }

    /// The value for `servers = [...]`.
    pub fn server(&self) -> String {
        match (&self.addr, &self.unix_path) {
            (Some(addr), _) => format!("http://{addr}"),
            (None, Some(path)) => format!("unix:{}", path.display()),
            _ => unreachable!(),
        }
    }

    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// Every health check received, in order.
    pub fn checks(&self) -> Vec<HealthCheckSeen> {
        self.state.checks.lock().unwrap().clone()
    }

    pub fn check_count(&self) -> usize {
        self.state.checks.lock().unwrap().len()
    }

    /// Requests other than health checks.
    pub fn served(&self) -> usize {
        self.state.served.lock().unwrap().len()
    }
}

async fn serve_switchable<S>(stream: S, state: Arc<SwitchableState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            if req.uri().path() == "/health" {
                let status = match state.health_status.load(Ordering::SeqCst) {
                    0 => 200,
                    code => code,
                };
                state.checks.lock().unwrap().push(HealthCheckSeen {
                    status,
                    host: header("host"),
                    user_agent: header("user-agent"),
                });
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return Ok::<_, Infallible>(full(status, "health\n"));
            }
            state
                .served
                .lock()
                .unwrap()
                .push(req.uri().path().to_string());
            Ok(full(StatusCode::OK, "ok\n"))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; true when it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The smuggling catalogue's upstream: exact bytes per connection
// ---------------------------------------------------------------------------------------------

pub mod byte_recorder;

/// One HTTP/2 GET with `path` as its :path, exactly: status and body.
pub async fn h2_get_raw_path(proxy: &TestProxy, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let tls = tls_connect(proxy.https_addr(), Some("localhost"), &[b"h2"], None)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let uri: http::Uri = format!("https://localhost{path}").parse().unwrap();
    let request = http::Request::get(uri)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Writes `content` at `path`, creating its directories (test fixtures).
pub fn write(path: &std::path::Path, content: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Loads `body` after a valid `[listen]`, `[tls]` and an `app` upstream; returns the warnings
/// or the errors (with file:line).
pub fn load_config_body(body: &str) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.crt");
    let key = dir.path().join("c.key");
    rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = {:?}\nkey = {:?}\n\n[upstreams.app]\nservers = [\"http://127.0.0.1:9\"]\n\n{body}",
        cert.display().to_string(),
        key.display().to_string()
    );
    rampart::config::load_str(&text, "test.toml")
        .map(|snapshot| snapshot.warnings.clone())
        .map_err(|errors| errors.to_string())
}
