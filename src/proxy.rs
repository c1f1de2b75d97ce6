//! The request pipeline of the https listener. [`handle`] shows every stage in order, outer to
//! inner; each stage says why it sits where it does.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::access_log::AccessEntry;
use crate::actions::{self, redirect_response, RedirectInput};
use crate::body::ResponseBody;
use crate::client_ip::{client_ip, is_trusted};
use crate::compress::Negotiation;
use crate::errors::ProxyError;
use crate::header_names::X_REQUEST_ID;
use crate::listener::framing::Framing;
use crate::listener::io::InFlight;
use crate::metrics::{MethodLabel, Metrics, NO_ROUTE};
use crate::path;
use crate::policy::auth::basic::Refusal;
use crate::policy::auth::forward::{Subject, Verdict};
use crate::policy::cors;
use crate::policy::csp::{self, Nonce};
use crate::policy::headers::HeaderPolicy;
use crate::request_checks::{check_head, declared_length, request_host, HeadFacts, RequestHost};
use crate::request_id::request_id;
use crate::router::Lookup;
use crate::snapshot::{Action, Auth, Route, Snapshot};
use crate::upstream::forward::{forward, ForwardContext};
use crate::upstream::headers::ClientFacts;
use crate::Shared;

/// What the pipeline knows about the connection a request came on.
#[derive(Debug)]
pub struct Connection {
    pub peer: SocketAddr,
    /// The peer's address as X-Forwarded-For and X-Real-IP carry it: formatted once per
    /// connection instead of on every request (`upstream::headers::ip_header_value`).
    pub peer_header: HeaderValue,
    /// The TLS server name the client asked for, if any.
    pub sni: Option<String>,
    pub in_flight: Arc<InFlight>,
    pub metrics: Arc<Metrics>,
    /// HTTP/1 only: the ambiguous request heads found on the connection's bytes.
    pub framing: Option<Arc<Framing>>,
}

/// hyper's service entry point: never fails, every outcome is a response.
pub async fn serve(
    request: Request<Incoming>,
    connection: Arc<Connection>,
    shared: Shared,
) -> Result<Response<ResponseBody>, Infallible> {
    let _in_flight = connection.in_flight.begin();
    // One snapshot per request: a reload mid-connection applies from the next request on.
    let snapshot = shared.load_full();
    Ok(handle(request, &connection, &snapshot).await)
}

