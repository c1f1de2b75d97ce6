//! The stack floor in the per-core shape (issue 18, step 1), for the load bench
//! (`benches/load/proxy.sh`): the same job as `examples/stack_floor.rs` (TLS termination with
//! tokio-rustls and ring, ALPN h2 + http/1.1, hyper's server through hyper-util's `auto::Builder`,
//! HSTS added, every request forwarded to one upstream over keep-alive HTTP/1.1, nothing else),
//! but shaped like nginx instead of like a work-stealing pool:
//!
//! - one thread per worker, each running its own **current-thread** tokio runtime and its own
//!   listener bound with `SO_REUSEPORT`: the kernel spreads the connections over the workers, and
//!   a connection lives and dies on the thread that accepted it;
//! - the upstream connections are hyper's bare HTTP/1.1 client connections
//!   (`hyper::client::conn::http1`), **driven inside the request's own task**: the request polls
//!   the `Connection` future together with the response future, then its response body keeps
//!   polling it until the body ends. No task is spawned per upstream connection, so a request
//!   wakes nothing but itself (and, over HTTP/2, its connection's task on the same thread);
//! - a clean upstream connection goes back to its **worker's own idle list** (a `thread_local!`:
//!   no lock, no atomics), bounded and with an idle timeout, and is checked before reuse.
//!
//!   cargo run --release --example stack_floor_per_core -- LISTEN UPSTREAM CERT KEY [WORKERS]
//!   e.g. 127.0.0.1:18546 127.0.0.1:18580 certs/dev.crt certs/dev.key 2
//!
//! WORKERS defaults to the number of cores (`std::thread::available_parallelism`).
//!
//! Like `stack_floor.rs`, it forwards the request head as it came (a client's `Connection: close`
//! included), sets `Host` only when the request has none (HTTP/2), and adds HSTS to the answer.
//!
//! With `FLOOR_SAME_HEADERS=1` it also does rampart's header work on every request, in the
//! plainest code: `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, a new `X-Request-Id` and `Host`
//! set on the request; the upstream's `Server` and `X-Powered-By` removed and the strict preset's
//! seven security headers and the request id set on the response. It measures what those headers
//! cost in the `http` and hyper crates by themselves (docs/performance.md, "The floor doing the
//! same header work").
//!
//! Not a product: it has none of rampart's protections (no timeouts, no limits). Never expose it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::{pin, Pin};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, STRICT_TRANSPORT_SECURITY};
use http::uri::PathAndQuery;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, TrySendError};
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// At most this many idle upstream connections per worker (nginx's `keepalive 64` is per worker
/// too; this bound only matters for bursts).
const POOL_MAX: usize = 1024;
/// An idle upstream connection older than this is closed instead of reused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, cert, key, workers) = match args.as_slice() {
        [listen, upstream, cert, key] => (listen, upstream, cert, key, None),
        [listen, upstream, cert, key, workers] => (listen, upstream, cert, key, Some(workers)),
        _ => return Err("usage: stack_floor_per_core LISTEN UPSTREAM CERT KEY [WORKERS]".into()),
    };
    let workers = match workers {
        Some(workers) => workers.parse::<usize>()?.max(1),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listen: SocketAddr = listen.parse()?;
    let upstream = upstream
        .to_socket_addrs()?
        .next()
        .ok_or("the upstream address resolves to nothing")?;

    // Each worker reports whether its listener is bound before it serves, so that a failed bind
    // ends the program instead of leaving it running with fewer workers.
    let (bound_tx, bound_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let (acceptor, bound_tx) = (acceptor.clone(), bound_tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("floor-worker-{index}"))
            .spawn(move || -> std::io::Result<()> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(worker(listen, upstream, acceptor, bound_tx))
            })?;
        threads.push(thread);
    }
    drop(bound_tx);
    for _ in 0..workers {
        bound_rx.recv()??;
    }
    // SIGTERM ends the program with `exit`, as rampart's shutdown does, not by the signal: a
    // profile-instrumented build (a PGO training run) writes its profile at exit.
    std::thread::Builder::new()
        .name("floor-signals".into())
        .spawn(|| -> std::io::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
                        .recv()
                        .await;
                    std::process::exit(0)
                })
        })?;
    for thread in threads {
        thread.join().map_err(|_| "a worker panicked")??;
    }
    Ok(())
}

