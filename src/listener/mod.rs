//! Listeners: accept → TLS → hyper (https), or the plain-HTTP redirector (http).

pub mod drain;
pub mod error_heads;
pub mod framing;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub mod http;
pub mod https;
pub mod io;
pub mod limit;
pub mod preface;
pub mod proxy_protocol;
pub mod resets;
pub mod response_gate;
pub mod stalled_streams;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The next connection of a listener, or `None` once shutdown is signalled. A failed accept (out
/// of descriptors, say) backs off instead of spinning.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

/// A banned client is closed at accept, before any TLS work (and counted in
/// `rampart_banned_refused_total{stage="accept"}`). `client`: the peer, or the source a PROXY
/// protocol header carried.
pub(crate) fn banned_at_accept(
    snapshot: &crate::Snapshot,
    client: IpAddr,
    metrics: &crate::Metrics,
) -> bool {
    if !snapshot.bans.refuses(client) {
        return false;
    }
    metrics.banned_refused.with_label_values(&["accept"]).inc();
    tracing::debug!(%client, "banned client closed at accept");
    true
}

/// Who a connection is from: the peer, or, for a peer in `listen.proxy_protocol_from`, the
/// client its PROXY protocol header names (read within `header_timeout`). `None`: the
/// connection is to be closed (no valid header in time, counted in
/// `rampart_proxy_protocol_refused_total`).
pub(crate) async fn client_of<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    from_balancer: bool,
    header_timeout: Duration,
    metrics: &crate::Metrics,
) -> Option<SocketAddr> {
    if !from_balancer {
        return Some(peer);
    }
    let refused = match tokio::time::timeout(header_timeout, proxy_protocol::read(stream)).await {
        Ok(Ok(proxy_protocol::Source::Client(client))) => return Some(client),
        Ok(Ok(proxy_protocol::Source::Local)) => return Some(peer),
        Ok(Err(refused)) => refused.label(),
        Err(_) => "timeout",
    };
    metrics
        .proxy_protocol_refused
        .with_label_values(&[refused])
        .inc();
    tracing::debug!(%peer, reason = refused, "connection closed: no valid PROXY protocol header");
    None
}

/// A load balancer's connection, counted against the client its header named
/// (`client.max_connections_per_ip`); `false`: over the cap, to be closed (counted in
/// `rampart_connections_refused_total`).
pub(crate) fn counted_against(
    permit: &mut limit::ConnectionPermit,
    client: SocketAddr,
    per_ip: usize,
    metrics: &crate::Metrics,
) -> bool {
    match permit.rekey(client.ip(), per_ip) {
        Ok(()) => true,
        Err(refused) => {
            metrics
                .connections_refused
                .with_label_values(&[refused.label()])
                .inc();
            tracing::debug!(%client, cap = refused.label(), "connection refused after its PROXY header");
            false
        }
    }
}
