//! The https listener: accept → TLS handshake (bounded) → hyper HTTP/1.1 or HTTP/2 by ALPN.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::client_ip::is_trusted;
use crate::listener::drain::Drain;
use crate::listener::error_heads::{ParseErrorHeads, RefusedHeads};
use crate::listener::framing::{Framing, FramingWatch};
use crate::listener::io::{Deadlines, IdleIo, InFlight};
use crate::listener::limit::ConnectionLimiter;
use crate::listener::preface::{self, Preface};
use crate::listener::proxy_protocol::{HeaderGuard, UnlistedHeader};
use crate::listener::resets::PrematureResets;
use crate::listener::response_gate::ResponseGate;
use crate::listener::stalled_streams::{StreamExecutor, WatchedBody};
use crate::metrics::Metrics;
use crate::proxy::{self, Connection};
use crate::snapshot::ClientLimits;
use crate::Shared;

/// hyper's HTTP/1 read buffer: a hard cap on a request head, above `max_header_bytes` so that our
/// own check (which answers 431 with the security headers) sees everything below it.
fn h1_buffer_size(limits: &ClientLimits) -> usize {
    (limits.max_header_bytes.saturating_mul(2)).clamp(8192, 1 << 20)
}

/// Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
/// more are refused with RST_STREAM(REFUSED_STREAM).
const MAX_CONCURRENT_STREAMS: u32 = 128;

