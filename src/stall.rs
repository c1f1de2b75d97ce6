//! A deadline on a wait for the client, cheap enough for every chunk of a body: the clock is
//! read only when a wait starts, and the timer is created at the first wait and then moved
//! only when it fires. Request bodies (`client.body_timeout`, `body.rs`) and HTTP/2 streams
//! with a shut window (`client.send_timeout`, `listener/stalled_streams.rs`) use it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

#[derive(Debug, Default)]
pub struct StallClock {
    /// When the current wait started; `None` while there is progress.
    since: Option<Instant>,
    // Boxed: both users need to stay `Unpin`.
    timer: Option<Pin<Box<Sleep>>>,
}

impl StallClock {
    /// A wait starts now (replacing any earlier one).
    pub fn restart(&mut self) {
        self.since = Some(Instant::now());
    }

    /// A wait starts now unless one is already running; true when this call started it.
    pub fn start(&mut self) -> bool {
        let starting = self.since.is_none();
        if starting {
            self.restart();
        }
        starting
    }

    /// Progress: no wait is running. True when one was.
    pub fn stop(&mut self) -> bool {
        self.since.take().is_some()
    }

    /// `Ready` once the running wait has lasted `timeout`; `Pending` (with a wake-up
    /// registered) before, or when no wait is running.
    pub fn poll_expired(&mut self, timeout: Duration, cx: &mut Context<'_>) -> Poll<()> {
        let Some(since) = self.since else {
            return Poll::Pending;
        };
        let deadline = since + timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // An earlier wait's deadline fires early, once: then the timer moves to this one.
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn expires_within(clock: &mut StallClock, timeout: Duration, limit: Duration) -> bool {
        let wait = std::future::poll_fn(|cx| clock.poll_expired(timeout, cx));
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_wait_it_measures_and_not_without_one() {
        let timeout = Duration::from_secs(30);
        let mut clock = StallClock::default();
        assert!(!expires_within(&mut clock, timeout, Duration::from_secs(60)).await);

        assert!(clock.start());
        assert!(!clock.start(), "a running wait is kept");
        assert!(!expires_within(&mut clock, timeout, Duration::from_secs(29)).await);
        // Progress at 29 s: a new wait gets its full timeout, though the timer was set earlier.
        assert!(clock.stop());
        clock.restart();
        assert!(!expires_within(&mut clock, timeout, Duration::from_secs(29)).await);
        assert!(expires_within(&mut clock, timeout, Duration::from_secs(2)).await);
    }
}
