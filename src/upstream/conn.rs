//! Upstream HTTP/1.1 connections driven in the request's own task (issue 18).
//!
//! A connection is hyper's bare client connection (`hyper::client::conn::http1`): its
//! `SendRequest` half and its `Connection` future (what writes the request and reads the answer)
//! are polled together by the request that uses it, and then by the response body
//! ([`UpstreamBody`]) until the body ends. No task is spawned per connection, so a request wakes
//! nothing but itself: hyper-util's pool (its lock, the hashing of its key, its checkout) and
//! the wake-up of a second task, often on the other core, are gone from every request. (hyper's
//! `SendRequest` still hands the request to its `Connection` through a channel, within the task.)
//!
//! A clean connection (whole response read, no `Connection: close`, not poisoned) goes back to
//! its worker's idle list, a `thread_local!` (each https worker is a thread, `crate::runtime`):
//! no lock, no atomics. The list is bounded (`keepalive`); a connection idle longer than
//! `keepalive_timeout` is closed, on reuse or by [`sweep_idle`] (lists of servers a reload
//! removed included).
//!
//! The response deadline (`response_timeout`: from the start of the exchange to the response
//! head) is one timer per connection, not one per request: the connection's timer stays
//! registered with tokio between requests and is moved only when it fires before the current
//! request's deadline (lazily, as the client side's `listener::io` does), so a request pays a
//! clock read and a poll instead of a timer-wheel insertion and removal.
//!
//! The check before reuse is hyper's own: a client connection with no request in flight reads
//! with `require_empty_read` before it writes, so one that was closed (the server's keep-alive
//! timeout) or that received bytes nobody asked for (out of step) fails the send and hands the
//! request back unwritten; [`Dialer::exchange`] then sends it on a new connection (tests:
//! `upstream_faults::a_connection_closed_while_idle_is_not_reused`,
//! `a_connection_with_stray_bytes_while_idle_is_not_reused`). A close still in flight when the
//! request is written is the race every pool has: `forward` resends only bodiless idempotent
//! requests then.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONNECTION;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::request_body::RequestBody;

/// Where a server's connections go, and how its idle ones are kept.
#[derive(Debug)]
pub struct Dialer {
    target: Target,
    connect_timeout: Duration,
    pool: Pool,
}

#[derive(Debug)]
enum Target {
    /// `host:port`, resolved at connect time.
    Tcp(String),
    Unix(PathBuf),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Dialer {
    pub fn tcp(
        authority: &str,
        connect_timeout: Duration,
        keepalive: usize,
        idle: Duration,
    ) -> Self {
        Self::new(
            Target::Tcp(authority.to_owned()),
            connect_timeout,
            keepalive,
            idle,
        )
    }

    pub fn unix(
        path: PathBuf,
        connect_timeout: Duration,
        keepalive: usize,
        idle: Duration,
    ) -> Self {
        Self::new(Target::Unix(path), connect_timeout, keepalive, idle)
    }

    fn new(target: Target, connect_timeout: Duration, keepalive: usize, idle: Duration) -> Self {
        Dialer {
            target,
            connect_timeout,
            pool: Pool {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                keepalive,
                keepalive_timeout: idle,
            },
        }
    }

    /// Sends `request` on an idle connection of this worker, or a new one, and returns the
    /// response head with a body that drives the connection to the end. Without a head
    /// within `timeout` (connecting included): [`ExchangeError::Timeout`].
    ///
    /// Not an `async fn` (nor the free `exchange` below): one would hold its arguments twice,
    /// and the 232-byte request is in every request's state while it waits for its upstream
    /// (see docs/architecture.md, "The request path's futures").
    #[allow(clippy::manual_async_fn)]
    pub fn exchange(
        &self,
        mut request: Request<RequestBody>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, ExchangeError>> + '_ {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // After hyper handed a request back, it goes on a new connection.
            let mut reuse = true;
            loop {
                let idle = if reuse { self.pool.take() } else { None };
                let conn = match idle {
                    Some(conn) => conn,
                    // A new connection is rare: its own timer bounds the connect.
                    None => match tokio::time::timeout_at(deadline, self.connect(deadline)).await {
                        Ok(connected) => connected?,
                        Err(_) => return Err(ExchangeError::Timeout),
                    },
                };
                let reused = conn.reused;
                match exchange(conn, request, deadline).await {
                    Ok((response, conn)) => {
                        let keep_alive = !asks_to_close(response.headers());
                        let pool = self.pool;
                        return Ok(response.map(|body| UpstreamBody {
                            body,
                            conn,
                            keep_alive,
                            ended: false,
                            pool,
                        }));
                    }
                    // hyper hands a request back only when not a byte of it was written: a pooled
                    // connection the server closed, or wrote to, while it sat idle. Safe to send
                    // again, on a new connection, whatever the method.
                    Err(SendError::Hyper(mut err)) => match err.take_message() {
                        Some(unsent) if reused => {
                            request = unsent;
                            reuse = false;
                        }
                        _ => {
                            return Err(ExchangeError::Failed {
                                error: err.into_error(),
                                reused,
                            })
                        }
                    },
                    Err(SendError::Timeout) => return Err(ExchangeError::Timeout),
                }
            }
        }
    }

