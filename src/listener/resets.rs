//! Rapid reset beyond what h2 catches (CVE-2023-44487, paced): a client that opens streams,
//! waits until the proxy has started on them (and maybe sent them upstream), then resets them,
//! and again. h2 only counts resets of streams not yet accepted; this counts, per connection,
//! the requests whose response the client cancelled within a second, before it was ready
//! (hyper drops the request's future on RST_STREAM), and trips once they are many and most of
//! the traffic, as Envoy's premature-reset check does. The connection is then closed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Cancelled requests tolerated on one connection before the ratio is looked at: browsers
/// cancel requests on navigation and typeahead, a few dozen at a time.
pub const MIN_PREMATURE_RESETS: usize = 100;

/// A request cancelled later than this after it arrived is a client giving up on a slow
/// answer, not a reset meant to make the proxy work for nothing (Envoy uses the same second).
pub const PREMATURE: Duration = Duration::from_secs(1);

/// Requests and cancelled requests of one connection.
#[derive(Debug, Default)]
pub struct PrematureResets {
    started: AtomicUsize,
    cancelled: AtomicUsize,
    tripped: AtomicBool,
    notify: Notify,
}

impl PrematureResets {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a request; the returned watch must be marked answered when its response is ready.
    pub fn begin(self: &Arc<Self>) -> RequestWatch {
        self.started.fetch_add(1, Ordering::Relaxed);
        RequestWatch {
            resets: self.clone(),
            started: Instant::now(),
            answered: false,
        }
    }

    /// Resolves once the connection cancelled at least [`MIN_PREMATURE_RESETS`] requests and
    /// they are at least half of its requests.
    pub async fn tripped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.tripped.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn cancelled_one(&self) {
        let cancelled = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        let started = self.started.load(Ordering::Relaxed);
        if cancelled >= MIN_PREMATURE_RESETS
            && cancelled.saturating_mul(2) >= started
            && !self.tripped.swap(true, Ordering::AcqRel)
        {
            self.notify.notify_waiters();
        }
    }
}

/// One request in progress; dropped unanswered within [`PREMATURE`], it counts as cancelled
/// by the client.
#[derive(Debug)]
pub struct RequestWatch {
    resets: Arc<PrematureResets>,
    started: Instant,
    answered: bool,
}

impl RequestWatch {
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        if !self.answered && self.started.elapsed() < PREMATURE {
            self.resets.cancelled_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn is_tripped(resets: &PrematureResets) -> bool {
        tokio::time::timeout(Duration::from_millis(10), resets.tripped())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn trips_on_many_cancellations_that_are_half_the_requests() {
        let resets = PrematureResets::new();
        for _ in 0..MIN_PREMATURE_RESETS - 1 {
            drop(resets.begin());
        }
        assert!(!is_tripped(&resets).await);
        drop(resets.begin());
        assert!(is_tripped(&resets).await);
    }

    #[tokio::test]
    async fn cancellations_after_a_second_are_not_premature() {
        let resets = PrematureResets::new();
        let watches: Vec<_> = (0..2 * MIN_PREMATURE_RESETS)
            .map(|_| resets.begin())
            .collect();
        std::thread::sleep(PREMATURE);
        drop(watches);
        assert!(!is_tripped(&resets).await);
    }

    #[tokio::test]
    async fn answered_requests_keep_a_busy_connection_open() {
        let resets = PrematureResets::new();
        // 150 cancellations among 400 requests: a client that cancels a lot, not an attack.
        for i in 0..400 {
            let watch = resets.begin();
            if i % 8 < 3 {
                drop(watch);
            } else {
                watch.answered();
            }
        }
        assert!(!is_tripped(&resets).await);
    }
}
