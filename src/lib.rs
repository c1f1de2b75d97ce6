//! rampart: a security-hardening, TLS-terminating reverse proxy.
//!
//! The modules follow a request: `listener` (accept, TLS, hyper) → `proxy` (the pipeline, in
//! order) → `path` + `router` (which route) → `policy` (IP rules, security headers) →
//! `upstream` (pools, forwarding) or `actions` (redirect, respond) → `errors` (the proxy's own
//! responses). `config` turns the TOML file into the immutable [`Snapshot`] everything reads.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod acme;
pub(crate) mod actions;
pub mod admin;
pub(crate) mod body;
pub mod certgen;
pub(crate) mod client_ip;
pub mod compress;
pub mod config;
pub mod copy_tuning;
pub(crate) mod csp_report;
pub mod encoding;
pub(crate) mod error_chain;
pub(crate) mod errors;
pub(crate) mod header_names;
pub mod listener;
pub(crate) mod metrics;
pub(crate) mod path;
pub mod policy;
pub mod proxy;
pub(crate) mod reload;
pub(crate) mod request_body;
pub(crate) mod request_checks;
pub mod request_id;
pub mod router;
pub mod runtime;
pub(crate) mod snapshot;
pub(crate) mod stall;
pub(crate) mod static_files;
pub mod upstream;

/// The fuzz targets' entry points (`fuzz/fuzz_targets/`), built only by cargo-fuzz, which sets
/// `--cfg fuzzing`. Each oracle lives beside the stage it checks, in that stage's `fuzz` module;
/// the unit test in `fuzz_corpus.rs` replays the committed corpora through the same functions.
#[cfg(fuzzing)]
pub mod fuzzing {
    pub use crate::actions::fuzz::redirect;
    pub use crate::config::fuzz::config;
    pub use crate::listener::fuzz::{error_heads, h1_framing, proxy_header};
    pub use crate::path::fuzz::path;
    pub use crate::policy::fuzz::auth_csp;
    pub use crate::upstream::fuzz::headers;
}
#[cfg(test)]
mod fuzz_corpus;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use metrics::Metrics;
pub use reload::Reloader;
pub use snapshot::Snapshot;

/// The running configuration, swapped whole on reload.
pub type Shared = Arc<ArcSwap<Snapshot>>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start an https worker thread: {source}")]
    Worker { source: std::io::Error },
    #[error("acme.storage: {0}")]
    AcmeStorage(#[from] acme::storage::StorageError),
}

/// Starts rampart's listeners for a snapshot.
pub struct Server;

