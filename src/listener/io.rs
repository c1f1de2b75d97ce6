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

/// Any progress pushes the idle deadline back; no progress checks it.
fn after_io<R>(
    polled: Poll<io::Result<R>>,
    last_activity: &mut Instant,
    timer: Pin<&mut Sleep>,
    idle: Duration,
    in_flight: &InFlight,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    match polled {
        Poll::Ready(result) => {
            *last_activity = Instant::now();
            Poll::Ready(result)
        }
        Poll::Pending => poll_idle(timer, *last_activity, idle, in_flight, cx).map(Err),
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
        after_io(
            polled,
            this.last_activity,
            this.timer.as_mut(),
            *this.idle,
            this.in_flight,
            cx,
        )
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
        after_io(
            polled,
            this.last_activity,
            this.timer.as_mut(),
            *this.idle,
            this.in_flight,
            cx,
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        after_io(
            polled,
            this.last_activity,
            this.timer.as_mut(),
            *this.idle,
            this.in_flight,
            cx,
        )
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

pin_project_lite::pin_project! {
    /// HTTP/1 only. hyper answers a request it cannot parse (invalid bytes, conflicting
    /// Content-Length, a head larger than its buffer) itself, before our pipeline runs, with a
    /// bare `HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: …`.
    /// This rewrites exactly that shape into the proxy's own error response, with the security
    /// headers and a request id, so no response of the https listener goes out without them.
    pub struct ParseErrorHeads<T> {
        #[pin]
        inner: T,
        shared: crate::Shared,
        // (rewritten bytes, how many are written, length of the buffer hyper gave us)
        pending: Option<(Vec<u8>, usize, usize)>,
    }
}

impl<T> ParseErrorHeads<T> {
    pub fn new(inner: T, shared: crate::Shared) -> Self {
        ParseErrorHeads {
            inner,
            shared,
            pending: None,
        }
    }
}

/// `Some(status line)` when `buf` is one of hyper's automatic error heads, to the letter.
fn hyper_error_head(buf: &[u8]) -> Option<&[u8]> {
    const TAIL: &[u8] = b"connection: close\r\ncontent-length: 0\r\ndate: ";
    if buf.len() > 200 || !buf.starts_with(b"HTTP/1.1 ") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    if !matches!(buf.get(9), Some(b'4' | b'5')) {
        return None;
    }
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let rest = &buf[line_end + 2..];
    // date is the fixed 29-character IMF-fixdate; nothing else may follow it.
    (rest.starts_with(TAIL) && rest.len() == TAIL.len() + 29 + 4).then_some(&buf[..line_end])
}

fn rewrite_error_head(status_line: &[u8], original: &[u8], shared: &crate::Shared) -> Vec<u8> {
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.get(9..12))
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .unwrap_or(http::StatusCode::BAD_REQUEST);
    let body = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let date_start = original.len() - 4 - 29;
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
    let snapshot = shared.load();
    for (name, value) in snapshot.default_headers.sets() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(crate::proxy::new_request_id().as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(&original[date_start..date_start + 29]);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

impl<T: AsyncRead> AsyncRead for ParseErrorHeads<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for ParseErrorHeads<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        if this.pending.is_none() {
            if let Some(status_line) = hyper_error_head(buf) {
                *this.pending = Some((
                    rewrite_error_head(status_line, buf, this.shared),
                    0,
                    buf.len(),
                ));
            }
        }
        let Some((bytes, written, original_len)) = this.pending.as_mut() else {
            return this.inner.poll_write(cx, buf);
        };
        while *written < bytes.len() {
            match this.inner.as_mut().poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let accepted = *original_len;
        *this.pending = None;
        Poll::Ready(Ok(accepted))
    }

    /// Every write goes through `poll_write`, where error heads are recognised whole.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hypers_bare_error_heads() {
        let head = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 19:43:56 GMT\r\n\r\n";
        assert_eq!(
            hyper_error_head(head),
            Some(&b"HTTP/1.1 400 Bad Request"[..])
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 19:43:56 GMT\r\n\r\n";
        assert_eq!(hyper_error_head(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 19:43:56 GMT\r\n\r\n";
        assert_eq!(hyper_error_head(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 19:43:56 GMT\r\n\r\nx";
        assert_eq!(hyper_error_head(with_body), None);
    }
}
