//! Forwarding one request to an upstream: rewriting the request (forwarding headers, hop-by-hop
//! removal), sending with timeout and retry, cleaning the response, and WebSocket tunnels.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{
    caused_by, AbandonBody, BodyTimeout, BodyTooLarge, ClientBodyError, RequestBody, ResponseBody,
};
use crate::errors::ProxyError;
use crate::upstream::conn::UpstreamBody;
use crate::upstream::health::InFlightRequest;
use crate::upstream::Upstream;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// RFC 9110 §7.6.1 (and the RFC 2616 §13.5.1 list that clients still send): headers that
/// describe one connection and must not be forwarded. Proxy credentials are for us, not the app.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
    &header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers and every header named in `Connection` (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of these (or only Connection),
    // and a removal costs a hash lookup each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            // Bytes, not `to_str`: a value with a non-ASCII byte still lists headers to drop
            // (found by fuzzing: `Connection: \x8b, X-Secret` forwarded X-Secret).
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Drops request headers whose names contain `_`, as nginx does (`underscores_in_headers off`).
/// CGI-style app servers (WSGI, Django's `request.META`) turn `-` into `_`, so
/// `X_Forwarded_For` would land on the same key as the `X-Forwarded-For` rampart sets.
pub fn strip_underscored(headers: &mut HeaderMap) {
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(name);
    }
}

/// `Connection: upgrade` + `Upgrade: websocket` on HTTP/1.1 (RFC 6455 §4.1).
pub fn is_websocket_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Who is asking, as the forwarding headers will tell the upstream.
pub struct ForwardContext<'a> {
    /// The path and query to send, when not the request's own (the normalized path).
    pub path_and_query: Option<&'a str>,
    pub request_id: &'a HeaderValue,
    pub peer: IpAddr,
    /// The peer is in `trusted_proxies`: its X-Forwarded-For and Forwarded are kept.
    pub peer_trusted: bool,
    pub client_ip: IpAddr,
    /// The host as the client addressed it (with port, if it sent one).
    pub host: &'a HeaderValue,
    pub max_body: u64,
    /// `client.body_timeout`: the longest the request body may send nothing.
    pub body_timeout: std::time::Duration,
    /// The route's `response_timeout`, when it overrides the upstream's.
    pub response_timeout: Option<std::time::Duration>,
}

/// Sets the forwarding headers on a request about to go upstream. Whatever an untrusted client
/// sent in these headers is replaced, never believed.
pub fn set_forwarding_headers(headers: &mut HeaderMap, ctx: &ForwardContext<'_>) {
    let peer = ip_header_value(ctx.peer);
    // Usually the same address: formatted once.
    let real_ip = if ctx.client_ip == ctx.peer {
        peer.clone()
    } else {
        ip_header_value(ctx.client_ip)
    };
    let forwarded_for = if ctx.peer_trusted && headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = String::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(text) = value.to_str() {
                chain.push_str(text.trim());
                chain.push_str(", ");
            }
        }
        chain.push_str(&ctx.peer.to_string());
        HeaderValue::from_str(&chain).unwrap_or(peer.clone())
    } else {
        peer
    };
    if !ctx.peer_trusted {
        headers.remove(&FORWARDED);
    }
    headers.insert(&X_FORWARDED_FOR, forwarded_for);
    headers.insert(&X_FORWARDED_PROTO, HTTPS.clone());
    headers.insert(&X_FORWARDED_HOST, ctx.host.clone());
    headers.insert(&X_REAL_IP, real_ip);
    headers.insert(&X_REQUEST_ID, ctx.request_id.clone());
    // The app sees the host the client asked for (Django's ALLOWED_HOSTS), not our upstream address.
    headers.insert(header::HOST, ctx.host.clone());
}

