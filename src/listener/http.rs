//! The plain-HTTP listener: every request is redirected to https, nothing is proxied; the one
//! exception is the HTTP-01 answer of a pending ACME order (`/.well-known/acme-challenge/TOKEN`).

use std::convert::Infallible;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ResponseBody;
use crate::client_ip::is_trusted;
use crate::errors::ProxyError;
use crate::listener::drain::Drain;
use crate::listener::io::{Deadlines, IdleIo};
use crate::listener::limit::{Caps, ConnectionLimiter};
use crate::listener::proxy_protocol::HeaderGuard;
use crate::metrics::Metrics;
use crate::request_checks::host_name;
use crate::Shared;

pub async fn run(
    listener: TcpListener,
    shared: Shared,
    metrics: Arc<Metrics>,
    limiter: Arc<ConnectionLimiter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = Drain::new();
    while let Some((tcp, peer)) = super::next_connection(&listener, &mut shutdown).await {
        let (header_timeout, deadlines, caps, from_balancer) = {
            let snapshot = shared.load();
            let from_balancer = is_trusted(peer.ip(), &snapshot.listen.proxy_protocol_from);
            // With HTTP-01 the CA's validators must reach their token whatever the jail holds
            // (issue 12): a banned client then gets its 403 per request, after the token.
            let answers_acme = answers_http01(&snapshot);
            if !from_balancer
                && !answers_acme
                && super::banned_at_accept(&snapshot, peer.ip(), &metrics)
            {
                continue;
            }
            let deadlines = Deadlines {
                idle: snapshot.client.idle_timeout,
                send: snapshot.client.send_timeout,
            };
            (
                snapshot.client.header_timeout,
                deadlines,
                snapshot.client.connection_caps,
                from_balancer,
            )
        };
        // A load balancer is not capped per address: its clients are, once its header is read.
        let accept_caps = Caps {
            per_ip: if from_balancer { 0 } else { caps.per_ip },
            ..caps
        };
        let Some(mut permit) = limiter.admit(peer, accept_caps, &metrics) else {
            continue;
        };
        let shared = shared.clone();
        let watcher = graceful.watcher();
        let open = metrics.connection_opened("http");
        let metrics = metrics.clone();
        let send_timeouts = metrics.client_timeouts.with_label_values(&["send"]);
        tokio::spawn(async move {
            let _open = open;
            let _ = tcp.set_nodelay(true);
            let mut tcp = tcp;
            let Some(peer) =
                super::client_of(&mut tcp, peer, from_balancer, header_timeout, &metrics).await
            else {
                return;
            };
            if from_balancer {
                let snapshot = shared.load();
                if !answers_http01(&snapshot)
                    && super::banned_at_accept(&snapshot, peer.ip(), &metrics)
                {
                    return;
                }
                if !super::counted_against(&mut permit, peer, caps.per_ip, &metrics) {
                    return;
                }
            }
            let _permit = permit;
            let unlisted = metrics
                .proxy_protocol_refused
                .with_label_values(&["unlisted"]);
            let tcp = HeaderGuard::new(tcp, (!from_balancer).then_some(unlisted));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let builder = builder.http1_only();
            let service = service_fn(move |request| {
                let shared = shared.clone();
                let metrics = metrics.clone();
                async move {
                    if let Some(answer) = acme_http01(&request, &shared).await {
                        return Ok::<_, Infallible>(answer);
                    }
                    if shared.load().bans.refuses(peer.ip()) {
                        metrics.banned_refused.with_label_values(&["request"]).inc();
                        return Ok(ProxyError::Forbidden.into_response());
                    }
                    Ok::<_, Infallible>(redirect(&request, &shared))
                }
            });
            // A redirect is answered at once, so nothing is ever in flight here: a client that
            // reads none of its answers is closed at idle_timeout or send_timeout.
            let io =
                IdleIo::new(tcp, deadlines, Arc::default()).counting_send_timeouts(send_timeouts);
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .into_owned();
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %err, "http connection ended with an error");
            }
        });
    }
    super::https::drain(graceful, &shared).await;
}

/// Whether this listener answers HTTP-01 challenges (`[acme] challenge = "http-01"`).
fn answers_http01(snapshot: &crate::Snapshot) -> bool {
    snapshot
        .acme
        .as_ref()
        .is_some_and(|acme| acme.challenge == crate::acme::config::Challenge::Http01)
}

/// The key authorization of a pending HTTP-01 challenge (RFC 8555 §8.3), before the redirect
/// and any other rule: the CA's validator must reach it on plain http. A token that no pending
/// order has gets the redirect like any other path.
async fn acme_http01(
    request: &Request<Incoming>,
    shared: &Shared,
) -> Option<Response<ResponseBody>> {
    if !matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
        return None;
    }
    let token = crate::acme::challenges::http01_token(request.uri().path())?;
    let registry = shared.load().tls.acme_registry()?;
    let answer = registry.http01_answer(token).await?;
    let mut response = Response::new(ResponseBody::full(bytes::Bytes::from(answer)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(response)
}

/// `https://{host}[:https_port_public]{path}?{query}` with `http_redirect_status`.
fn redirect(request: &Request<Incoming>, shared: &Shared) -> Response<ResponseBody> {
    let snapshot = shared.load();
    // Two Host headers: which one a later hop believes is anyone's guess (RFC 9112 §3.2).
    if request
        .headers()
        .get_all(header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        return ProxyError::BadRequest("two Host headers").into_response();
    }
    let host = request.headers().get(header::HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let Some(name) = host.as_ref().and_then(host_name) else {
        return ProxyError::BadRequest("no valid Host").into_response();
    };
    let port = snapshot.listen.https_port_public;
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // `OPTIONS *` has no path to keep.
    let target = if target.starts_with('/') { target } else { "/" };
    let location = if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return ProxyError::BadRequest("redirect target is not a header value").into_response();
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = snapshot.listen.http_redirect_status;
    response.headers_mut().insert(header::LOCATION, location);
    response
}