    /// A new connection; its response timer starts at the exchange's `deadline`.
    async fn connect(&self, deadline: tokio::time::Instant) -> Result<UpstreamConn, ExchangeError> {
        let stream = match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(ExchangeError::Connect(err)),
            Err(_) => {
                return Err(ExchangeError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timeout",
                )))
            }
        };
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| ExchangeError::Connect(io::Error::other(err)))?;
        Ok(UpstreamConn {
            send,
            conn: Box::pin(conn.with_upgrades()),
            reused: false,
            expires: Instant::now(),
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    async fn open(&self) -> io::Result<Stream> {
        match &self.target {
            Target::Tcp(authority) => {
                let tcp = TcpStream::connect(authority.as_str()).await?;
                tcp.set_nodelay(true)?;
                Ok(Stream::Tcp(tcp))
            }
            Target::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        }
    }
}

/// Why an exchange got no response head.
#[derive(Debug)]
pub enum ExchangeError {
    /// No connection could be opened (refused, unreachable, `connect_timeout`).
    Connect(io::Error),
    /// The request was (at least partly) sent and the exchange failed; `reused`: on a
    /// connection that had answered before.
    Failed { error: hyper::Error, reused: bool },
    /// No response head within the exchange's timeout (`response_timeout`).
    Timeout,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Connect(err) => write!(f, "connect: {err}"),
            ExchangeError::Failed { error, .. } => write!(f, "{error}"),
            ExchangeError::Timeout => f.write_str("no response head in time"),
        }
    }
}

impl std::error::Error for ExchangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExchangeError::Connect(err) => Some(err),
            ExchangeError::Failed { error, .. } => Some(error),
            ExchangeError::Timeout => None,
        }
    }
}

impl ExchangeError {
    pub fn is_connect(&self) -> bool {
        matches!(self, ExchangeError::Connect(_))
    }

    /// The request went out on a pooled connection that had answered before, and that
    /// connection closed before any byte of a response: the server most likely closed it while
    /// it sat idle (the keep-alive race) and never processed the request. `forward` sends only
    /// idempotent requests again, since "most likely" is not "surely".
    pub fn on_stale_connection(&self) -> bool {
        matches!(self, ExchangeError::Failed { error, reused: true } if closed_before_response(error))
    }
}

fn closed_before_response(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::error_chain::chain(err).any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || cause.downcast_ref::<io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                )
            })
    })
}

/// hyper's `UpgradeableConnection` cannot be named: a boxed future, one allocation per
/// connection (not per request).
type Conn = dyn Future<Output = Result<(), hyper::Error>> + Send;

