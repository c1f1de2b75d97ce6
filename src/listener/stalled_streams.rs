//! HTTP/2 streams whose client keeps their flow-control window shut (`client.send_timeout`).
//!
//! Such a stream blocks nothing on the socket: the connection stays writable and busy (other
//! streams, PINGs), so the socket's send deadline (`io.rs`) never runs, while the response and
//! its upstream connection would wait forever. hyper runs each HTTP/2 stream as a task on the
//! executor it is given: [`StreamExecutor`] gives each one a deadline that runs while the stream
//! holds a response chunk it cannot send, and drops the stream once it passes, which makes h2
//! reset it (RST_STREAM `CANCEL`) and releases the upstream. The rest of the connection goes on.
//!
//! The task learns what the response body last did from [`WatchedBody`], the outermost body,
//! through a thread-local written and read within one synchronous poll of the task. The cost
//! per poll is two thread-local accesses, plus one clock read when a chunk has to wait (the
//! stall clock, `stall.rs`, shared with request bodies). HTTP/1 bodies pass without either.

use std::sync::Arc;

use crate::metrics::Metrics;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::body::{BoxError, ResponseBody};
use crate::stall::StallClock;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What the response body's last poll gave hyper.
#[derive(Debug, Clone, Copy)]
enum BodyPoll {
    /// A chunk: if the stream task then waits, it waits for send capacity (the client).
    Frame,
    /// Nothing yet (the upstream is slow), or the end: the client is not being waited for.
    NoFrame,
}

thread_local! {
    static LAST_BODY_POLL: Cell<Option<BodyPoll>> = const { Cell::new(None) };
}

/// hyper's executor for the https listener: `tokio::spawn`, with HTTP/2 streams under a send
/// deadline. (HTTP/1 spawns nothing; its stalls block the socket, where `io.rs` sees them.)
#[derive(Debug, Clone)]
pub struct StreamExecutor {
    send_timeout: Duration,
    /// Counted when a stream is reset for `send_timeout`.
    metrics: Option<Arc<Metrics>>,
}

impl StreamExecutor {
    pub fn new(send_timeout: Duration, metrics: Option<Arc<Metrics>>) -> Self {
        StreamExecutor {
            send_timeout,
            metrics,
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(SendDeadline {
            stream,
            timeout: self.send_timeout,
            blocked: StallClock::default(),
            metrics: self.metrics.clone(),
        });
    }
}

pin_project_lite::pin_project! {
    struct SendDeadline<F> {
        #[pin]
        stream: F,
        timeout: Duration,
        // Runs while the stream holds a chunk it cannot send.
        blocked: StallClock,
        metrics: Option<Arc<Metrics>>,
    }
}

impl<F: Future<Output = ()>> Future for SendDeadline<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        LAST_BODY_POLL.set(None);
        if this.stream.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        match LAST_BODY_POLL.take() {
            // Each chunk means the one before it went out: a new wait starts now.
            Some(BodyPoll::Frame) => this.blocked.restart(),
            Some(BodyPoll::NoFrame) => {
                this.blocked.stop();
            }
            // The body was not polled (waiting for the response head, or still for capacity).
            None => {}
        }
        if this.blocked.poll_expired(*this.timeout, cx).is_ready() {
            tracing::debug!(
                "HTTP/2 stream reset: its client kept the window shut for send_timeout"
            );
            if let Some(metrics) = this.metrics.take() {
                metrics.client_timeouts.with_label_values(&["send"]).inc();
                metrics
                    .http2_resets
                    .with_label_values(&["send_timeout"])
                    .inc();
            }
            // Completing drops the stream: h2 resets it and the upstream body goes.
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The largest piece of a response body handed to h2 at once (its default frame size). h2
/// takes a whole chunk into its send buffer and only asks for more once that buffer drains,
/// so the pieces bound the progress the deadline cannot see: a stream is reset only when its
/// client has taken less than about this much of it in `send_timeout`.
const H2_PIECE: usize = 16 * 1024;

pin_project_lite::pin_project! {
    /// The response body as hyper sees it: notes what each poll gave, for [`StreamExecutor`],
    /// and on HTTP/2 hands chunks over in pieces of at most `H2_PIECE`.
    pub struct WatchedBody {
        #[pin]
        inner: ResponseBody,
        h2: bool,
        // What is left of a chunk being handed over in pieces.
        rest: Option<Bytes>,
        // HTTP/1: dropped with the body, it tells the connection's error-head rewriter that
        // the response is complete (listener/response_gate.rs).
        end: Option<crate::listener::response_gate::ResponseEnd>,
    }
}

impl WatchedBody {
    pub fn new(inner: ResponseBody, h2: bool) -> Self {
        WatchedBody {
            inner,
            h2,
            rest: None,
            end: None,
        }
    }

    /// HTTP/1: `end` is dropped with this body.
    pub fn with_end(mut self, end: Option<crate::listener::response_gate::ResponseEnd>) -> Self {
        self.end = end;
        self
    }
}

/// The next piece of `chunk`; what remains goes back to `rest`.
fn next_piece(mut chunk: Bytes, rest: &mut Option<Bytes>) -> Bytes {
    if chunk.len() > H2_PIECE {
        let piece = chunk.split_to(H2_PIECE);
        *rest = Some(chunk);
        piece
    } else {
        chunk
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = match this.rest.take() {
            Some(rest) => Poll::Ready(Some(Ok(Frame::data(next_piece(rest, this.rest))))),
            None => match this.inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if *this.h2 => match frame.into_data() {
                    Ok(chunk) => Poll::Ready(Some(Ok(Frame::data(next_piece(chunk, this.rest))))),
                    Err(frame) => Poll::Ready(Some(Ok(frame))),
                },
                polled => polled,
            },
        };
        // Only HTTP/2 stream tasks read it (HTTP/1 stalls block the socket, seen in `io.rs`).
        if *this.h2 {
            let noted = match polled {
                Poll::Ready(Some(Ok(_))) => BodyPoll::Frame,
                _ => BodyPoll::NoFrame,
            };
            LAST_BODY_POLL.set(Some(noted));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        let Some(rest) = &self.rest else {
            return hint;
        };
        let rest = rest.len() as u64;
        let mut with_rest = SizeHint::new();
        with_rest.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            with_rest.set_upper(upper.saturating_add(rest));
        }
        with_rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http2_chunks_are_handed_over_in_pieces() {
        use http_body_util::BodyExt;
        let chunk = Bytes::from(vec![7u8; 2 * H2_PIECE + 10]);
        let mut body = WatchedBody::new(ResponseBody::full(chunk.clone()), true);
        assert_eq!(body.size_hint().exact(), Some(chunk.len() as u64));
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            let left = (chunk.len() - sizes.iter().sum::<usize>()) as u64;
            assert_eq!(body.size_hint().exact(), Some(left));
            assert_eq!(body.is_end_stream(), left == 0);
        }
        assert_eq!(sizes, [H2_PIECE, H2_PIECE, 10]);

        let mut body = WatchedBody::new(ResponseBody::full(chunk.clone()), false);
        let whole = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(whole.len(), chunk.len(), "HTTP/1.1 bodies pass whole");
    }
}