/// The pipeline of one request. Like the stages below it, a plain `fn` returning an `async
/// move` block rather than an `async fn`: an `async fn` moves its arguments into locals and keeps
/// both copies for its whole life, and the `Request` is 264 bytes, held by every stream in flight
/// (`cargo +nightly rustc --lib --release -- -Zprint-type-sizes`).
#[allow(clippy::manual_async_fn)]
pub fn handle<'a>(
    request: Request<Incoming>,
    connection: &'a Connection,
    snapshot: &'a Snapshot,
) -> impl Future<Output = Response<ResponseBody>> + 'a {
    async move {
        let started = Instant::now();
        // 1. The request id comes first so that every response, errors included, carries it.
        let request_id = request_id(request.headers());
        // The client as every stage sees it: IP rules, rate limits, forwarding, the access log.
        let peer = connection.peer.ip();
        let client = client_ip(peer, request.headers(), &snapshot.client.trusted_proxies);
        let method = MethodLabel::of(request.method());
        // Taken before the request is consumed; the line is written once the response is complete.
        let access = snapshot.log.access.then(|| {
            AccessEntry::start(
                &request,
                &request_id,
                client,
                snapshot.log.log_query,
                started,
            )
        });

        // 1b. A banned client (policy/ban) is refused before any other work is done for it.
        let banned = snapshot.bans.refuses(client);
        // The header section's framing fields, size and Host count, read once for every check.
        let head = HeadFacts::of(&request);
        // A banned HTTP/1 client is told to close too: its next connection is closed at accept.
        let body_may_be_unread =
            request.version() < Version::HTTP_2 && (banned || head.announces_body());
        // A config whose CSP holds `{nonce}`: one per response, the same in the request the
        // upstream gets (`X-CSP-Nonce`) and in the response's header.
        let nonce = snapshot.nonces.then(Nonce::generate);

        let metrics = &connection.metrics;
        let (result, routed) = if banned {
            metrics.banned_refused.with_label_values(&["request"]).inc();
            (Err(ProxyError::Forbidden), Routed::default())
        } else {
            route_and_act(
                request,
                &head,
                connection,
                snapshot,
                &request_id,
                client,
                nonce.as_ref(),
            )
            .await
        };
        let route_label = routed.route.map_or(NO_ROUTE, |route| route.name.as_str());
        let mut response = result.unwrap_or_else(|err| {
            tracing::debug!(request_id = ?request_id, error = %err, "request refused");
            err.count(metrics, route_label);
            let mut response = err.into_response();
            // An error may leave the request body unread (refused before it, or cut off by a
            // timeout): the client is told to stop sending, and hyper then stops reading it
            // instead of taking in the rest of an upload nobody wants.
            if body_may_be_unread {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        });

        // Last: security headers, on every response, replacing whatever the upstream sent.
        routed
            .header_policy(snapshot)
            .apply_with_nonce(response.headers_mut(), nonce.as_ref());
        response
            .headers_mut()
            .insert(&X_REQUEST_ID, crate::request_id::for_response(request_id));

        // The jail counts the status the client gets, whoever made it (the limiter, the upstream,
        // a static route); the 403 of a ban is not a strike. Only a strike costs anything here
        // (with a shared store, one Redis round trip, bounded).
        if !banned {
            // Boxed, and only when the status is a strike: the jail's (Redis) future is large, and
            // inline it would grow every request's future and each copy of it.
            let status = response.status().as_u16();
            if let Some(rule) = strike_rule(snapshot, &routed, client, status) {
                Box::pin(strike(snapshot, connection, &routed, rule, client, status)).await;
            }
        }

        // Labels are config names and fixed sets only, whatever the client sent. The route keeps
        // its series' handles (metrics/route.rs): no label hashing per request.
        let route_metrics = routed
            .route
            .map_or(&metrics.no_route, |route| &route.metrics);
        route_metrics.record(
            metrics,
            route_label,
            method,
            response.status(),
            started.elapsed().as_secs_f64(),
        );
        match access {
            Some(mut entry) => {
                entry.routed(routed.host.as_deref(), routed.route);
                if let Some(path) = &routed.normalized_path {
                    entry.normalized_path(path);
                }
                entry.respond(response)
            }
            None => response,
        }
    }
}

/// The jail rule a response counts under, when its status is a strike: the route's (`[ban]`
/// for responses made before a route was found). The peer a trusted proxy is never counted:
/// without an X-Forwarded-For it would be its own client, and banning it would ban everyone
/// behind it.
fn strike_rule<'s>(
    snapshot: &'s Snapshot,
    routed: &Routed<'s>,
    client: IpAddr,
    status: u16,
) -> Option<&'s crate::policy::ban::BanRule> {
    let rule = match routed.route {
        Some(route) => route.ban.as_deref(),
        None => snapshot.bans.default_rule.as_deref(),
    };
    let rule = rule.filter(|rule| rule.counts(status))?;
    (!is_trusted(client, &snapshot.client.trusted_proxies)).then_some(rule)
}

/// Counts a strike (see [`strike_rule`] for which responses are strikes).
async fn strike(
    snapshot: &Snapshot,
    connection: &Connection,
    routed: &Routed<'_>,
    rule: &crate::policy::ban::BanRule,
    client: IpAddr,
    status: u16,
) {
    let bans = &snapshot.bans;
    let route = routed.route.map_or(NO_ROUTE, |route| route.name.as_str());
    if let Some(ban) = bans
        .jail
        .strike(client, status, rule, &bans.allow, route)
        .await
    {
        connection.metrics.bans.with_label_values(&[route]).inc();
        tracing::warn!(
            client = %ban.address,
            route,
            jail = %ban.route,
            "client banned: {}",
            crate::policy::ban::reason(rule)
        );
    }
}

