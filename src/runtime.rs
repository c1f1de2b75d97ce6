//! One worker per core: each https worker is an OS thread with a current-thread tokio runtime
//! and a listener of its own on the shared address (SO_REUSEPORT). A connection, the tasks of
//! its HTTP/2 streams and the upstream connections its requests use (`upstream::pool`'s
//! per-worker pools) all stay on that thread, as in nginx's event loop per worker process:
//! no task is stolen by, and no wake-up crosses to, the other core.
//!
//! What the workers share is shared through `Arc`s: the snapshot (`Shared`), the metrics, the
//! connection caps and the rate limiter's store. The control plane (signals, the plain-http
//! and admin listeners, health checks, the config watch) runs on the caller's runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::listener::limit::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::Shared;

/// How often a worker closes its expired idle upstream connections.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The kernel's accept queue per worker listener (tokio's `TcpListener::bind` uses the same).
const BACKLOG: u32 = 1024;

/// A listening socket on `addr` with SO_REUSEPORT (and SO_REUSEADDR, as `TcpListener::bind`
/// sets), not yet tied to a runtime: each worker registers its own.
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// What one https worker serves.
pub struct Worker {
    pub index: usize,
    pub listener: std::net::TcpListener,
    pub shared: Shared,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<ConnectionLimiter>,
    pub shutdown: watch::Receiver<bool>,
}

/// A running worker: its runtime (for its task count) and the signal that it has drained.
pub struct WorkerHandle {
    runtime: tokio::runtime::Handle,
    finished: oneshot::Receiver<()>,
}

impl Worker {
    /// Starts the worker's thread; returns once its runtime is up.
    pub fn spawn(self) -> std::io::Result<WorkerHandle> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("rampart-b{}", self.index))
            .build()?;
        let handle = runtime.handle().clone();
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("rampart-w{}", self.index))
            .spawn(move || {
                runtime.block_on(async move {
                    // Idle upstream connections past `keepalive_timeout` are closed even while
                    // the worker has no traffic (the task ends with the runtime).
                    tokio::spawn(async {
                        let mut every = tokio::time::interval(SWEEP_INTERVAL);
                        loop {
                            every.tick().await;
                            crate::upstream::conn::sweep_idle();
                        }
                    });
                    match TcpListener::from_std(self.listener) {
                        Ok(listener) => {
                            crate::listener::https::run(
                                listener,
                                self.shared,
                                self.metrics,
                                self.limiter,
                                self.shutdown,
                            )
                            .await
                        }
                        Err(err) => tracing::error!(
                            worker = self.index,
                            error = %err,
                            "https worker cannot use its listener"
                        ),
                    }
                });
                // Tasks still running (upstream connections in their pools) end with the
                // runtime, here, on the worker's own thread.
                drop(runtime);
                let _ = done.send(());
            })?;
        Ok(WorkerHandle {
            runtime: handle,
            finished,
        })
    }
}

impl WorkerHandle {
    /// Waits until the worker has drained its connections and stopped.
    pub async fn finished(self) {
        let _ = self.finished.await;
    }

    pub fn alive_tasks(&self) -> usize {
        self.runtime.metrics().num_alive_tasks()
    }
}