/// One worker: its own `SO_REUSEPORT` listener on the shared address, and every connection it
/// accepts served on this thread.
///
/// Connections (and, over HTTP/2, hyper's per-stream tasks) are started with plain
/// `tokio::spawn`: on a current-thread runtime a spawned task never leaves the thread, so no
/// `LocalSet`/`spawn_local` executor is needed. The futures are `Send` anyway (the idle list is a
/// `thread_local!`, not an `Rc` held by the futures), so `TokioExecutor` works as it is.
async fn worker(
    listen: SocketAddr,
    upstream: SocketAddr,
    acceptor: TlsAcceptor,
    bound: mpsc::Sender<std::io::Result<()>>,
) -> std::io::Result<()> {
    let listener = match bind_reuseport(listen) {
        Ok(listener) => {
            let _ = bound.send(Ok(()));
            listener
        }
        Err(err) => {
            let _ = bound.send(Err(err));
            return Ok(());
        }
    };
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: keep serving the connections we have.
            Err(_) => continue,
        };
        tokio::spawn(serve(tcp, acceptor.clone(), upstream));
    }
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // SO_REUSEADDR as `TcpListener::bind` sets it; SO_REUSEPORT so that every worker binds its
    // own socket on the same address and the kernel balances new connections between them.
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // The backlog `TcpListener::bind` uses (mio's).
    socket.listen(1024)
}