/// The strike of a head hyper refused before the pipeline ran (listener/error_heads.rs), under
/// `[ban]`'s rule. Counted in a task of its own: the refusal is written from inside a socket
/// write, which cannot wait for a shared store.
pub(crate) fn strike_refused_head(
    snapshot: &Arc<Snapshot>,
    metrics: &Arc<Metrics>,
    client: IpAddr,
    status: u16,
) {
    let Some(rule) = snapshot.bans.default_rule.clone() else {
        return;
    };
    if !rule.counts(status) || is_trusted(client, &snapshot.client.trusted_proxies) {
        return;
    }
    let (snapshot, metrics) = (snapshot.clone(), metrics.clone());
    tokio::spawn(async move {
        let bans = &snapshot.bans;
        if let Some(ban) = bans
            .jail
            .strike(client, status, &rule, &bans.allow, NO_ROUTE)
            .await
        {
            metrics.bans.with_label_values(&[NO_ROUTE]).inc();
            tracing::warn!(client = %ban.address, route = NO_ROUTE, jail = %ban.route,
                "client banned: {}", crate::policy::ban::reason(&rule));
        }
    });
}

/// What the pipeline learned on the way to the action: the response's header policy, the
/// metric labels and the access log's fields.
#[derive(Default)]
struct Routed<'s> {
    /// The validated host name, once known.
    host: Option<String>,
    /// `None` for requests refused before a route was found.
    route: Option<&'s Route>,
    /// The normalized path, when it is not the path as sent (for the access log).
    normalized_path: Option<String>,
}

impl<'s> Routed<'s> {
    fn host(host: RequestHost) -> Self {
        Routed {
            host: Some(host.name),
            route: None,
            normalized_path: None,
        }
    }

    fn with_path(mut self, forms: &path::Forms<'_>) -> Self {
        if let std::borrow::Cow::Owned(forwarded) = &forms.forwarded {
            self.normalized_path = Some(forwarded.clone());
        }
        self
    }

