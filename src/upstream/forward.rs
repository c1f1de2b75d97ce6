//! Forwarding one request to an upstream: its headers rewritten (`headers.rs`), sent with
//! timeout and retry, the response cleaned, and WebSocket tunnels.

use std::future::Future;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use std::sync::Arc;

use crate::body::{BodyFailures, ResponseBody};
use crate::errors::ProxyError;
use crate::metrics::Metrics;
use crate::request_body::{
    caused_by, AbandonBody, BodyTimeout, BodyTooLarge, ClientBodyError, RequestBody,
};
use crate::upstream::conn::{ExchangeError, UpstreamBody};
use crate::upstream::headers::{self, is_websocket_upgrade, ClientFacts};
use crate::upstream::health_state::InFlightRequest;
use crate::upstream::Upstream;

/// What `forward` needs besides the request: the client as the forwarding headers tell it,
/// the target to send, and the request body's limits.
pub struct ForwardContext<'a> {
    /// The path and query to send, when not the request's own (the normalized path).
    pub path_and_query: Option<&'a str>,
    pub client: ClientFacts<'a>,
    pub max_body: u64,
    /// `client.body_timeout`: the longest the request body may send nothing.
    pub body_timeout: std::time::Duration,
    /// The route's `response_timeout`, when it overrides the upstream's.
    pub response_timeout: Option<std::time::Duration>,
    /// Where a response body that breaks off mid-way is counted (`upstream_errors{kind="body"}`),
    /// and the upstream to name there.
    pub count_body_failures: Option<(&'a Arc<Metrics>, &'a Arc<Upstream>)>,
}

/// Drops the client's request body when dropped (see [`AbandonBody`]); forgotten once the
/// upstream has answered (emptied).
struct AbandonOnExit(Option<AbandonBody>);