async fn serve(tcp: TcpStream, acceptor: TlsAcceptor, upstream: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map(|addr| addr.ip()).ok();
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        forward(upstream, peer, request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
}

/// One upstream connection: hyper's two halves, kept together because nobody else polls the
/// `Connection` (it is not spawned).
struct Upstream {
    send: http1::SendRequest<Incoming>,
    conn: http1::Connection<TokioIo<TcpStream>, Incoming>,
    /// Taken from the idle list (false: just connected). Only a reused connection is retried.
    reused: bool,
    /// When it went back to the idle list.
    idle_since: Instant,
}

thread_local! {
    /// This worker's idle upstream connections, most recently used at the back. Only the worker's
    /// thread touches it, and never across an `.await`, so a `RefCell` is all it needs.
    static IDLE: RefCell<VecDeque<Upstream>> = const { RefCell::new(VecDeque::new()) };
}

async fn forward(
    upstream: SocketAddr,
    peer: Option<std::net::IpAddr>,
    request: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Error> {
    let (mut parts, body) = request.into_parts();
    let request_id = SAME_HEADERS.then(|| set_request_headers(&mut parts, peer));
    // What hyper-util's client does before it writes a request: origin form, and a Host header
    // when the request has none (HTTP/2 carries it as :authority).
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !parts.headers.contains_key(HOST) {
        parts
            .headers
            .insert(HOST, HeaderValue::from_str(&upstream.to_string())?);
    }
    parts.uri = Uri::from(path);
    parts.version = http::Version::HTTP_11;
    let mut request = Request::from_parts(parts, body);

    let mut conn = match take_idle() {
        Some(conn) => conn,
        None => connect(upstream).await?,
    };
    loop {
        let reused = conn.reused;
        let (result, conn_left) = exchange(conn, request).await;
        match result {
            Ok(mut response) => {
                let keep_alive = !has_close(response.headers());
                match &request_id {
                    Some(id) => set_response_headers(response.headers_mut(), id),
                    None => {
                        response.headers_mut().insert(
                            STRICT_TRANSPORT_SECURITY,
                            HeaderValue::from_static("max-age=31536000"),
                        );
                    }
                }
                return Ok(response.map(|body| UpstreamBody {
                    body,
                    conn: conn_left,
                    keep_alive,
                    ended: false,
                }));
            }
            // The check before reuse cannot see a close that is still in flight: a pooled
            // connection the upstream closed just then hands the request back unsent (hyper only
            // returns it when not a byte of it was written), and it goes once over a new one.
            Err(mut err) => match err.take_message() {
                Some(unsent) if reused => {
                    request = unsent;
                    conn = connect(upstream).await?;
                }
                _ => return Err(err.into_error().into()),
            },
        }
    }
}

/// `FLOOR_SAME_HEADERS=1`: rampart's header work too (see the top of this file).
static SAME_HEADERS: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("FLOOR_SAME_HEADERS").is_some_and(|v| v == "1"));

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
/// The strict preset's (src/policy/headers.rs).
static SECURITY_HEADERS: [(HeaderName, &str); 7] = [
    (
        http::header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    ),
    (
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
    (http::header::X_FRAME_OPTIONS, "DENY"),
    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        http::header::REFERRER_POLICY,
        "strict-origin-when-cross-origin",
    ),
    (
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
];

/// The request headers rampart sets, the plainest way; returns the request id.
fn set_request_headers(
    parts: &mut http::request::Parts,
    peer: Option<std::net::IpAddr>,
) -> HeaderValue {
    let headers = &mut parts.headers;
    let peer = peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let peer = HeaderValue::from_str(&peer).unwrap_or(HeaderValue::from_static("unknown"));
    let host = headers
        .get(HOST)
        .cloned()
        .or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        })
        .unwrap_or(HeaderValue::from_static("localhost"));
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-"));
    headers.insert(X_FORWARDED_FOR, peer.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    headers.insert(X_FORWARDED_HOST, host.clone());
    headers.insert(X_REAL_IP, peer);
    headers.insert(X_REQUEST_ID, id.clone());
    headers.insert(HOST, host);
    id
}

/// The response headers rampart's strict preset sets and removes, the plainest way.
fn set_response_headers(headers: &mut http::HeaderMap, request_id: &HeaderValue) {
    headers.remove(http::header::SERVER);
    headers.remove(X_POWERED_BY);
    for (name, value) in &SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let mut id = request_id.clone();
    id.set_sensitive(true);
    headers.insert(X_REQUEST_ID, id);
}

async fn connect(upstream: SocketAddr) -> Result<Upstream, Error> {
    let tcp = TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    Ok(Upstream {
        send,
        conn,
        reused: false,
        idle_since: Instant::now(),
    })
}

/// Sends the request and waits for the response head, polling the connection meanwhile (it is
/// what writes the request and reads the answer). Gives the connection back unless it ended.
async fn exchange(
    upstream: Upstream,
    request: Request<Incoming>,
) -> (
    Result<Response<Incoming>, TrySendError<Request<Incoming>>>,
    Option<Upstream>,
) {
    let Upstream {
        mut send,
        conn,
        reused,
        idle_since,
    } = upstream;
    let mut conn = Some(conn);
    let mut response = pin!(send.try_send_request(request));
    let result = poll_fn(|cx| {
        if let Some(running) = conn.as_mut() {
            if Pin::new(running).poll(cx).is_ready() {
                // Closed or failed. Dropping it is what completes the response future with an
                // error (or the request handed back unsent) if no answer came first.
                conn = None;
            }
        }
        response.as_mut().poll(cx)
    })
    .await;
    let upstream = conn.map(|conn| Upstream {
        send,
        conn,
        reused,
        idle_since,
    });
    (result, upstream)
}

/// The upstream's `Connection` header asks to close after this response.
fn has_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&byte| byte == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The upstream's response body, which also drives the upstream connection until it ends and
/// then gives the connection back to the idle list.
struct UpstreamBody {
    body: Incoming,
    conn: Option<Upstream>,
    keep_alive: bool,
    /// The body gave its last frame (a chunked body is not `is_end_stream()` until then).
    ended: bool,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The connection first: it is what reads the body into `Incoming`'s channel.
        if let Some(upstream) = this.conn.as_mut() {
            if Pin::new(&mut upstream.conn).poll(cx).is_ready() {
                this.conn = None;
            }
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Err(_)) => this.conn = None,
            None => {
                this.ended = true;
                this.release();
            }
            // The last data frame: hyper's server stops polling a body once `is_end_stream()`,
            // so give the connection back now rather than when the body is dropped.
            Some(Ok(_)) if this.body.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl UpstreamBody {
    /// Back to the idle list when the whole response was read and the upstream keeps the
    /// connection alive; otherwise (client gone mid-body, `Connection: close`, error) the
    /// connection is dropped, which closes it.
    fn release(&mut self) {
        let Some(mut upstream) = self.conn.take() else {
            return;
        };
        if !self.keep_alive || !(self.ended || self.body.is_end_stream()) {
            return;
        }
        // One more turn of the connection, so that it sees the response end and asks for the
        // next request (`is_ready`); usually it already has, in the poll that read the body.
        let ready =
            upstream.send.is_ready() || (still_idle(&mut upstream) && upstream.send.is_ready());
        if !ready {
            return;
        }
        upstream.reused = true;
        upstream.idle_since = Instant::now();
        let evicted = IDLE
            .try_with(|idle| {
                let mut idle = idle.borrow_mut();
                let mut evicted = Vec::new();
                while idle.front().is_some_and(|oldest| {
                    idle.len() >= POOL_MAX || oldest.idle_since.elapsed() > POOL_IDLE_TIMEOUT
                }) {
                    evicted.extend(idle.pop_front());
                }
                idle.push_back(upstream);
                evicted
            })
            .unwrap_or_default();
        drop(evicted); // closed outside the borrow
    }
}

impl Drop for UpstreamBody {
    /// An empty or `Content-Length`-ended body may never be polled to its end (hyper's server
    /// checks `is_end_stream()` first): its connection goes back here.
    fn drop(&mut self) {
        self.release();
    }
}

/// The most recently used idle connection that is still fit to carry a request, if any.
fn take_idle() -> Option<Upstream> {
    loop {
        let mut upstream = IDLE.try_with(|idle| idle.borrow_mut().pop_back()).ok()??;
        if upstream.idle_since.elapsed() > POOL_IDLE_TIMEOUT {
            // The back is the most recent: everything in front of it is older still.
            let stale = IDLE
                .try_with(|idle| std::mem::take(&mut *idle.borrow_mut()))
                .unwrap_or_default();
            drop((upstream, stale));
            return None;
        }
        if still_idle(&mut upstream) && upstream.send.is_ready() {
            return Some(upstream);
        }
    }
}

/// The check before reuse: polls the idle connection's `Connection` future once, with a no-op
/// waker (nothing should wake for an idle connection) and outside tokio's cooperative budget (an
/// exhausted budget would make any socket read look pending, and the check pass).
///
/// What that poll does, in hyper's HTTP/1 client: with no request in flight, its dispatcher does
/// a read that must find nothing (`require_empty_read`). End of file (the upstream closed it, as
/// a keep-alive timeout does), bytes (an answer nobody asked for: the connection is out of step)
/// or a socket error all complete the future, and the connection is dropped. Only a read that
/// would block leaves it pending: the connection is still open and silent, the state in which
/// nginx's and Pingora's pools reuse one too.
///
/// Why that is enough: the read goes through tokio's readiness, which this worker's reactor
/// updates each time it turns (whenever the worker has nothing to run, and at least every 61
/// tasks it polls); a FIN that arrived after the last turn is not seen yet. That leaves the race
/// every client pool has (the close may be in flight when the request goes out, whatever is
/// checked), and hyper reports it: a request not written at all comes back in `TrySendError`, and
/// `forward` sends it once over a new connection.
fn still_idle(upstream: &mut Upstream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let probe = tokio::task::unconstrained(poll_fn(|cx| {
        Poll::Ready(Pin::new(&mut upstream.conn).poll(cx).is_pending())
    }));
    matches!(pin!(probe).poll(&mut cx), Poll::Ready(true))
}