impl Server {
    /// Binds the listeners (port 0 picks a free port: see [`ServerHandle::https_addr`]) and
    /// serves until [`ServerHandle::shutdown`].
    pub async fn start(mut snapshot: Snapshot) -> Result<ServerHandle, StartError> {
        for warning in &snapshot.warnings {
            tracing::warn!("{warning}");
        }
        // One listener per worker on the same address (SO_REUSEPORT): the kernel spreads the
        // connections, and each lives and dies on one worker thread.
        let workers = snapshot.listen.workers.max(1);
        let https = bind_workers(snapshot.listen.https, workers)?;
        let http = match snapshot.listen.http {
            Some(addr) => Some(bind(addr, "listen.http").await?),
            None => None,
        };
        let admin = match snapshot.listen.admin {
            Some(addr) => Some(bind(addr, "listen.admin").await?),
            None => None,
        };
        let https_addr = https
            .first()
            .and_then(|listener| listener.local_addr().ok())
            .unwrap_or(snapshot.listen.https);
        let http_addr = http
            .as_ref()
            .zip(snapshot.listen.http)
            .map(|(l, configured)| local_addr(l, configured));
        let admin_addr = admin
            .as_ref()
            .zip(snapshot.listen.admin)
            .map(|(l, configured)| local_addr(l, configured));

        // `https_port_public` 0 (`rampart proxy --https 127.0.0.1:0`; a config file cannot say
        // it): redirects name the port the https listener got.
        if snapshot.listen.https_port_public == 0 {
            snapshot.listen.https_port_public = https_addr.port();
        }
        let bound = Arc::new(snapshot.listen.clone());
        // Like the metrics, ACME certificates and challenges outlive reloads.
        let acme_registry = acme::Registry::new();
        snapshot.tls.attach_acme(&acme_registry);
        let acme_settings = snapshot.acme.clone();
        let acme_certificates = snapshot.tls.acme_certificates.clone();
        let shared: Shared = Arc::new(ArcSwap::from_pointee(snapshot));
        // Metrics outlive reloads: they belong to the server, not to a snapshot.
        let metrics = Arc::new(Metrics::new());
        upstream::health::spawn(&shared.load().upstreams, None, &metrics);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // `[ban] store = "redis"`: the local copy of the shared ban list, refreshed in the
        // background (the request path never asks Redis).
        shared.load().bans.jail.start_sync(shutdown_rx.clone());
        if let Some(settings) = acme_settings {
            // Stored certificates are installed by the tasks before they talk to the CA.
            acme::Manager::spawn(
                settings,
                &acme_certificates,
                &acme_registry,
                &metrics,
                &shutdown_rx,
            )?;
        }
        // One count for both public listeners: the caps are per client, whichever port it uses.
        let limiter = listener::limit::ConnectionLimiter::new();
        let mut worker_handles = Vec::with_capacity(https.len());
        for (index, listener) in https.into_iter().enumerate() {
            let worker = runtime::Worker {
                index,
                listener,
                shared: shared.clone(),
                metrics: metrics.clone(),
                limiter: limiter.clone(),
                shutdown: shutdown_rx.clone(),
            };
            worker_handles.push(
                worker
                    .spawn()
                    .map_err(|source| StartError::Worker { source })?,
            );
        }
        let mut tasks = Vec::new();
        if let Some(http) = http {
            tasks.push(tokio::spawn(listener::http::run(
                http,
                shared.clone(),
                metrics.clone(),
                limiter,
                shutdown_rx.clone(),
            )));
        }
        if let Some(admin) = admin {
            tasks.push(tokio::spawn(admin::run(
                admin,
                shared.clone(),
                metrics.clone(),
                shutdown_rx,
            )));
        }
        let reloader = Reloader::new(
            shared.clone(),
            metrics.clone(),
            bound.clone(),
            acme_registry.clone(),
        );
        reloader.record_certificates(&shared.load());
        metrics.config_last_reload_success.set(reload::unix_now());
        tracing::info!(
            https = %https_addr,
            http = %OrOff(http_addr),
            admin = %OrOff(admin_addr),
            "rampart is serving"
        );
        Ok(ServerHandle {
            https_addr,
            http_addr,
            admin_addr,
            shared,
            metrics,
            bound,
            acme_registry,
            shutdown_tx,
            tasks,
            workers: worker_handles,
        })
    }
}

/// A listener's address for the start-up line: `127.0.0.1:8080`, or `off` when there is none.
struct OrOff(Option<SocketAddr>);

impl std::fmt::Display for OrOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// `workers` listeners on `addr`, each with SO_REUSEPORT; port 0 picks one free port for all.
fn bind_workers(
    addr: SocketAddr,
    workers: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    let key = "listen.https";
    let mut listeners = Vec::with_capacity(workers);
    let mut bound = addr;
    for _ in 0..workers {
        let listener = runtime::reuseport_listener(bound).map_err(|source| StartError::Bind {
            addr: bound,
            key,
            source,
        })?;
        if bound.port() == 0 {
            bound = listener.local_addr().map_err(|source| StartError::Bind {
                addr: bound,
                key,
                source,
            })?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, key, source })
}

fn local_addr(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}

/// A running server.
pub struct ServerHandle {
    https_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shared: Shared,
    metrics: Arc<Metrics>,
    /// The listen addresses the sockets were bound for.
    bound: Arc<snapshot::Listen>,
    acme_registry: Arc<acme::Registry>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<runtime::WorkerHandle>,
}

impl ServerHandle {
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The admin listener's address (`/metrics`, `/healthz`, `/readyz`), when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The server's metrics (what the admin listener's `/metrics` shows).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The snapshot requests are served with right now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.load_full()
    }

    /// Swaps in a new snapshot: requests that start after this see it, requests in flight
    /// finish with the one they started with. Listen addresses are not re-bound.
    pub fn reload(&self, snapshot: Snapshot) {
        self.reloader().apply(snapshot);
    }

    /// What the config watcher and SIGHUP use to reload this server.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(
            self.shared.clone(),
            self.metrics.clone(),
            self.bound.clone(),
            self.acme_registry.clone(),
        )
    }

    /// Stops accepting, lets in-flight requests finish within `listen.shutdown_grace`, returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for worker in self.workers {
            worker.finished().await;
        }
    }

    /// Tasks alive on the https workers' runtimes (connections, streams, upstream connections):
    /// what a leak would grow.
    pub fn worker_tasks(&self) -> usize {
        self.workers
            .iter()
            .map(runtime::WorkerHandle::alive_tasks)
            .sum()
    }
}
