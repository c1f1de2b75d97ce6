//! Graceful shutdown of a listener's connections: on SIGTERM every connection is asked to finish
//! (HTTP/1: after its response in flight; HTTP/2: GOAWAY) and the listener waits, within
//! `shutdown_grace`, until they have.
//!
//! This does what hyper-util's `GracefulShutdown` does, at a lower price per request: its
//! watcher polls a `watch` channel every time the connection's task is polled (the channel's
//! lock and tokio's cooperative budget: about 500 instructions per HTTP/1.1 request under
//! callgrind). Here a connection registers its task's waker once, and each poll after that reads
//! one atomic flag.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;

/// A connection that can be asked to finish.
pub trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C: GracefulConnection> Graceful for C {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

/// One listener's connections, told to finish when [`Drain::shutdown`] is called.
#[derive(Debug, Default)]
pub struct Drain {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set once, under `waiting`'s lock, by `shutdown`.
    draining: AtomicBool,
    waiting: Mutex<Waiting>,
    /// Told when the last watcher is dropped while draining.
    all_done: Notify,
}

#[derive(Debug, Default)]
struct Waiting {
    next_id: u64,
    /// Watchers alive (accepted connections, whether they reached `watch` yet or not).
    live: usize,
    /// The task of each watched connection, to wake when draining starts.
    wakers: HashMap<u64, Waker>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing here can leave the list half-changed: a poisoned lock is still usable.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drain {
    pub fn new() -> Self {
        Drain::default()
    }

    /// Taken when a connection is accepted: [`shutdown`](Self::shutdown) waits for it (from the
    /// TLS handshake on) until it is dropped.
    pub fn watcher(&self) -> Watcher {
        let id = {
            let mut waiting = self.state.lock();
            waiting.live += 1;
            waiting.next_id += 1;
            waiting.next_id
        };
        Watcher {
            state: self.state.clone(),
            id,
        }
    }

    /// Asks every watched connection to finish, then waits until every watcher is gone.
    pub async fn shutdown(self) {
        let wakers: Vec<Waker> = {
            let mut waiting = self.state.lock();
            self.state.draining.store(true, Ordering::Release);
            waiting.wakers.drain().map(|(_, waker)| waker).collect()
        };
        for waker in wakers {
            waker.wake();
        }
        loop {
            let done = self.state.all_done.notified();
            tokio::pin!(done);
            // Registered before the count is read, so a last drop in between is not missed.
            done.as_mut().enable();
            if self.state.lock().live == 0 {
                return;
            }
            done.await;
        }
    }
}

/// A connection's place in its listener's [`Drain`].
#[derive(Debug)]
pub struct Watcher {
    state: Arc<State>,
    id: u64,
}

impl Watcher {
    /// `conn`, asked to finish when draining starts (at once if it already has).
    pub fn watch<C: Graceful>(self, conn: C) -> Watched<C> {
        Watched {
            conn,
            watcher: self,
            registered: None,
            asked: false,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let last = {
            let mut waiting = self.state.lock();
            waiting.wakers.remove(&self.id);
            waiting.live -= 1;
            waiting.live == 0
        };
        if last && self.state.draining.load(Ordering::Acquire) {
            self.state.all_done.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// A watched connection: the connection's own future, asked to finish when draining starts.
    pub struct Watched<C> {
        #[pin]
        conn: C,
        watcher: Watcher,
        // The waker registered with the drain (a task's waker stays the same from poll to poll,
        // so this is registered once).
        registered: Option<Waker>,
        // `graceful_shutdown` was called.
        asked: bool,
    }
}

impl<C: Graceful> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.asked {
            let state = &this.watcher.state;
            let mut draining = state.draining.load(Ordering::Acquire);
            if !draining
                && !this
                    .registered
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                // Under the lock `shutdown` sets the flag under: either the flag is seen here,
                // or the waker is in the list `shutdown` takes.
                let mut waiting = state.lock();
                draining = state.draining.load(Ordering::Acquire);
                if !draining {
                    waiting.wakers.insert(this.watcher.id, cx.waker().clone());
                    *this.registered = Some(cx.waker().clone());
                }
            }
            if draining {
                *this.asked = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection that finishes `linger` after it was asked to, and counts the asks.
    struct FakeConn {
        asked_at: Option<tokio::time::Instant>,
        asks: Arc<std::sync::atomic::AtomicUsize>,
        linger: Duration,
        sleep: Pin<Box<tokio::time::Sleep>>,
    }

    impl FakeConn {
        fn new(linger: Duration) -> (Self, Arc<std::sync::atomic::AtomicUsize>) {
            let asks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let conn = FakeConn {
                asked_at: None,
                asks: asks.clone(),
                linger,
                sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            };
            (conn, asks)
        }
    }

    impl Future for FakeConn {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.sleep.as_mut().poll(cx)
        }
    }

    impl Graceful for FakeConn {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.asks.fetch_add(1, Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            self.asked_at = Some(now);
            let linger = self.linger;
            self.sleep.as_mut().reset(now + linger);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_every_connection_once_and_waits_for_them() {
        let drain = Drain::new();
        let mut tasks = Vec::new();
        let mut counters = Vec::new();
        for linger in [10, 200, 50] {
            let (conn, asks) = FakeConn::new(Duration::from_millis(linger));
            counters.push(asks);
            tasks.push(tokio::spawn(drain.watcher().watch(conn)));
        }
        // Each connection task polled a few times before the drain (woken by nothing else).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = tokio::time::Instant::now();
        drain.shutdown().await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(200),
            "waits for the slowest"
        );
        for task in tasks {
            assert!(task.is_finished());
        }
        for asks in counters {
            assert_eq!(asks.load(Ordering::Relaxed), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_watched_after_the_drain_began_is_asked_at_once() {
        let drain = Drain::new();
        // Accepted before the drain (its handshake still running), watched after it.
        let watcher = drain.watcher();
        let shutdown = tokio::spawn(drain.shutdown());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!shutdown.is_finished(), "waits for the accepted connection");
        let (conn, asks) = FakeConn::new(Duration::from_millis(30));
        watcher.watch(conn).await;
        assert_eq!(asks.load(Ordering::Relaxed), 1);
        tokio::time::timeout(Duration::from_millis(10), shutdown)
            .await
            .expect("shutdown returns once the last watcher is gone")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_no_connections_returns_at_once() {
        let drain = Drain::new();
        drop(drain.watcher());
        tokio::time::timeout(Duration::from_millis(1), drain.shutdown())
            .await
            .expect("nothing to wait for");
    }
}
