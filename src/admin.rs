//! The admin listener (DESIGN §4): `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1 on
//! `listen.admin`, a private address. The public listeners never answer these paths themselves:
//! there they are routed like any other path.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ResponseBody;
use crate::errors::plain_response;
use crate::listener::drain::Drain;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::Shared;

/// The Prometheus text exposition format, version 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn run(
    listener: TcpListener,
    shared: Shared,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = Drain::new();
    while let Some((tcp, peer)) = crate::listener::next_connection(&listener, &mut shutdown).await {
        let header_timeout = shared.load().client.header_timeout;
        let watcher = graceful.watcher();
        let open = metrics.connection_opened("admin");
        let (shared, metrics) = (shared.clone(), metrics.clone());
        tokio::spawn(async move {
            let _open = open;
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let snapshot = shared.load_full();
                let metrics = metrics.clone();
                async move {
                    let response = match bans_path(request.uri().path()) {
                        Some(target) => bans(request.method(), target, &snapshot).await,
                        None => answer(&request, &snapshot, &metrics),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // A scraper that opens a connection and sends nothing is closed like a slow client.
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %err, "admin connection ended with an error");
            }
        });
    }
    crate::listener::https::drain(graceful, &shared).await;
}

/// The admin endpoints: GET or HEAD only (405 otherwise), 404 for any other path.
fn answer<B>(
    request: &Request<B>,
    snapshot: &Snapshot,
    metrics: &Metrics,
) -> Response<ResponseBody> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return plain_response(StatusCode::NOT_FOUND);
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            metrics
                .bans_active
                .set(i64::try_from(snapshot.bans.jail.active()).unwrap_or(i64::MAX));
            text(StatusCode::OK, METRICS_CONTENT_TYPE, metrics.render())
        }
        // Answering at all is the proof of life: the runtime schedules and the listener accepts.
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        _ => readiness(snapshot, metrics),
    }
}

/// `/bans` → `Some("")`, `/bans/IP` → `Some("IP")`; other paths `None`.
fn bans_path(path: &str) -> Option<&str> {
    if path == "/bans" {
        return Some("");
    }
    path.strip_prefix("/bans/")
}

/// `GET /bans`: the bans in force, as JSON (address, reason, route, expires as Unix time,
/// expires_in seconds). `DELETE /bans/IP`: lifts the ban of IP (an IPv6 address's /64; the
/// `/64` may be written), here and in the shared store: 200, or 404 when it was not banned.
async fn bans(method: &Method, target: &str, snapshot: &Snapshot) -> Response<ResponseBody> {
    let allowed = if target.is_empty() {
        "GET, HEAD"
    } else {
        "DELETE"
    };
    let method_ok = if target.is_empty() {
        matches!(*method, Method::GET | Method::HEAD)
    } else {
        *method == Method::DELETE
    };
    if !method_ok {
        let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    let jail = &snapshot.bans.jail;
    if target.is_empty() {
        let body = crate::policy::ban::list_json(&jail.list());
        return text(StatusCode::OK, "application/json", body);
    }
    let decoded = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
    let address = decoded.strip_suffix("/64").unwrap_or(&decoded);
    let Ok(ip) = address.parse::<IpAddr>() else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "not an IP address\n".into(),
        );
    };
    if jail.remove(ip).await {
        let body = format!("unbanned {ip}\n");
        text(StatusCode::OK, "text/plain; charset=utf-8", body)
    } else {
        text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("{ip} is not banned\n"),
        )
    }
}

