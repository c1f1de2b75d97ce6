//! A client connection's socket with its two deadlines.
//!
//! - idle (`client.idle_timeout`): runs only while the connection has no request in flight (a
//!   request waiting for a slow upstream is bounded by `response_timeout` instead); any byte read
//!   or written pushes it back.
//! - send (`client.send_timeout`, nginx's `send_timeout`): runs while a write to the client is
//!   blocked (its receive window is full), whatever is in flight; only a write that moves pushes
//!   it back, so a client cannot keep a stalled response alive by sending bytes.
//! - head (`client.header_timeout`, HTTP/1 only, nginx's `client_header_timeout`): runs while no
//!   response is on its way out ([`ResponseGate`]: from the end of the last response, or the
//!   connection's start, until the service is called for the next request); reads do not push
//!   it back, so a client trickling a head (slowloris) is closed when it passes. This is
//!   hyper's `header_read_timeout`, which costs a timer of its own per request (a boxed `Sleep`
//!   inserted into and removed from tokio's timer wheel).
//!
//! One timer serves all three, reset lazily (only when it fires, or once when a write first
//! blocks), so the hot path pays one clock read per read or write. With a head deadline, the
//! timer fires at least every `header_timeout`: a head deadline starts at the last write, never
//! earlier than the timer's last reset, so it cannot pass before the timer next fires.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::response_gate::ResponseGate;

/// Requests in flight on one connection; the idle deadline is paused while it is non-zero.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn begin(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a connection may sit idle, and how long a write to it may stay blocked.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub idle: Duration,
    pub send: Duration,
}

pin_project_lite::pin_project! {
    pub struct IdleIo<T> {
        #[pin]
        inner: T,
        clock: Clock,
    }
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, deadlines: Deadlines, in_flight: Arc<InFlight>) -> Self {
        let now = Instant::now();
        IdleIo {
            inner,
            clock: Clock {
                timer: Box::pin(tokio::time::sleep_until(now + deadlines.idle)),
                deadlines,
                last_activity: now,
                last_write: now,
                write_blocked: false,
                in_flight,
                send_timeouts: None,
                head: None,
                armed: None,
            },
        }
    }

    /// HTTP/1: a request head must arrive within `timeout` of the end of the last response
    /// (or of now), as `gate` tells them.
    pub fn with_head_deadline(mut self, gate: Arc<ResponseGate>, timeout: Duration) -> Self {
        let first = self.clock.last_write + timeout;
        if self.clock.timer.deadline() > first {
            self.clock.reset_timer(first);
        }
        self.clock.head = Some(HeadDeadline { gate, timeout });
        self
    }

    /// Counts the connection in `counter` when its send deadline passes.
    pub fn counting_send_timeouts(mut self, counter: prometheus::IntCounter) -> Self {
        self.clock.send_timeouts = Some(counter);
        self
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

struct Clock {
    // Boxed: hyper wants an `Unpin` socket.
    timer: Pin<Box<Sleep>>,
    deadlines: Deadlines,
    /// Last byte read or written.
    last_activity: Instant,
    /// Last write that moved (written, flushed or shut down).
    last_write: Instant,
    /// The last write, flush or shutdown returned `Pending`: the client is not reading.
    write_blocked: bool,
    in_flight: Arc<InFlight>,
    /// `rampart_client_timeouts_total{kind="send"}`, counted once when the send deadline
    /// passes.
    send_timeouts: Option<prometheus::IntCounter>,
    head: Option<HeadDeadline>,
    /// The waker the timer was last polled with, while it holds it: see `poll_expired`.
    armed: Option<Waker>,
}

/// See the module's doc.
struct HeadDeadline {
    gate: Arc<ResponseGate>,
    timeout: Duration,
}

impl Clock {
    fn after_read<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.last_activity = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_expired(cx).map(Err),
        }
    }

    fn after_write<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                let now = Instant::now();
                self.last_activity = now;
                self.last_write = now;
                self.write_blocked = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.write_blocked {
                    self.write_blocked = true;
                    // The timer may be set for a later idle deadline: bring it forward, once
                    // per blocked stretch.
                    let send_deadline = self.last_write + self.deadlines.send;
                    if self.timer.deadline() > send_deadline {
                        self.reset_timer(send_deadline);
                    }
                }
                self.poll_expired(cx).map(Err)
            }
        }
    }

    fn reset_timer(&mut self, deadline: Instant) {
        self.timer.as_mut().reset(deadline);
        // A reset timer is polled again before it is trusted to wake anyone.
        self.armed = None;
    }

    /// Called when the socket is not ready: `Ready(Err)` once a deadline has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        // The timer already holds this task's waker (polled with it, `Pending`, not reset since:
        // a future wakes the waker of its last poll) and has not fired: polling it again would
        // only register the same waker again, some 450 instructions on each request's last read
        // (callgrind, docs/performance.md).
        if !self.timer.is_elapsed()
            && self
                .armed
                .as_ref()
                .is_some_and(|armed| armed.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        loop {
            // Out of budget, tokio's `Sleep` returns `Pending` without taking the waker (the
            // task is woken to yield instead): it is then not armed.
            let registers = tokio::task::coop::has_budget_remaining();
            if self.timer.as_mut().poll(cx).is_pending() {
                if registers {
                    self.armed = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            let now = Instant::now();
            let send_deadline = self.last_write + self.deadlines.send;
            if self.write_blocked && send_deadline <= now {
                if let Some(counter) = self.send_timeouts.take() {
                    counter.inc();
                }
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "send timeout"));
            }
            let idle_deadline = self.last_activity + self.deadlines.idle;
            if idle_deadline <= now && self.in_flight.is_idle() {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
            }
            let mut next = if idle_deadline > now {
                idle_deadline
            } else {
                now + self.deadlines.idle
            };
            if self.write_blocked {
                next = next.min(send_deadline);
            }
            if let Some(head) = &self.head {
                let head_deadline = self.last_write + head.timeout;
                if head.gate.awaits_head() {
                    if head_deadline <= now {
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head timeout",
                        ));
                    }
                    next = next.min(head_deadline);
                }
                // A head deadline that starts later cannot pass before this.
                next = next.min(now + head.timeout);
            }
            self.reset_timer(next);
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.inner.poll_read(cx, buf);
        this.clock.after_read(polled, cx)
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        this.clock.after_write(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        this.clock.after_write(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// TLS: a write can be taken into rustls' buffer and only block here, on its way out.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.inner.poll_flush(cx);
        // A flush after a write that went through has nothing new to record: skip the clock.
        if polled.is_ready() && !this.clock.write_blocked {
            return polled;
        }
        this.clock.after_write(polled, cx)
    }

    /// A client that never reads would otherwise hold the close (TLS close_notify) forever.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.inner.poll_shutdown(cx);
        this.clock.after_write(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// The timer skips polls while it holds the task's waker (`Clock::armed`). A first poll made
    /// out of tokio's task budget does not hand it the waker: the idle deadline must still
    /// close a connection that never sends a byte. (Seen to hang until the test's own minute
    /// when `armed` is set regardless of the budget.)
    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_fires_when_first_polled_out_of_budget() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let deadlines = Deadlines {
            idle: Duration::from_secs(10),
            send: Duration::from_secs(10),
        };
        let mut io = IdleIo::new(server, deadlines, Arc::new(InFlight::default()));
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(60), async {
            while tokio::task::coop::has_budget_remaining() {
                tokio::task::coop::consume_budget().await;
            }
            io.read(&mut buf).await
        })
        .await;
        let error = read
            .expect("the idle deadline closes the read within its 10 s")
            .expect_err("nothing was sent");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