/// One upstream connection: hyper's two halves, kept together because nobody else polls the
/// connection.
pub struct UpstreamConn {
    send: http1::SendRequest<RequestBody>,
    conn: Pin<Box<Conn>>,
    /// Taken from the idle list (false: just connected).
    reused: bool,
    /// While idle: when it is closed instead of reused.
    expires: Instant,
    /// The response deadline's timer (see the module's doc): set for this or an earlier
    /// request's deadline, never a later one.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for UpstreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConn")
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

impl UpstreamConn {
    /// Drives the connection to its end (after an upgrade: until hyper hands the socket over).
    pub async fn run(mut self) {
        let _ = self.conn.as_mut().await;
    }
}

enum SendError {
    /// Boxed: it can hold the request handed back, and errors are rare.
    Hyper(Box<hyper::client::conn::TrySendError<Request<RequestBody>>>),
    Timeout,
}

type SendResult = Result<(Response<Incoming>, Option<UpstreamConn>), SendError>;

/// Sends the request and waits for the response head until `deadline`, polling the connection
/// meanwhile. Gives the connection back unless it ended.
fn exchange(
    upstream: UpstreamConn,
    request: Request<RequestBody>,
    deadline: tokio::time::Instant,
) -> impl Future<Output = SendResult> {
    let UpstreamConn {
        mut send,
        conn,
        reused,
        expires,
        mut timer,
    } = upstream;
    // hyper queues the request for the connection here, before the first await: the block
    // below holds hyper's future (its answer channel, or the request handed back at once if
    // the connection is gone), not another copy of the request.
    let response = send.try_send_request(request);
    async move {
        // The timer may only be late for this deadline, never early (see `expired`).
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        let mut conn = Some(conn);
        let mut response = pin!(response);
        let result = poll_fn(|cx| {
            if let Some(running) = conn.as_mut() {
                if running.as_mut().poll(cx).is_ready() {
                    // Closed or failed: dropping it completes the response future with an error
                    // (or the request handed back unsent) if no answer came first.
                    conn = None;
                }
            }
            if let Poll::Ready(result) = response.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(|err| SendError::Hyper(Box::new(err))));
            }
            expired(&mut timer, deadline, cx).map(|()| Err(SendError::Timeout))
        })
        .await;
        result.map(|response| {
            let conn = conn.map(|conn| UpstreamConn {
                send,
                conn,
                reused,
                expires,
                timer,
            });
            (response, conn)
        })
    }
}