    /// Responses of a route carry its own header policy, the others `[headers]`.
    fn header_policy(&self, snapshot: &'s Snapshot) -> &'s HeaderPolicy {
        self.route
            .map_or(&snapshot.default_headers, |route| &route.headers)
    }
}

// Not an `async fn`: see `handle`.
#[allow(clippy::manual_async_fn)]
fn route_and_act<'s: 'a, 'a>(
    request: Request<Incoming>,
    head: &'a HeadFacts,
    connection: &'a Connection,
    snapshot: &'s Snapshot,
    request_id: &'a HeaderValue,
    client: IpAddr,
    nonce: Option<&'a Nonce>,
) -> impl Future<Output = (Result<Response<ResponseBody>, ProxyError>, Routed<'s>)> + 'a {
    async move {
        // 2. Framing and request-target checks, before anything reads the request: what could be
        //    read two ways by two parsers is refused here. hyper has already removed the
        //    Content-Length of a CL+TE head and a repeated one; the connection's bytes still tell
        //    (asked for every request, to keep count; an unsupported coding still gets its 501).
        let framing = connection
            .framing
            .as_ref()
            .map_or(Ok(()), |framing| framing.check_next_request());
        if let Err(err) = check_head(&request, head, snapshot.client.max_header_bytes) {
            return (Err(err), Routed::default());
        }
        if let Err(ambiguity) = framing {
            return (
                Err(ProxyError::BadRequest(ambiguity.reason())),
                Routed::default(),
            );
        }

        // 3. The host the client addressed, validated: it selects routes and is echoed upstream.
        let host = match request_host(&request) {
            Ok(host) => host,
            Err(err) => return (Err(err), Routed::default()),
        };

        // 4. A connection opened for one certificate's names must not be used for another's
        //    (HTTP/2 connection reuse, SNI/Host mismatch): 421 makes the client reconnect.
        if let Some(sni) = connection.sni.as_deref() {
            if snapshot.tls.cert_for(Some(sni)) != snapshot.tls.cert_for(Some(&host.name)) {
                return (Err(ProxyError::MisdirectedRequest), Routed::host(host));
            }
        }

        // 4b. CSP violation reports (`csp_reports = true`) are the proxy's own, on every host:
        //     answered here, before routing, so no route (and no upstream) ever sees them.
        if let Some(limiter) = snapshot
            .csp_reports
            .as_ref()
            .filter(|_| request.uri().path() == csp::REPORT_PATH)
        {
            // Boxed: a rare path whose future would otherwise enlarge every request's.
            let result = Box::pin(crate::csp_report::serve_report(
                request,
                snapshot,
                limiter,
                &host.name,
                &connection.metrics,
            ))
            .await;
            return (result, Routed::host(host));
        }

        // 5. Route on the normalized path so encodings and dot-segments cannot dodge a route's rules;
        //    the upstream gets that same path (path.rs), so the app cannot resolve it otherwise.
        // The request moves into the action; its target stays here for the two path forms.
        let target = request.uri().clone();
        let forms = match path::forms(target.path()) {
            Ok(forms) => forms,
            Err(_) => {
                return (
                    Err(ProxyError::BadRequest("invalid path")),
                    Routed::host(host),
                )
            }
        };
        let normalized = forms.routed.as_ref();
        let route = match lookup_route(snapshot, &host.name, normalized, &request) {
            Lookup::Found(route) => route,
            // `/admin` for a route `/admin/`: the client is sent to the route, as nginx does, so
            // an app that ignores the trailing slash never serves the route's path around its rules.
            Lookup::AddSlash => {
                let response = actions::add_slash_redirect(
                    request.method(),
                    &forms.forwarded,
                    request.uri().query(),
                );
                return (Ok(response), Routed::host(host).with_path(&forms));
            }
            Lookup::MethodNotAllowed(allow) => {
                return (
                    Err(ProxyError::MethodNotAllowed { allow }),
                    Routed::host(host).with_path(&forms),
                )
            }
            Lookup::NotFound => {
                return (
                    Err(ProxyError::NotFound),
                    Routed::host(host).with_path(&forms),
                )
            }
        };
        // From here on, responses carry the route's own header policy.
        let result = act(
            request, connection, snapshot, route, &host, &forms, request_id, client, nonce,
        )
        .await;
        let routed = Routed {
            host: Some(host.name),
            route: Some(route),
            normalized_path: None,
        }
        .with_path(&forms);
        (result, routed)
    }
}

// Not an `async fn`: see `handle`.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn act<'a>(
    mut request: Request<Incoming>,
    connection: &'a Connection,
    snapshot: &'a Snapshot,
    route: &'a Route,
    host: &'a RequestHost,
    path: &'a path::Forms<'a>,
    request_id: &'a HeaderValue,
    client: IpAddr,
    nonce: Option<&'a Nonce>,
) -> impl Future<Output = Result<Response<ResponseBody>, ProxyError>> + 'a {
    async move {
        let normalized_path = path.routed.as_ref();
        let peer = connection.peer.ip();
        let trusted = &snapshot.client.trusted_proxies;

        // 6. IP rules before any other work is done for a client that is not allowed here.
        if !route.ip_rules.is_empty() && !route.ip_rules.permits(client) {
            return Err(ProxyError::Forbidden);
        }

        // 6b. A CORS preflight is answered by the proxy and never forwarded: after the IP rules (a
        //     refused client learns nothing of the route's CORS policy), before the body limit and
        //     the action (a preflight has no body, and the upstream must not see it).
        if let Some(policy) = &route.cors {
            if cors::is_preflight(request.method(), request.headers()) {
                return policy.preflight(request.headers());
            }
        }
        // The actual request's Origin, kept for CORS on the response (the request moves upstream).
        let origin = route
            .cors
            .as_ref()
            .and_then(|_| cors::request_origin(request.headers()).cloned());

        // 6c. The rate limit: after the IP rules (a refused client costs nothing, and requests they
        //     refuse anyway must not use up a quota) and the CORS preflight (answered here at no
        //     cost; counting it would halve a browser's quota), before the body limit and the action.
        //     A 429 is the proxy's own error, with Retry-After, RateLimit-* and the security headers.
        let allowed = match &route.rate_limit {
            Some(limiter) => {
                let key = limiter.key(request.headers(), client);
                match limiter.check_counted(&key, Some(&connection.metrics)).await {
                    decision if decision.is_allowed() => Some(decision),
                    decision => return Err(ProxyError::RateLimited { decision }),
                }
            }
            None => None,
        };

        // 6d. Authentication: after the IP rules, the preflight and the rate limit (a refused or
        //     over-quota client costs no password hash and no auth-server round trip), before the
        //     body limit and the action. A refusal is an ordinary response of the route (401 from
        //     basic_auth, the auth server's own answer), so a status-based jail counts it.
        if let Some(auth) = &route.auth {
            // Boxed: the auth server's exchange is a large future, awaited on auth routes only.
            if let Some(refused) = Box::pin(authenticate(
                auth,
                &mut request,
                connection,
                snapshot,
                route,
                host,
                path,
                client,
            ))
            .await
            {
                return refused;
            }
        }

        // 7. A declared body over the limit is refused before any upstream connection is made.
        if let Some(len) = declared_length(request.headers()).filter(|len| *len > route.max_body) {
            if request.version() == Version::HTTP_2 {
                discard_h2_body(request.into_body(), len, snapshot.client.body_timeout);
            }
            return Err(ProxyError::PayloadTooLarge);
        }

        // 8. The route's action.
        let mut response = match &route.action {
            Action::Proxy(upstream) => {
                let path_and_query = forward_target(route, &request, path)?;
                // The nonce of the response's CSP, for the app's own script tags; a client's copy
                // never reaches the app.
                let headers = request.headers_mut();
                headers.remove(&csp::X_CSP_NONCE);
                if let Some(value) = nonce
                    .filter(|_| route.headers.needs_nonce())
                    .and_then(Nonce::header_value)
                {
                    headers.insert(&csp::X_CSP_NONCE, value.clone());
                }
                let ctx = ForwardContext {
                    path_and_query: path_and_query.as_deref(),
                    client: ClientFacts {
                        request_id,
                        peer,
                        peer_header: &connection.peer_header,
                        peer_trusted: is_trusted(peer, trusted),
                        client_ip: client,
                        host: &host.value,
                    },
                    max_body: route.max_body,
                    body_timeout: snapshot.client.body_timeout,
                    response_timeout: route.response_timeout,
                    count_body_failures: Some((&connection.metrics, upstream)),
                };
                // Compression is chosen from the request's Accept-Encoding and method, read
                // before the request moves upstream.
                let compression = route.compress.then(|| Negotiation::of(&request));
                let sent = Instant::now();
                // Boxed: the upstream exchange's state is kilobytes, and inline it would make every
                // enclosing future (and each copy of it as it is built and moved) that much larger;
                // callgrind counts the copies above the one allocation.
                let forwarded = Box::pin(forward(upstream, request, &ctx)).await;
                // Upstream latency: request sent → response head, for exchanges that got one.
                if forwarded.is_ok() {
                    upstream.observe_duration(&connection.metrics, sent.elapsed().as_secs_f64());
                }
                // The app's Set-Cookie headers are hardened ([cookies]); the proxy sets no cookies.
                forwarded.map(|mut response| {
                    snapshot.cookies.apply(response.headers_mut());
                    match &compression {
                        Some(compression) => compression.apply(response),
                        None => response,
                    }
                })
            }
            Action::Redirect { to, status } => {
                let rest = normalized_path
                    .strip_prefix(route.prefix.as_str())
                    .unwrap_or("");
                let input = RedirectInput {
                    host: &host.name,
                    path: normalized_path,
                    rest,
                    query: request.uri().query(),
                };
                let location = to
                    .render(&input)
                    .ok_or(ProxyError::BadRequest("redirect target not representable"))?;
                Ok(redirect_response(*status, location))
            }
            Action::Respond(respond) => Ok(respond.response()),
            Action::Static(files) => files.serve(&request, normalized_path, &route.prefix).await,
        }?;
        // On a route with `cors` the proxy owns CORS: its headers are set (or the upstream's
        // stripped) on the route's answer. The proxy's own errors carry none.
        if let Some(policy) = &route.cors {
            policy.apply(origin.as_ref(), response.headers_mut());
        }
        // A limited route's answer tells the client its quota, replacing any upstream copy.
        if let Some(decision) = allowed {
            decision.write_headers(response.headers_mut());
        }
        Ok(response)
    }
}

