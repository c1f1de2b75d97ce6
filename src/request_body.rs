//! The client's request body on its way upstream: counted against the body limit, watched for
//! stalls, and dropped when the exchange gives up on it; and the errors that carry those
//! outcomes through hyper's error chain. Never collected whole.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::stall::StallClock;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body limit was crossed while streaming a request body upstream.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// A client's request body on its way upstream, counted against `client.max_body` and watched
/// for stalls (`client.body_timeout`). Crossing the limit, or the client sending nothing for
/// `body_timeout`, yields an error, so hyper aborts the upstream request instead of finishing
/// it: the upstream never sees a truncated body that looks complete.
///
/// One pointer: its state lives behind the `Arc` it shares with the exchange (see
/// [`AbandonBody`]), and a bodiless request has none. hyper's client connection queues its
/// `Request<RequestBody>`s in a channel that allocates 32 slots at a time, one or two such blocks
/// per upstream connection, so every byte here costs 32 to 64 per connection (80 bytes made each
/// block 2.3 KiB larger: docs/performance.md, "Where the peak goes").
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: no body.
    state: Option<Arc<Mutex<BodyState>>>,
}

/// What a body with content keeps. Locked briefly, by the body's poll and by the exchange's
/// checks ([`AbandonBody`], [`ClientWait`]), never across an await.
#[derive(Debug)]
struct BodyState {
    /// The client's body. `None` once it ended or was abandoned: the exchange that forwards it
    /// drops it when it gives up (see [`AbandonBody`]).
    incoming: Option<Incoming>,
    /// The client's body ended: its `Incoming` was let go (see `AbandonBody::unfinished`).
    finished: bool,
    seen: u64,
    limit: u64,
    stall_timeout: Duration,
    /// Runs while the body waits for the client: a body that never waits never reads the clock
    /// nor touches the timer wheel.
    stall: StallClock,
    /// The stall clock is running: the client is being waited for (see [`ClientWait`]).
    waiting: bool,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, stall_timeout: Duration) -> Self {
        RequestBody {
            state: Some(Arc::new(Mutex::new(BodyState {
                incoming: Some(inner),
                finished: false,
                seen: 0,
                limit,
                stall_timeout,
                stall: StallClock::default(),
                waiting: false,
            }))),
        }
    }

    /// No body at all (retries of bodiless requests, WebSocket handshakes).
    pub fn empty() -> Self {
        RequestBody { state: None }
    }

    /// What lets the exchange drop the client's body while the upstream connection still holds
    /// this one. `None` for an empty body.
    pub fn abandon_handle(&self) -> Option<AbandonBody> {
        self.state.clone().map(AbandonBody)
    }

    /// Tells, once the upstream exchange has run out of time, whether the client was the one
    /// being waited for. `None` for an empty body.
    pub fn client_wait(&self) -> Option<ClientWait> {
        self.state.clone().map(ClientWait)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(state) = self.state.as_ref() else {
            return Poll::Ready(None);
        };
        let mut state = lock(state);
        let state = &mut *state;
        if state.finished {
            return Poll::Ready(None);
        }
        let Some(inner) = state.incoming.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(BodyAbandoned))));
        };
        // Between reads, like nginx's `client_body_timeout`: the time hyper spends not asking
        // (the upstream not reading) is never counted against the client.
        let Poll::Ready(polled) = Pin::new(inner).poll_frame(cx) else {
            if state.stall.start() {
                state.waiting = true;
            }
            let timeout = state.stall_timeout;
            return match state.stall.poll_expired(timeout, cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout { timeout })))),
                Poll::Pending => Poll::Pending,
            };
        };
        // Progress: no clock read, the stall clock just stops.
        if state.stall.stop() {
            state.waiting = false;
        }
        match polled {
            // Trailers end a body: hyper writes the last chunk with them and may never ask again.
            Some(Ok(frame)) if frame.is_trailers() => {
                state.finished = true;
                drop(state.incoming.take());
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    state.seen += data.len() as u64;
                    if state.seen > state.limit {
                        let limit = state.limit;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(Box::new(ClientBodyError(err))))),
            None => {
                // Read to its end: nothing is left to abandon, and `unfinished` says so.
                state.finished = true;
                drop(state.incoming.take());
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state.as_ref().is_none_or(|state| {
            let state = lock(state);
            state.finished || state.incoming.as_ref().is_none_or(Body::is_end_stream)
        })
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            None => SizeHint::with_exact(0),
            Some(state) => lock(state)
                .incoming
                .as_ref()
                .map_or_else(SizeHint::default, Body::size_hint),
        }
    }
}

/// The state is only ever locked for one poll, by one task at a time: a poisoned lock still
/// holds a usable body.
fn lock(state: &Mutex<BodyState>) -> std::sync::MutexGuard<'_, BodyState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drops the client's request body when the exchange forwarding it ends without a response
/// (an error, a timeout, a cancelled request). The upstream connection may still hold the
/// [`RequestBody`] (blocked writing to a server that stopped reading); dropping the client's
/// side tells hyper to stop reading the upload, so an error answered early closes the
/// connection instead of taking in the rest of the body.
#[derive(Debug)]
pub struct AbandonBody(Arc<Mutex<BodyState>>);

impl AbandonBody {
    /// The client is still sending the body (its end has not been read).
    pub fn unfinished(&self) -> bool {
        lock(&self.0)
            .incoming
            .as_ref()
            .is_some_and(|body| !body.is_end_stream())
    }

    pub fn abandon(&self) {
        let body = lock(&self.0).incoming.take();
        drop(body);
    }
}

/// The exchange gave up on the request body (see [`AbandonBody`]).
#[derive(Debug, thiserror::Error)]
#[error("request body abandoned")]
pub struct BodyAbandoned;

/// The client sent no body bytes for `client.body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes for {timeout:?}")]
pub struct BodyTimeout {
    pub timeout: Duration,
}

/// Whether a request body is waiting for its client right now (shared with the exchange that
/// forwards it): when `response_timeout` runs out during an upload, a client that was being
/// waited for gets 408, not an upstream 504.
#[derive(Debug, Clone)]
pub struct ClientWait(Arc<Mutex<BodyState>>);

impl ClientWait {
    pub fn is_waiting(&self) -> bool {
        lock(&self.0).waiting
    }
}

/// Reading the client's body failed (malformed chunks, a body shorter than its length, an
/// abort): the client's fault, not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(#[source] hyper::Error);

/// True when the error chain of a failed upstream exchange contains an `E`
/// ([`BodyTooLarge`], [`BodyTimeout`], [`ClientBodyError`]).
pub fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::error_chain::chain(err).any(|cause| cause.is::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's client connection queues its requests in blocks of 32 `Request<RequestBody>`
    /// slots, one or two blocks per upstream connection: every byte here counts 32 to 64 times
    /// per connection (docs/performance.md, "Where the peak goes").
    #[test]
    fn a_request_body_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<RequestBody>(),
            std::mem::size_of::<usize>()
        );
    }

    #[tokio::test]
    async fn an_empty_body_ends_at_once() {
        use http_body_util::BodyExt;
        let mut body = RequestBody::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.abandon_handle().is_none());
        assert!(body.client_wait().is_none());
        assert!(body.frame().await.is_none());
    }
}