/// `Ready` once `deadline` has passed. The timer fires at its own deadline, this or an earlier
/// request's; fired early, it is moved to `deadline` (once per early firing, not per request).
fn expired(
    timer: &mut Pin<Box<tokio::time::Sleep>>,
    deadline: tokio::time::Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    while timer.as_mut().poll(cx).is_ready() {
        if tokio::time::Instant::now() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
    Poll::Pending
}

/// The response's `Connection` header asks to close after it (RFC 9112 §9.6).
fn asks_to_close(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// A server's idle lists (one per worker thread, in [`IDLE`]).
#[derive(Debug, Clone, Copy)]
struct Pool {
    /// Keys the idle lists: unique per server of a snapshot.
    id: u64,
    keepalive: usize,
    keepalive_timeout: Duration,
}

impl Pool {
    /// This worker's most recently used idle connection of the server, unless it expired
    /// (then the older ones have too).
    fn take(&self) -> Option<UpstreamConn> {
        let conn = IDLE
            .try_with(|idle| idle.borrow_mut().get_mut(&self.id)?.pop_back())
            .ok()??;
        if conn.expires > Instant::now() {
            return Some(conn);
        }
        let stale = IDLE
            .try_with(|idle| idle.borrow_mut().remove(&self.id))
            .ok()
            .flatten();
        // Closed outside the borrow.
        drop((conn, stale));
        None
    }

    /// Keeps `conn` for reuse, closing the oldest beyond `keepalive`.
    fn put(&self, mut conn: UpstreamConn) {
        if self.keepalive == 0 {
            return;
        }
        conn.reused = true;
        conn.expires = Instant::now() + self.keepalive_timeout;
        let evicted = IDLE
            .try_with(|idle| {
                let mut idle = idle.borrow_mut();
                let list = idle.entry(self.id).or_default();
                let mut evicted = Vec::new();
                while list.len() >= self.keepalive {
                    evicted.extend(list.pop_front());
                }
                list.push_back(conn);
                evicted
            })
            .unwrap_or_default();
        drop(evicted);
    }
}

/// Closes this thread's idle connections that have expired, and forgets the lists left empty
/// (servers a reload removed): an idle worker would otherwise hold them, and their sockets,
/// until its next request to that server. Each worker runs it every second (`crate::runtime`).
pub fn sweep_idle() {
    let now = Instant::now();
    let expired = IDLE
        .try_with(|idle| {
            let mut idle = idle.borrow_mut();
            let mut expired = Vec::new();
            for list in idle.values_mut() {
                // Oldest first: the front expires first.
                while list.front().is_some_and(|conn| conn.expires <= now) {
                    expired.extend(list.pop_front());
                }
            }
            idle.retain(|_, list| !list.is_empty());
            expired
        })
        .unwrap_or_default();
    drop(expired);
}

thread_local! {
    /// This worker's idle upstream connections per server, most recently used at the back.
    /// Only this thread touches it, never across an `.await`. Keyed with rustc-hash's hasher:
    /// the keys are our own ids, and SipHash's defence against chosen keys cost about 300
    /// instructions per request (a `take` and a `put`).
    static IDLE: RefCell<FxHashMap<u64, VecDeque<UpstreamConn>>> = RefCell::new(FxHashMap::default());
}

/// The upstream's response body: it also drives the upstream connection until the body ends,
/// then gives the connection back to its worker's idle list.
pub struct UpstreamBody {
    body: Incoming,
    conn: Option<UpstreamConn>,
    keep_alive: bool,
    /// The body gave its last frame.
    ended: bool,
    pool: Pool,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// The connection is never reused: its framing was ambiguous.
    pub fn poison(&mut self) {
        self.keep_alive = false;
    }

    /// For an upgrade: the connection, to be driven until hyper hands the socket over.
    pub fn take_connection(&mut self) -> Option<UpstreamConn> {
        self.conn.take()
    }

    /// Back to the idle list when the whole response was read and the server keeps the
    /// connection alive; otherwise dropping it closes it.
    fn release(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.keep_alive || !(self.ended || self.body.is_end_stream()) {
            return;
        }
        // One more turn, so that the connection sees the response end and is ready for the next
        // request; usually it already is.
        if !(conn.send.is_ready() || (poll_once(&mut conn) && conn.send.is_ready())) {
            return;
        }
        self.pool.put(conn);
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The connection first: it is what reads the body into `Incoming`.
        if let Some(conn) = this.conn.as_mut() {
            if conn.conn.as_mut().poll(cx).is_ready() {
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
            // hyper's server stops polling a body once `is_end_stream()`: release now.
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

impl Drop for UpstreamBody {
    /// An empty or `Content-Length`-ended body may never be polled to its end: its connection
    /// goes back here (only when the whole body was read).
    fn drop(&mut self) {
        self.release();
    }
}

/// Polls the connection once, with a no-op waker and outside tokio's cooperative budget (a
/// spent budget would make any read look pending): `true` while it is still open.
fn poll_once(conn: &mut UpstreamConn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let probe = tokio::task::unconstrained(poll_fn(|cx| {
        Poll::Ready(conn.conn.as_mut().poll(cx).is_pending())
    }));
    matches!(pin!(probe).poll(&mut cx), Poll::Ready(true))
}

/// A TCP or unix-socket stream.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