fn connection_builder(
    limits: &ClientLimits,
    h2: bool,
    metrics: Option<Arc<Metrics>>,
) -> auto::Builder<StreamExecutor> {
    // HTTP/2 streams run as tasks of this executor, each under `send_timeout`.
    let mut builder = auto::Builder::new(StreamExecutor::new(limits.send_timeout, metrics));
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: a request head must arrive within header_timeout, from the end of the last
        // response. The connection's own timer keeps that deadline (`IdleIo::with_head_deadline`);
        // hyper's would cost a timer per request.
        .header_read_timeout(None)
        .max_buf_size(h1_buffer_size(limits));
    // HTTP/2 abuse bounds (tests/attack_h2.rs shows each one at work). The h2 crate also
    // answers CONTINUATION floods (GOAWAY after max_header_list_size / frame size + 25%
    // CONTINUATION frames, at least 5), floods of empty DATA frames (GOAWAY after 100) and of
    // SETTINGS/PING (one pending ACK or PONG at a time: it stops reading until it is written).
    builder
        .http2()
        .timer(TokioTimer::new())
        // Also bounds the HPACK-decoded size of a CONTINUATION chain.
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Rapid reset (CVE-2023-44487): streams the client resets before hyper accepted them
        // are not "concurrent"; more than this many pending at once is a GOAWAY.
        .max_pending_accept_reset_streams(Some(20))
        // Streams h2 itself had to reset (malformed, refused over max_concurrent_streams,
        // content-length mismatch) over the connection's life; beyond it, GOAWAY. Well-behaved
        // clients cause none (RUSTSEC-2024-0003).
        .max_local_error_reset_streams(Some(256))
        // Response bytes queued per stream for a peer that opens windows but does not read:
        // with MAX_CONCURRENT_STREAMS streams, at most 128 × 64 KiB = 8 MiB per connection.
        .max_send_buf_size(64 * 1024)
        // Dead peers are found by PING instead of holding streams forever. The client's answer
        // is traffic to `idle_timeout`, so the PING must come later than it, or an idle
        // connection would never close (hyper pings idle connections too).
        .keep_alive_interval(Some(
            (limits.idle_timeout + Duration::from_secs(5)).max(Duration::from_secs(30)),
        ))
        .keep_alive_timeout(Duration::from_secs(10));
    // ALPN tells the protocol. Only `serve_connection` keeps to these; hyper-util's
    // `serve_connection_with_upgrades` (used for HTTP/1, for its upgrades) sniffs the first
    // bytes whatever they say, so a client that sends the HTTP/2 preface there gets HTTP/2.
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
    limiter: Arc<ConnectionLimiter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = Drain::new();
    while let Some((tcp, peer)) = super::next_connection(&listener, &mut shutdown).await {
        let snapshot = shared.load_full();
        // A load balancer's connection names its client in a PROXY protocol header: its own
        // address is neither banned nor capped per address (its clients are, once read).
        let from_balancer = is_trusted(peer.ip(), &snapshot.listen.proxy_protocol_from);
        let mut caps = snapshot.client.connection_caps;
        if from_balancer {
            // Counted against its client once the header is read (`rekey` below).
            caps.per_ip = 0;
        } else if super::banned_at_accept(&snapshot, peer.ip(), &metrics) {
            // A banned client is dropped here, before any TLS work is spent on it.
            continue;
        }
        // Over a cap the socket is dropped here, before any TLS work is spent on it.
        let Some(permit) = limiter.admit(peer, caps, &metrics) else {
            continue;
        };
        let acceptor = TlsAcceptor::from(snapshot.tls.server_config.clone());
        let limits = snapshot.client.clone();
        drop(snapshot);
        let shared = shared.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        let open = metrics.connection_opened("https");
        tokio::spawn(async move {
            let _open = open;
            let mut permit = permit;
            let _ = tcp.set_nodelay(true);
            let mut tcp = tcp;
            let header_timeout = limits.header_timeout;
            let Some(peer) =
                super::client_of(&mut tcp, peer, from_balancer, header_timeout, &metrics).await
            else {
                return;
            };
            if from_balancer {
                if super::banned_at_accept(&shared.load(), peer.ip(), &metrics) {
                    return;
                }
                let per_ip = limits.connection_caps.per_ip;
                if !super::counted_against(&mut permit, peer, per_ip, &metrics) {
                    return;
                }
            }
            // Peers not listed may not send a PROXY header (listener/proxy_protocol.rs).
            let unlisted = metrics
                .proxy_protocol_refused
                .with_label_values(&["unlisted"]);
            let tcp = HeaderGuard::new(tcp, (!from_balancer).then_some(unlisted));
            let mut tls =
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) if err.get_ref().is_some_and(|e| e.is::<UnlistedHeader>()) => {
                        tracing::debug!(%peer, "PROXY protocol header from a peer not listed");
                        return;
                    }
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
            if session.alpn_protocol() == Some(super::tls::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the answer (RFC 8737 §3).
                let _ = tokio::time::timeout(
                    limits.send_timeout,
                    tokio::io::AsyncWriteExt::shutdown(&mut tls),
                )
                .await;
                return;
            }
            let h2 = session.alpn_protocol() == Some(b"h2");
            if h2 {
                // RFC 9113 §3.4: the preface, or GOAWAY(PROTOCOL_ERROR) (listener/preface.rs).
                match tokio::time::timeout(limits.header_timeout, preface::read(&mut tls)).await {
                    Ok(Ok(Preface::Valid)) => {}
                    Ok(Ok(Preface::Invalid)) => {
                        tracing::debug!(%peer, "invalid HTTP/2 connection preface: GOAWAY");
                        metrics
                            .connections_refused
                            .with_label_values(&["invalid_preface"])
                            .inc();
                        let _ =
                            tokio::time::timeout(limits.send_timeout, preface::refuse(&mut tls))
                                .await;
                        return;
                    }
                    Ok(Ok(Preface::Closed) | Err(_)) => return,
                    Err(_) => {
                        tracing::debug!(%peer, "HTTP/2 connection preface timed out");
                        return;
                    }
                }
            }
            let in_flight = Arc::new(InFlight::default());
            // HTTP/2 frames every message itself; only HTTP/1 bytes can be framed two ways.
            let framing = (!h2).then(|| Arc::new(Framing::default()));
            let connection = Arc::new(Connection {
                peer,
                peer_header: crate::upstream::headers::ip_header_value(peer.ip()),
                sni,
                in_flight: in_flight.clone(),
                metrics,
                framing: framing.clone(),
            });
            let deadlines = Deadlines {
                idle: limits.idle_timeout,
                send: limits.send_timeout,
            };
            let send_timeouts = connection
                .metrics
                .client_timeouts
                .with_label_values(&["send"]);
            // HTTP/1: which written bytes are a response of the service (listener/response_gate.rs):
            // the refused-head rewriter and the head deadline both read it.
            let gate = (!h2).then(|| Arc::new(ResponseGate::default()));
            let io = IdleIo::new(tls, deadlines, in_flight).counting_send_timeouts(send_timeouts);
            let io = match &gate {
                Some(gate) => io.with_head_deadline(gate.clone(), limits.header_timeout),
                None => io,
            };
            let builder = connection_builder(&limits, h2, Some(connection.metrics.clone()));
            let service_shared = shared.clone();
            let resets = PrematureResets::new();
            let rapid_resets = connection
                .metrics
                .http2_resets
                .with_label_values(&["rapid_reset"]);
            let service_resets = resets.clone();
            let service_gate = gate.clone();
            let metrics = connection.metrics.clone();
            let service = service_fn(move |request| {
                // Only HTTP/2 has streams a client can reset.
                let watch = h2.then(|| service_resets.begin());
                let end = service_gate.as_ref().map(|gate| gate.response_begins());
                // Boxed: the pipeline's future is several KiB, and hyper moves the service
                // future into its dispatcher; a box moves as a pointer (callgrind showed the
                // copy as the largest single cost per request).
                let response = Box::pin(proxy::serve(
                    request,
                    connection.clone(),
                    service_shared.clone(),
                ));
                async move {
                    let response = response.await;
                    if let Some(watch) = watch {
                        watch.answered();
                    }
                    if let (Some(end), Ok(response)) = (&end, &response) {
                        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                            end.upgraded();
                        }
                    }
                    response.map(|response| {
                        response.map(|body| WatchedBody::new(body, h2).with_end(end))
                    })
                }
            });
            let result = if h2 {
                // `serve_connection`, not `serve_connection_with_upgrades`: only the former
                // keeps to `http2_only` (the latter sniffs the bytes for HTTP/1).
                let io = TokioIo::new(preface::Replay::new(io));
                let conn = builder.serve_connection(io, service);
                tokio::select! {
                    result = watcher.watch(conn.into_owned()) => result,
                    () = resets.tripped() => {
                        rapid_resets.inc();
                        // Dropping the connection closes it: no GOAWAY, the client lost its
                        // right to a clean goodbye.
                        tracing::warn!(%peer, "HTTP/2 connection closed: most of its requests \
                            were reset by the client before their response (rapid reset)");
                        return;
                    }
                }
            } else {
                // hyper reads every byte through the framing tracker (listener/framing.rs).
                let framing = framing.unwrap_or_default();
                let io = FramingWatch::new(io, framing, h1_buffer_size(&limits));
                let refused = RefusedHeads {
                    shared,
                    metrics,
                    peer: peer.ip(),
                    gate: gate.unwrap_or_default(),
                };
                let io = TokioIo::new(ParseErrorHeads::new(io, refused));
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
pub(crate) async fn drain(graceful: Drain, shared: &Shared) {
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
