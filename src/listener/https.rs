//! The https listener: accept → TLS handshake (bounded) → hyper HTTP/1.1 or HTTP/2 by ALPN.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::listener::io::{IdleIo, InFlight, ParseErrorHeads};
use crate::metrics::Metrics;
use crate::proxy::{self, Connection};
use crate::snapshot::ClientLimits;
use crate::Shared;

/// hyper's HTTP/1 read buffer: a hard cap on a request head, above `max_header_bytes` so that our
/// own check (which answers 431 with the security headers) sees everything below it.
fn h1_buffer_size(limits: &ClientLimits) -> usize {
    (limits.max_header_bytes.saturating_mul(2)).clamp(8192, 1 << 20)
}

fn connection_builder(limits: &ClientLimits, h2: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: a request head must arrive within header_timeout. hyper also starts this
        // timer while a keep-alive connection waits for its next request.
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(h1_buffer_size(limits));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(128)
        // Dead peers are found by PING instead of holding streams forever.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    // ALPN already told us the protocol: no need to sniff for the HTTP/2 preface.
    if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    }
}

pub async fn run(
    listener: TcpListener,
    shared: Shared,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    while let Some((tcp, peer)) = super::next_connection(&listener, &mut shutdown).await {
        let snapshot = shared.load_full();
        let acceptor = TlsAcceptor::from(snapshot.tls.server_config.clone());
        let limits = snapshot.client.clone();
        drop(snapshot);
        let shared = shared.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        let open = metrics.connection_opened("https");
        tokio::spawn(async move {
            let _open = open;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    metrics
                        .tls_handshake_failures
                        .with_label_values(&["error"])
                        .inc();
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics
                        .tls_handshake_failures
                        .with_label_values(&["timeout"])
                        .inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let sni = session.server_name().map(str::to_owned);
            let h2 = session.alpn_protocol() == Some(b"h2");
            let in_flight = Arc::new(InFlight::default());
            let connection = Arc::new(Connection {
                peer,
                sni,
                in_flight: in_flight.clone(),
                metrics,
            });
            let io = IdleIo::new(tls, limits.idle_timeout, in_flight);
            let builder = connection_builder(&limits, h2);
            let service_shared = shared.clone();
            let service = service_fn(move |request| {
                proxy::serve(request, connection.clone(), service_shared.clone())
            });
            let result = if h2 {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                watcher.watch(conn.into_owned()).await
            } else {
                let io = TokioIo::new(ParseErrorHeads::new(io, shared));
                let conn = builder.serve_connection_with_upgrades(io, service);
                watcher.watch(conn.into_owned()).await
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drain(graceful, &shared).await;
}

/// Stops accepting (done by the caller), asks every connection to finish (HTTP/2 GOAWAY,
/// HTTP/1 close after the current response) and waits up to `shutdown_grace`.
pub(crate) async fn drain(graceful: GracefulShutdown, shared: &Shared) {
    let grace = shared.load().listen.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace elapsed with requests still in flight"
        );
    }
}