/// A route's `basic_auth` or `forward_auth`. `None`: the request goes on (for `basic_auth`
/// without its `Authorization`, for `forward_auth` with the auth server's `copy_headers`);
/// otherwise the route's answer.
#[allow(clippy::too_many_arguments)]
async fn authenticate(
    auth: &Auth,
    request: &mut Request<Incoming>,
    connection: &Connection,
    snapshot: &Snapshot,
    route: &Route,
    host: &RequestHost,
    path: &path::Forms<'_>,
    client: IpAddr,
) -> Option<Result<Response<ResponseBody>, ProxyError>> {
    let count = |kind: &str, outcome: &str| {
        connection
            .metrics
            .auth
            .with_label_values(&[route.name.as_str(), kind, outcome])
            .inc();
    };
    match auth {
        Auth::Basic(basic) => match basic.check(request.headers_mut()).await {
            Ok(()) => {
                count("basic", "allowed");
                None
            }
            Err(Refusal::Unauthorized) => {
                count("basic", "denied");
                Some(Err(ProxyError::Unauthorized {
                    challenge: basic.challenge.clone(),
                }))
            }
            Err(Refusal::Busy) => {
                count("basic", "busy");
                Some(Err(ProxyError::AuthBusy))
            }
        },
        Auth::Forward(forward) => {
            forward.strip_copies(request.headers_mut());
            let mut uri = path.forwarded.clone().into_owned();
            if let Some(query) = request.uri().query() {
                uri.push('?');
                uri.push_str(query);
            }
            let subject = Subject {
                method: request.method(),
                uri: &uri,
                host: &host.value,
                client_ip: client,
                headers: request.headers(),
            };
            match forward.ask(&subject).await {
                Verdict::Allow(copied) => {
                    count("forward", "allowed");
                    let headers = request.headers_mut();
                    for (name, value) in copied {
                        headers.append(name, value);
                    }
                    None
                }
                Verdict::Deny(mut response) => {
                    count("forward", "denied");
                    snapshot.cookies.apply(response.headers_mut());
                    Some(Ok(*response))
                }
                Verdict::Failed(failure) => {
                    count("forward", failure.label());
                    tracing::warn!(route = %route.name, outcome = failure.label(), "forward_auth: the auth server failed; answering 503");
                    Some(Err(ProxyError::AuthUnavailable(failure.label())))
                }
            }
        }
    }
}