impl Drop for AbandonOnExit {
    fn drop(&mut self) {
        if let Some(body) = &self.0 {
            body.abandon();
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request as it goes upstream, prepared before the first await. `forward`'s future holds
/// this, not the client's `Request` (264 bytes) or its `Parts` (224): taken whole, they made
/// this stage's state 3,384 bytes per request in flight (docs/architecture.md, "The request
/// path's futures").
struct Outgoing {
    method: Method,
    /// The origin-form target every send carries (see [`origin_form`]); `None`: it cannot be
    /// forwarded.
    target: Option<Uri>,
    /// The client speaks HTTP/1: an upload still running when the response comes ends its
    /// connection.
    client_http1: bool,
    /// The rewritten headers, for the first send.
    headers: Option<HeaderMap>,
    /// A copy for another send, kept only for what may be sent twice.
    spare_headers: Option<HeaderMap>,
    body: Option<RequestBody>,
    client_upgrade: Option<OnUpgrade>,
    /// A bodiless idempotent request (RFC 9110 §9.2.2): it may be sent twice.
    resendable: bool,
}

impl Outgoing {
    fn prepare(mut request: Request<Incoming>, ctx: &ForwardContext<'_>) -> Self {
        let websocket = is_websocket_upgrade(request.version(), request.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();

        let mut headers = parts.headers;
        let upgrade = websocket
            .then(|| headers.get(header::UPGRADE).cloned())
            .flatten();
        headers::rewrite_request(&mut headers, &ctx.client, upgrade);
        let has_body = !http_body::Body::is_end_stream(&body);
        if has_body {
            headers::frame_unknown_length(&mut headers, http_body::Body::size_hint(&body).exact());
        }
        let resendable = !has_body && is_idempotent(&parts.method);
        let body = if has_body {
            RequestBody::new(body, ctx.max_body, ctx.body_timeout)
        } else {
            RequestBody::empty()
        };
        Outgoing {
            method: parts.method,
            target: origin_form(&parts.uri, ctx.path_and_query),
            client_http1: parts.version < Version::HTTP_2,
            spare_headers: resendable.then(|| headers.clone()),
            headers: Some(headers),
            body: Some(body),
            client_upgrade,
            resendable,
        }
    }

    /// The request of one send: the body and the headers the first time, the spare headers
    /// (and no body: only bodiless requests are sent again) after.
    fn request(&mut self, target: Uri) -> Request<RequestBody> {
        let mut request = Request::new(self.body.take().unwrap_or_else(RequestBody::empty));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = target;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = match self.headers.take() {
            Some(headers) => headers,
            None => self.spare_headers.clone().unwrap_or_default(),
        };
        request
    }
}

/// Forwards `request` to `upstream` and returns the upstream's response, cleaned. The request
/// is prepared here, synchronously, and the returned block holds only what its awaits need: a
/// plain `fn` with an `async move` block, not an `async fn`, which would move its arguments into
/// locals and keep both copies.
pub fn forward<'a>(
    upstream: &'a Upstream,
    request: Request<Incoming>,
    ctx: &'a ForwardContext<'a>,
) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
    let mut outgoing = Outgoing::prepare(request, ctx);
    async move {
        let Some(target) = outgoing.target.take() else {
            return Err(ProxyError::BadRequest("request target cannot be forwarded"));
        };
        // Retry only what cannot have reached the app: a connect failure, on another server.
        let retry =
            outgoing.resendable && upstream.settings.retries > 0 && upstream.server_count() > 1;
        let attempts = if retry {
            1 + (upstream.settings.retries as usize).min(upstream.server_count() - 1)
        } else {
            1
        };
        let body = outgoing.body.as_ref();
        let client_wait = body.and_then(RequestBody::client_wait);
        // Unless a response head comes back, the client's body is dropped on the way out, however
        // this function is left (error, timeout, cancelled): hyper then stops reading the upload.
        let mut abandon = AbandonOnExit(body.and_then(RequestBody::abandon_handle));

        // Servers this request already failed on: a retry never goes back to one.
        let mut failed: Vec<usize> = Vec::new();
        let mut last_error = None;
        let mut stale_resends = 0;
        let (response, pick) = loop {
            let Some(pick) = upstream.pick(&failed) else {
                // Failing fast: every server is known to be down (docs/configuration.md, "all servers down").
                return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyUpstream {
                    upstream: upstream.name.clone(),
                }));
            };
            let server = pick.server;
            let sent = server
                .exchange(
                    outgoing.request(target.clone()),
                    ctx.response_timeout
                        .unwrap_or(upstream.settings.response_timeout),
                )
                .await;
            match sent {
                Ok(response) => {
                    upstream.request_succeeded(&pick);
                    break (response, pick);
                }
                // Out of time while the upload was waiting for the client: the client's fault (RFC
                // 9110 §15.5.9: no complete request in time), and no mark against the server.
                Err(ExchangeError::Timeout)
                    if client_wait.as_ref().is_some_and(|wait| wait.is_waiting()) =>
                {
                    return Err(ProxyError::ClientBodyTimeout);
                }
                Err(ExchangeError::Timeout) => {
                    tracing::warn!(upstream = %upstream.name, server = %server.label, "upstream response timeout");
                    upstream.request_failed(&pick);
                    return Err(ProxyError::UpstreamTimeout {
                        upstream: upstream.name.clone(),
                    });
                }
                Err(err) => {
                    // The client's faults say nothing about the server's health.
                    if caused_by::<BodyTooLarge>(&err) {
                        return Err(ProxyError::PayloadTooLarge);
                    }
                    if caused_by::<BodyTimeout>(&err) {
                        return Err(ProxyError::ClientBodyTimeout);
                    }
                    if caused_by::<ClientBodyError>(&err) {
                        return Err(ProxyError::ClientBody(crate::error_chain::chain_text(&err)));
                    }
                    // A keep-alive connection the server closed while it sat in the pool is no
                    // sign of a sick server; nginx gives such a request another try too.
                    if outgoing.resendable
                        && stale_resends < MAX_STALE_RESENDS
                        && err.on_stale_connection()
                    {
                        stale_resends += 1;
                        tracing::debug!(upstream = %upstream.name, server = %server.label, error = %crate::error_chain::chain_text(&err), "pooled connection closed before answering, sending again");
                        continue;
                    }
                    upstream.request_failed(&pick);
                    let detail = crate::error_chain::chain_text(&err);
                    if err.is_connect() && failed.len() + 1 < attempts {
                        tracing::warn!(upstream = %upstream.name, server = %server.label, error = %detail, "connect failed, retrying on the next server");
                        failed.push(pick.index);
                        last_error = Some(ProxyError::UpstreamConnect {
                            upstream: upstream.name.clone(),
                            detail,
                        });
                        continue;
                    }
                    tracing::warn!(upstream = %upstream.name, server = %server.label, error = %detail, "upstream request failed");
                    return Err(if err.is_connect() {
                        ProxyError::UpstreamConnect {
                            upstream: upstream.name.clone(),
                            detail,
                        }
                    } else {
                        ProxyError::UpstreamProtocol {
                            upstream: upstream.name.clone(),
                            detail,
                        }
                    });
                }
            }
        };
        // A response: the body streams on (an app may answer before it has read it all). An
        // HTTP/1.1 client still uploading then is told that this connection ends with the
        // response: the upload goes no further than the upstream connection, which closes with it.
        let upload_unfinished =
            outgoing.client_http1 && abandon.0.as_ref().is_some_and(AbandonBody::unfinished);
        abandon.0 = None;
        let server_label = &pick.server.label;
        let in_flight = pick.in_flight;

        let (mut parts, mut body) = response.into_parts();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = outgoing.client_upgrade.take() {
                return Ok(tunnel(parts, body, client_upgrade, in_flight));
            }
            // A 101 we did not ask for cannot be honoured.
            return Err(ProxyError::UpstreamProtocol {
                upstream: upstream.name.clone(),
                detail: "unsolicited 101".into(),
            });
        }
        // Both framings at once: never reuse a connection that spoke like this.
        if headers::clean_response(&mut parts.headers, upload_unfinished) {
            tracing::warn!(upstream = %upstream.name, server = %server_label, "upstream sent Content-Length with Transfer-Encoding; connection not reused");
            body.poison();
        }
        Ok(Response::from_parts(
            parts,
            ResponseBody::upstream(
                body,
                in_flight,
                ctx.count_body_failures.map(|(metrics, upstream)| {
                    BodyFailures::new(metrics.clone(), upstream.clone())
                }),
            ),
        ))
    }
}