fn ip_header_value(ip: IpAddr) -> HeaderValue {
    // Written into a stack buffer: `to_string` would allocate a String only to copy it again.
    let mut buffer = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    if std::io::Write::write_fmt(&mut cursor, format_args!("{ip}")).is_err() {
        return HeaderValue::from_static("unknown");
    }
    let len = cursor.position() as usize;
    // An IP address's text form is always a valid header value.
    HeaderValue::from_bytes(&buffer[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

/// HTTP/2 clients may send `cookie` as one field per crumb (RFC 9113 §8.2.3, and Chromium's
/// encoder does): before forwarding over HTTP/1.1 they are joined into one field with "; ".
/// Repeated fields would reach the app joined with "," (WSGI's `HTTP_COOKIE`), which cookie
/// parsers such as Django's read as one cookie, losing the session and CSRF cookies.
fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 4);
    for crumb in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Joined valid values with "; " make a valid value.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
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

/// Forwards `request` to `upstream` and returns the upstream's response, cleaned.
pub async fn forward(
    upstream: &Upstream,
    mut request: Request<Incoming>,
    ctx: &ForwardContext<'_>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let websocket = is_websocket_upgrade(request.version(), request.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();

    let mut headers = parts.headers;
    let upgrade_protocol = if websocket {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(&mut headers);
    strip_underscored(&mut headers);
    join_cookie_crumbs(&mut headers);
    // We answer `Expect: 100-continue` ourselves (hyper does when the body is first read).
    headers.remove(header::EXPECT);
    set_forwarding_headers(&mut headers, ctx);
    if let Some(protocol) = upgrade_protocol {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }

    let has_body = !http_body::Body::is_end_stream(&body);
    // hyper's client sends a body of unknown length on GET, HEAD or CONNECT as no body at all
    // unless the request says chunked: say it, so the app gets the body the client sent.
    if has_body
        && !headers.contains_key(header::CONTENT_LENGTH)
        && http_body::Body::size_hint(&body).exact().is_none()
    {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let own_target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path_and_query = ctx.path_and_query.unwrap_or(own_target);

    // What may be sent twice: a bodiless idempotent request (RFC 9110 §9.2.2).
    let resendable = !has_body && is_idempotent(&parts.method);
    // Retry only what cannot have reached the app: a connect failure, on another server.
    let retry = resendable && upstream.settings.retries > 0 && upstream.server_count() > 1;
    let attempts = if retry {
        1 + (upstream.settings.retries as usize).min(upstream.server_count() - 1)
    } else {
        1
    };
    let spare_headers = resendable.then(|| headers.clone());
    let body = if has_body {
        RequestBody::new(body, ctx.max_body, ctx.body_timeout)
    } else {
        RequestBody::empty()
    };
    let client_wait = body.client_wait();
    // Unless a response head comes back, the client's body is dropped on the way out, however
    // this function is left (error, timeout, cancelled): hyper then stops reading the upload.
    let mut abandon = AbandonOnExit(body.abandon_handle());
    let mut body = Some(body);
    let mut headers = Some(headers);

    // Servers this request already failed on: a retry never goes back to one.
    let mut failed: Vec<usize> = Vec::new();
    let mut last_error = None;
    let mut stale_resends = 0;
    let (response, pick) = loop {
        let Some(pick) = upstream.pick(&failed) else {
            // Failing fast: every server is known to be down (see README, "all servers down").
            return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyUpstream {
                upstream: upstream.name.clone(),
            }));
        };
        let server = pick.server;
        let uri = server
            .uri_for(path_and_query)
            .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
        let mut upstream_request = Request::new(body.take().unwrap_or_else(RequestBody::empty));
        *upstream_request.method_mut() = parts.method.clone();
        *upstream_request.uri_mut() = uri;
        *upstream_request.version_mut() = Version::HTTP_11;
        *upstream_request.headers_mut() = match headers.take() {
            Some(headers) => headers,
            None => spare_headers.clone().unwrap_or_default(),
        };
        let sent = tokio::time::timeout(
            ctx.response_timeout
                .unwrap_or(upstream.settings.response_timeout),
            server.exchange(upstream_request),
        )
        .await;
        match sent {
            Ok(Ok(response)) => {
                upstream.request_succeeded(&pick);
                break (response, pick);
            }
            // Out of time while the upload was waiting for the client: the client's fault (RFC
            // 9110 §15.5.9: no complete request in time), and no mark against the server.
            Err(_elapsed) if client_wait.as_ref().is_some_and(|wait| wait.is_waiting()) => {
                return Err(ProxyError::ClientBodyTimeout);
            }
            Err(_elapsed) => {
                tracing::warn!(upstream = %upstream.name, server = %server.label, "upstream response timeout");
                upstream.request_failed(&pick);
                return Err(ProxyError::UpstreamTimeout {
                    upstream: upstream.name.clone(),
                });
            }
            Ok(Err(err)) => {
                // The client's faults say nothing about the server's health.
                if caused_by::<BodyTooLarge>(&err) {
                    return Err(ProxyError::PayloadTooLarge);
                }
                if caused_by::<BodyTimeout>(&err) {
                    return Err(ProxyError::ClientBodyTimeout);
                }
                if caused_by::<ClientBodyError>(&err) {
                    return Err(ProxyError::ClientBody(error_chain(&err)));
                }
                // A keep-alive connection the server closed while it sat in the pool is no
                // sign of a sick server; nginx gives such a request another try too.
                if resendable && stale_resends < MAX_STALE_RESENDS && err.on_stale_connection() {
                    stale_resends += 1;
                    tracing::debug!(upstream = %upstream.name, server = %server.label, error = %error_chain(&err), "pooled connection closed before answering, sending again");
                    continue;
                }
                upstream.request_failed(&pick);
                let detail = error_chain(&err);
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
        parts.version < Version::HTTP_2 && abandon.0.as_ref().is_some_and(AbandonBody::unfinished);
    abandon.0 = None;
    let server_label = &pick.server.label;
    let in_flight = pick.in_flight;

    let (mut parts, mut body) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            return Ok(tunnel(parts, body, client_upgrade, in_flight));
        }
        // A 101 we did not ask for cannot be honoured.
        return Err(ProxyError::UpstreamProtocol {
            upstream: upstream.name.clone(),
            detail: "unsolicited 101".into(),
        });
    }
    // Both framings at once (RFC 9112 §6.3): the body was read as chunked; drop the length and
    // never reuse a connection that spoke like this.
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        tracing::warn!(upstream = %upstream.name, server = %server_label, "upstream sent Content-Length with Transfer-Encoding; connection not reused");
        parts.headers.remove(header::CONTENT_LENGTH);
        body.poison();
    }
    strip_hop_by_hop(&mut parts.headers);
    if upload_unfinished {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, in_flight),
    ))
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
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = protocol {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    Response::from_parts(parts, ResponseBody::empty())
}

/// The whole error chain as one log line (never shown to clients).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_listed_names() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));

        let mut headers = HeaderMap::new();
        let listed = HeaderValue::from_bytes(b"\x8b-x, X-Secret").unwrap();
        headers.insert(header::CONNECTION, listed);
        headers.insert("x-secret", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        headers.append("x_forwarded_for", HeaderValue::from_static("7.7.7.7"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_underscored(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.insert(&X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        headers.insert(&FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        let id = HeaderValue::from_static("abc");
        let host = HeaderValue::from_static("example.com");
        let ctx = ForwardContext {
            path_and_query: None,
            request_id: &id,
            peer: "10.0.0.1".parse().unwrap(),
            peer_trusted: false,
            client_ip: "10.0.0.1".parse().unwrap(),
            host: &host,
            max_body: 0,
            body_timeout: std::time::Duration::from_secs(30),
            response_timeout: None,
        };
        set_forwarding_headers(&mut headers, &ctx);
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(headers[&X_REAL_IP], "10.0.0.1");
        assert!(!headers.contains_key(&FORWARDED));

        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        let ctx = ForwardContext {
            path_and_query: None,
            peer_trusted: true,
            client_ip: "2.2.2.2".parse().unwrap(),
            ..ctx
        };
        set_forwarding_headers(&mut headers, &ctx);
        assert_eq!(headers[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(headers[&X_REAL_IP], "2.2.2.2");
    }
}
