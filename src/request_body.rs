//! The client's request body on its way upstream: counted against the body limit, watched for
//! stalls, and dropped when the exchange gives up on it; and the errors that carry those
//! outcomes through hyper's error chain. Never collected whole.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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

pin_project_lite::pin_project! {
    /// A client's request body on its way upstream, counted against `client.max_body` and
    /// watched for stalls (`client.body_timeout`). Crossing the limit, or the client sending
    /// nothing for `body_timeout`, yields an error, so hyper aborts the upstream request instead
    /// of finishing it: the upstream never sees a truncated body that looks complete.
    pub struct RequestBody {
        // Shared with the exchange that forwards it, which drops the client's body when it
        // gives up (see [`AbandonBody`]). `None`: no body.
        inner: Option<Arc<Mutex<Option<Incoming>>>>,
        // The client's body ended: its `Incoming` is let go (see `AbandonBody::unfinished`).
        finished: bool,
        seen: u64,
        limit: u64,
        stall_timeout: Duration,
        // Runs while the body waits for the client: a body that never waits never reads the
        // clock nor touches the timer wheel.
        stall: StallClock,
        waiting: Option<ClientWait>,
    }
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, stall_timeout: Duration) -> Self {
        RequestBody {
            inner: Some(Arc::new(Mutex::new(Some(inner)))),
            finished: false,
            seen: 0,
            limit,
            stall_timeout,
            stall: StallClock::default(),
            waiting: Some(ClientWait::default()),
        }
    }

    /// No body at all (retries of bodiless requests, WebSocket handshakes).
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            finished: true,
            seen: 0,
            limit: 0,
            stall_timeout: Duration::ZERO,
            stall: StallClock::default(),
            waiting: None,
        }
    }

    /// What lets the exchange drop the client's body while the upstream connection still holds
    /// this one. `None` for an empty body.
    pub fn abandon_handle(&self) -> Option<AbandonBody> {
        self.inner.clone().map(AbandonBody)
    }

    /// Tells, once the upstream exchange has run out of time, whether the client was the one
    /// being waited for. `None` for an empty body.
    pub fn client_wait(&self) -> Option<ClientWait> {
        self.waiting.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(slot) = this.inner.as_ref() else {
            return Poll::Ready(None);
        };
        if *this.finished {
            return Poll::Ready(None);
        }
        let mut slot = lock(slot);
        let Some(inner) = slot.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(BodyAbandoned))));
        };
        // Between reads, like nginx's `client_body_timeout`: the time hyper spends not asking
        // (the upstream not reading) is never counted against the client.
        let Poll::Ready(polled) = Pin::new(inner).poll_frame(cx) else {
            if this.stall.start() {
                if let Some(waiting) = this.waiting.as_ref() {
                    waiting.set(true);
                }
            }
            let timeout = *this.stall_timeout;
            return match this.stall.poll_expired(timeout, cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout { timeout })))),
                Poll::Pending => Poll::Pending,
            };
        };
        // Progress: no clock read, the stall clock just stops.
        if this.stall.stop() {
            if let Some(waiting) = this.waiting.as_ref() {
                waiting.set(false);
            }
        }
        match polled {
            // Trailers end a body: hyper writes the last chunk with them and may never ask again.
            Some(Ok(frame)) if frame.is_trailers() => {
                *this.finished = true;
                drop(slot.take());
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        let limit = *this.limit;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(Box::new(ClientBodyError(err))))),
            None => {
                // Read to its end: nothing is left to abandon, and `unfinished` says so.
                *this.finished = true;
                drop(slot.take());
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
            || self
                .inner
                .as_ref()
                .is_none_or(|slot| lock(slot).as_ref().is_none_or(Body::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            None => SizeHint::with_exact(0),
            Some(slot) => lock(slot)
                .as_ref()
                .map_or_else(SizeHint::default, Body::size_hint),
        }
    }
}

/// The slot is only ever held for one poll, by one task at a time: a poisoned lock still holds
/// a usable body.
fn lock(slot: &Mutex<Option<Incoming>>) -> std::sync::MutexGuard<'_, Option<Incoming>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drops the client's request body when the exchange forwarding it ends without a response
/// (an error, a timeout, a cancelled request). The upstream connection may still hold the
/// [`RequestBody`] (blocked writing to a server that stopped reading); dropping the client's
/// side tells hyper to stop reading the upload, so an error answered early closes the
/// connection instead of taking in the rest of the body.
#[derive(Debug)]
pub struct AbandonBody(Arc<Mutex<Option<Incoming>>>);

impl AbandonBody {
    /// The client is still sending the body (its end has not been read).
    pub fn unfinished(&self) -> bool {
        lock(&self.0)
            .as_ref()
            .is_some_and(|body| !body.is_end_stream())
    }

    pub fn abandon(&self) {
        let body = lock(&self.0).take();
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
#[derive(Debug, Clone, Default)]
pub struct ClientWait(Arc<AtomicBool>);

impl ClientWait {
    fn set(&self, waiting: bool) {
        self.0.store(waiting, Ordering::Relaxed);
    }

    pub fn is_waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed)
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