/// Ready when every upstream of the running config has a server that may be sent requests. The
/// body names the upstreams that have none (config names only; the admin port is private).
/// A listen address changed in the config but not yet bound (a restart applies it) is named on
/// a line of its own; it does not make the proxy unready, since the bound one still serves.
fn readiness(snapshot: &Snapshot, metrics: &Metrics) -> Response<ResponseBody> {
    let unready: Vec<&str> = snapshot
        .upstreams
        .iter()
        .filter(|upstream| !upstream.has_healthy_server())
        .map(|upstream| upstream.name.as_str())
        .collect();
    let restart: Vec<&str> = crate::metrics::LISTEN_KEYS
        .into_iter()
        .filter(|key| {
            metrics
                .listen_restart_required
                .with_label_values(&[key])
                .get()
                != 0
        })
        .collect();
    // Hosts whose first ACME certificate has not arrived: not ready (the others are served).
    let waiting = snapshot
        .tls
        .acme_registry()
        .map(|registry| registry.waiting_hosts())
        .unwrap_or_default();
    let mut body = if unready.is_empty() && waiting.is_empty() {
        "ready\n".to_string()
    } else {
        let mut body = String::new();
        if !unready.is_empty() {
            body.push_str(&format!(
                "not ready: no healthy server in {}\n",
                unready.join(", ")
            ));
        }
        if !waiting.is_empty() {
            body.push_str(&format!(
                "not ready: waiting for the first ACME certificate of {}\n",
                waiting.join(", ")
            ));
        }
        body
    };
    if !restart.is_empty() {
        body.push_str(&format!(
            "restart required to apply: {}\n",
            restart.join(", ")
        ));
    }
    let status = if unready.is_empty() && waiting.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "text/plain; charset=utf-8", body)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Health and metrics are live values: no cache between here and the scraper may keep them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `http://{admin}/healthz` for the `listen.admin` of the config at `path`, when the file parses
/// and has one. Only the syntax is read: the healthcheck needs no certificate, and a config
/// with other mistakes still names its admin address.
pub fn configured_healthz_url(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let source = crate::config::Source::new(path.display().to_string(), text);
    let (source, _) =
        crate::config::env::expand(&source, &crate::config::env::from_process).ok()?;
    let file = source.parse().ok()?;
    let admin: SocketAddr = file.listen.admin?.get_ref().parse().ok()?;
    Some(healthz_url(admin))
}

/// The URL a local client uses for a listen address: a wildcard address (`0.0.0.0`, `::`) is
/// reached on loopback.
pub fn healthz_url(admin: SocketAddr) -> String {
    let ip = match admin.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, admin.port()))
}

/// `rampart healthcheck`: `Ok` when `url` (plain http) answers 200 within `limit`; otherwise
/// one line saying why.
pub async fn probe(url: &str, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, probe_once(url)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url}: no answer within {limit:?}")),
    }
}

/// `rampart bans`: one request to the admin listener at `base` (`http://127.0.0.1:9090`);
/// the status and the body.
pub async fn admin_request(
    base: &str,
    method: Method,
    path: &str,
    limit: Duration,
) -> Result<(StatusCode, String), String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    match tokio::time::timeout(limit, request_once(&url, method)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url}: no answer within {limit:?}")),
    }
}

async fn request_once(url: &str, method: Method) -> Result<(StatusCode, String), String> {
    use http_body_util::BodyExt;
    let (mut sender, authority, target) = connect(url).await?;
    let request = Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|err| format!("{url}: {err}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("{url}: {err}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP/1 connection to a plain-http admin URL: the sender, the authority, the target.
async fn connect(
    url: &str,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        String,
        String,
    ),
    String,
> {
    let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: only http:// URLs (the admin listener speaks plain HTTP)"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .clone();
    // `[::1]` in a URL, `::1` for a socket.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|err| format!("{url}: cannot connect: {err}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    tokio::spawn(connection);
    let target = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    Ok((sender, authority.as_str().to_owned(), target))
}

/// `http://{admin}` for the `listen.admin` of the config at `path` (see
/// [`configured_healthz_url`]).
pub fn configured_admin_base(path: &Path) -> Option<String> {
    configured_healthz_url(path).map(|url| url.trim_end_matches("/healthz").to_owned())
}

/// The health probe: the same exchange as the admin commands', a 200 wanted.
async fn probe_once(url: &str) -> Result<(), String> {
    match request_once(url, Method::GET).await? {
        (StatusCode::OK, _) => Ok(()),
        (status, _) => Err(format!("{url} answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_admin_addresses_are_probed_on_loopback() {
        let url = |addr: &str| healthz_url(addr.parse().unwrap());
        assert_eq!(url("0.0.0.0:9090"), "http://127.0.0.1:9090/healthz");
        assert_eq!(url("[::]:9090"), "http://[::1]:9090/healthz");
        assert_eq!(url("10.1.2.3:9100"), "http://10.1.2.3:9100/healthz");
    }
}