/// The request target as it goes upstream, in origin form (RFC 9112 §3.2.1), made once for every
/// send: the normalized path and query when the route rewrote them, else the client's own,
/// shared rather than parsed again (about 150 instructions per request under callgrind).
fn origin_form(client_target: &Uri, normalized: Option<&str>) -> Option<Uri> {
    let path_and_query = match normalized {
        Some(normalized) => PathAndQuery::try_from(normalized).ok()?,
        None => client_target
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    };
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// Sends of one request on stale pooled connections before giving up (each takes a connection
/// out of the pool: a fresh one comes after the stale ones).
const MAX_STALE_RESENDS: usize = 2;

/// Answers the client's upgrade with the upstream's 101 and splices the two connections.
fn tunnel(
    mut parts: http::response::Parts,
    mut body: UpstreamBody,
    client_upgrade: hyper::upgrade::OnUpgrade,
    in_flight: InFlightRequest,
) -> Response<ResponseBody> {
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    // The upstream connection hands its socket over only while it is driven.
    let connection = body.take_connection();
    let upstream_response = Response::from_parts(parts.clone(), body);
    let upstream_upgrade = hyper::upgrade::on(upstream_response);
    tokio::spawn(async move {
        // An open WebSocket is load on its server (least_conn) until it closes.
        let _in_flight = in_flight;
        let upstream_upgrade = async move {
            match connection {
                Some(connection) => tokio::join!(connection.run(), upstream_upgrade).1,
                None => upstream_upgrade.await,
            }
        };
        let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
        match (client, upstream) {
            (Ok(client), Ok(upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %err, "upgraded connection ended");
                }
            }
            (client, upstream) => {
                tracing::debug!(
                    client_ok = client.is_ok(),
                    upstream_ok = upstream.is_ok(),
                    "upgrade failed"
                );
            }
        }
    });
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = protocol {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    Response::from_parts(parts, ResponseBody::empty())
}
