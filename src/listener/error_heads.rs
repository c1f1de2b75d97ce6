//! HTTP/1: hyper's own bare error heads (a `400` for a head it cannot parse) rewritten into the
//! proxy's error response, with the security headers and a request id, and logged and counted,
//! but only for a request the service never saw: [`ResponseGate`] says when the bytes written
//! belong to a response of the service, which pass untouched whatever they hold.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use super::response_gate::{ResponseEnd, ResponseGate};

/// What the proxy's own answer to a refused head needs besides the bytes.
pub struct RefusedHeads {
    pub shared: crate::Shared,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub peer: std::net::IpAddr,
    pub gate: Arc<ResponseGate>,
}

pin_project_lite::pin_project! {
    /// HTTP/1 only. hyper answers a request it cannot parse (invalid bytes, conflicting
    /// Content-Length, a head larger than its buffer) itself, before our pipeline runs, with a
    /// bare `HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: …`.
    /// This rewrites exactly that shape, written while no response of the service is open
    /// ([`ResponseGate`]), into the proxy's own error response, with the security headers and
    /// a request id, and logs and counts it as a request of route `-`. hyper is told its
    /// bytes were written, as they were in substance: its bookkeeping stays its own.
    pub struct ParseErrorHeads<T> {
        #[pin]
        inner: T,
        refused: RefusedHeads,
        // (rewritten bytes, how many are written, length of the buffer hyper gave us)
        pending: Option<(Vec<u8>, usize, usize)>,
    }
}

impl<T> ParseErrorHeads<T> {
    pub fn new(inner: T, refused: RefusedHeads) -> Self {
        ParseErrorHeads {
            inner,
            refused,
            pending: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
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

fn rewrite_error_head(status_line: &[u8], original: &[u8], refused: &RefusedHeads) -> Vec<u8> {
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.get(9..12))
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .unwrap_or(http::StatusCode::BAD_REQUEST);
    let date_start = original.len() - 4 - 29;
    let snapshot = refused.shared.load();
    let request_id = crate::request_id::new_request_id();
    let (out, body_len) = crate::errors::refused_head_bytes(
        status,
        &snapshot.default_headers,
        &request_id,
        &original[date_start..date_start + 29],
    );
    // DESIGN §4: one line and one count per request, this one included (route `-`).
    refused
        .metrics
        .requests
        .with_label_values(&[crate::metrics::NO_ROUTE, "OTHER", status.as_str()])
        .inc();
    if snapshot.log.access {
        crate::access_log::refused_head(&request_id, refused.peer, status, body_len);
    }
    // A strike like any response the client gets (`[ban]`'s rule: no route was found).
    crate::proxy::strike_refused_head(&snapshot, &refused.metrics, refused.peer, status.as_u16());
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
        if this.pending.is_none() && this.refused.gate.may_be_hyper_error() {
            if let Some(status_line) = hyper_error_head(buf) {
                *this.pending = Some((
                    rewrite_error_head(status_line, buf, this.refused),
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
        let this = self.project();
        let polled = this.inner.poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.refused.gate.flushed();
        }
        polled
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
