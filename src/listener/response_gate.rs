//! HTTP/1: which bytes written on a connection belong to a response of the service. The
//! refused-head rewriter (`error_heads.rs`) touches only bytes that cannot, and the head
//! deadline (`io.rs`) runs only while no response is on its way out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// HTTP/1: whether the bytes written now can belong to a response of the service.
///
/// hyper writes its own bare error head (a `400` for a head it cannot parse) only for a request
/// the service never saw, and only while no response of the service is being written. So a
/// write may be taken for hyper's error head only while this gate is closed: from the service
/// call until the flush that follows the end of its response body, everything written is the
/// service's response (an app's body may hold any bytes, hyper's error head among them), and
/// after a `101` everything is a tunnel's.
#[derive(Debug, Default)]
pub struct ResponseGate {
    /// A response of the service is on its way out.
    open: AtomicBool,
    /// Its body has ended (or was dropped): the next completed flush has written all of it.
    body_done: AtomicBool,
    /// The connection was upgraded: its bytes are a tunnel's for good.
    tunnel: AtomicBool,
}

impl ResponseGate {
    /// The service was called: its response, when it comes, owns the written bytes. The
    /// returned guard goes with the response body; dropping it marks the body's end.
    pub fn response_begins(self: &Arc<Self>) -> ResponseEnd {
        self.body_done.store(false, Ordering::Relaxed);
        self.open.store(true, Ordering::Release);
        ResponseEnd(self.clone())
    }

    /// hyper flushes only once its whole write buffer is out: after the body's end, the
    /// response is then complete on the wire.
    pub(super) fn flushed(&self) {
        if self.body_done.swap(false, Ordering::AcqRel) {
            self.open.store(false, Ordering::Release);
        }
    }

    pub(super) fn may_be_hyper_error(&self) -> bool {
        self.awaits_head()
    }

    /// No response is open and the connection is no tunnel: it waits for (or reads) a head.
    pub fn awaits_head(&self) -> bool {
        !self.open.load(Ordering::Acquire) && !self.tunnel.load(Ordering::Acquire)
    }
}

/// Held by a response body (HTTP/1): dropped when hyper is done with the body.
#[derive(Debug)]
pub struct ResponseEnd(Arc<ResponseGate>);

impl ResponseEnd {
    /// A `101` went out: nothing written on this connection is hyper's error head any more.
    pub fn upgraded(&self) {
        self.0.tunnel.store(true, Ordering::Release);
    }
}

impl Drop for ResponseEnd {
    fn drop(&mut self) {
        self.0.body_done.store(true, Ordering::Release);
    }
}