/// The target the upstream gets, when it is not the request's own: the normalized path (and
/// the query as sent). `%2F` and `%5C` are refused (400) on a route that forwards normalized
/// paths: one app splits paths on them and another does not, so no single view would hold.
fn forward_target(
    route: &Route,
    request: &Request<Incoming>,
    path: &path::Forms<'_>,
) -> Result<Option<String>, ProxyError> {
    if route.raw_path {
        return Ok(None);
    }
    let raw = request.uri().path();
    if path::has_encoded_separator(raw) {
        return Err(ProxyError::BadRequest(
            "encoded slash or backslash in the path",
        ));
    }
    if path.forwarded == raw {
        return Ok(None);
    }
    let mut target = path.forwarded.clone().into_owned();
    if let Some(query) = request.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    Ok(Some(target))
}

/// Host + path + method → route. A CORS preflight is routed as the request it announces, so
/// the route that will serve that request answers it (a route limited to `methods = ["POST"]`
/// still answers its preflights); when that route has no `cors`, the `OPTIONS` is routed as
/// itself and forwarded like any request.
fn lookup_route<'s, B>(
    snapshot: &'s Snapshot,
    host: &str,
    path: &str,
    request: &Request<B>,
) -> Lookup<'s, Route> {
    if let Some(method) = cors::preflight_method(request.method(), request.headers()) {
        if let Lookup::Found(route) = snapshot.router.lookup(host, path, &method) {
            if route.cors.is_some() {
                return Lookup::Found(route);
            }
        }
    }
    snapshot.router.lookup(host, path, request.method())
}

/// The most of a refused HTTP/2 upload read and dropped after the 413 (see
/// [`discard_h2_body`]).
const H2_DISCARD_CAP: u64 = 4 << 20;

/// A declared HTTP/2 body over the limit: its 413 goes out at once, and the upload is read and
/// dropped in the background, as nginx does, so that the client is not reset in the middle of
/// sending (curl 7.88 then reports `(92) Stream error in the HTTP/2 framing layer` instead of
/// the 413). Bounded: only a declared length of at most [`H2_DISCARD_CAP`] is read (a bigger
/// upload is reset at once, as before), and only while the client sends something every
/// `body_timeout`; then the body is dropped and h2 resets the stream if it is still open.
fn discard_h2_body(body: Incoming, declared: u64, body_timeout: std::time::Duration) {
    use http_body_util::BodyExt;
    if declared > H2_DISCARD_CAP {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        while read <= declared {
            match tokio::time::timeout(body_timeout, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |data| data.len() as u64);
                }
                _ => break,
            }
        }
    });
}
