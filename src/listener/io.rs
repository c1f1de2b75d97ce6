//! A client connection's socket with an idle deadline (`client.idle_timeout`).
//!
//! The deadline only runs while the connection has no request in flight: a request waiting for
//! a slow upstream is bounded by `response_timeout` instead. Any byte read or written pushes it
//! back. The timer is reset lazily (only when it fires), so the hot path pays one clock read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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

pin_project_lite::pin_project! {
    pub struct IdleIo<T> {
        #[pin]
        inner: T,
        // Boxed: hyper wants an `Unpin` socket.
        timer: Pin<Box<Sleep>>,
        idle: Duration,
        last_activity: Instant,
        in_flight: Arc<InFlight>,
    }
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, idle: Duration, in_flight: Arc<InFlight>) -> Self {
        let now = Instant::now();
        IdleIo {
            inner,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            idle,
            last_activity: now,
            in_flight,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// Called when the inner socket is not ready: `Ready(Err)` once the connection sat idle too long.
fn poll_idle(
    mut timer: Pin<&mut Sleep>,
    last_activity: Instant,
    idle: Duration,
    in_flight: &InFlight,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        let deadline = last_activity + idle;
        if deadline <= now && in_flight.is_idle() {
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
        }
        timer
            .as_mut()
            .reset(if deadline > now { deadline } else { now + idle });
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                *this.last_activity = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => poll_idle(
                this.timer.as_mut(),
                *this.last_activity,
                *this.idle,
                this.in_flight,
                cx,
            )
            .map(Err),
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write(cx, buf) {
            Poll::Ready(result) => {
                *this.last_activity = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => poll_idle(
                this.timer.as_mut(),
                *this.last_activity,
                *this.idle,
                this.in_flight,
                cx,
            )
            .map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                *this.last_activity = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => poll_idle(
                this.timer.as_mut(),
                *this.last_activity,
                *this.idle,
                this.in_flight,
                cx,
            )
            .map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
