//! The access log (DESIGN §4): one JSON line per request on stdout, written when the response
//! is complete (its body fully sent, or abandoned), so `bytes` and `duration` are what happened.
//!
//! The line is a tracing event of target [`TARGET`]; `main` routes that target, and only it, to
//! stdout as JSON. No header is logged at all, so Authorization, Cookie and Set-Cookie values
//! cannot reach it, and the query string (where tokens travel) is dropped unless
//! `[log] log_query = true`.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, ResponseBody};
use crate::metrics::NO_ROUTE;
use crate::snapshot::{Action, Route};

/// The tracing target of access-log lines.
pub const TARGET: &str = "rampart::access";

/// nginx's "client closed request": the client went away before the response was ready.
const CLIENT_CLOSED: u16 = 499;

/// One request's access-log line in the making. It is written exactly once: when the response
/// body ends, or when the entry is dropped (body abandoned, or the request cancelled before a
/// response existed).
#[derive(Debug)]
pub struct AccessEntry {
    received: SystemTime,
    started: Instant,
    request_id: HeaderValue,
    client_ip: IpAddr,
    method: Method,
    /// The request target's path, with its query only under `log_query`.
    path: String,
    host: Option<String>,
    route: Option<String>,
    upstream: Option<String>,
    /// `None` until the response exists.
    status: Option<StatusCode>,
    bytes: u64,
    written: bool,
}

impl AccessEntry {
    /// Starts the entry of `request`, before anything consumes it. `started` is when the
    /// pipeline took the request (the `duration` origin).
    pub fn start<B>(
        request: &Request<B>,
        request_id: &HeaderValue,
        client_ip: IpAddr,
        log_query: bool,
        started: Instant,
    ) -> Self {
        let uri = request.uri();
        let path = match (log_query, uri.path_and_query()) {
            (true, Some(path_and_query)) => path_and_query.as_str(),
            _ => uri.path(),
        };
        AccessEntry {
            received: SystemTime::now(),
            started,
            request_id: request_id.clone(),
            client_ip,
            method: request.method().clone(),
            path: path.to_owned(),
            host: None,
            route: None,
            upstream: None,
            status: None,
            bytes: 0,
            written: false,
        }
    }

    /// What routing found: the validated host name, and the route (with its upstream).
    pub fn routed(&mut self, host: Option<&str>, route: Option<&Route>) {
        self.host = host.map(str::to_owned);
        if let Some(route) = route {
            self.route = Some(route.name.clone());
            if let Action::Proxy(upstream) = &route.action {
                self.upstream = Some(upstream.name.clone());
            }
        }
    }

    /// The path the route matched and the upstream got, in place of the one sent (`/a/./b/..`
    /// is logged `/a/`); the query, when logged, stays.
    pub fn normalized_path(&mut self, path: &str) {
        let query = self.path.find('?').map(|at| self.path[at..].to_owned());
        self.path = path.to_owned();
        if let Some(query) = query {
            self.path.push_str(&query);
        }
    }

    /// Hands the entry to the response: the line is written once its body is done.
    pub fn respond(mut self, response: Response<ResponseBody>) -> Response<ResponseBody> {
        self.status = Some(response.status());
        let (parts, body) = response.into_parts();
        let body = ResponseBody::boxed(LoggedBody {
            inner: body,
            entry: self,
        });
        Response::from_parts(parts, body)
    }

    fn write(&mut self) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let status = self.status.map_or(CLIENT_CLOSED, |s| s.as_u16());
        tracing::info!(
            target: TARGET,
            time = %humantime::format_rfc3339_millis(self.received),
            request_id = self.request_id.to_str().unwrap_or("-"),
            client_ip = %self.client_ip,
            method = self.method.as_str(),
            host = self.host.as_deref().unwrap_or("-"),
            path = self.path.as_str(),
            status,
            bytes = self.bytes,
            duration = self.started.elapsed().as_secs_f64(),
            route = self.route.as_deref().unwrap_or(NO_ROUTE),
            upstream = self.upstream.as_deref().unwrap_or("-"),
        );
    }
}

/// The line of a request hyper refused before the pipeline saw it (a head it could not parse):
/// nothing of the request is known but the client, so method, host and path are `-`.
pub fn refused_head(request_id: &HeaderValue, client_ip: IpAddr, status: StatusCode, bytes: usize) {
    tracing::info!(
        target: TARGET,
        time = %humantime::format_rfc3339_millis(SystemTime::now()),
        request_id = request_id.to_str().unwrap_or("-"),
        client_ip = %client_ip,
        method = "-",
        host = "-",
        path = "-",
        status = status.as_u16(),
        bytes = bytes as u64,
        duration = 0.0,
        route = NO_ROUTE,
        upstream = "-",
    );
}

impl Drop for AccessEntry {
    fn drop(&mut self) {
        self.write();
    }
}

pin_project_lite::pin_project! {
    /// The response body, counted on its way to the client; the end of the stream (or dropping
    /// the body) writes the line.
    struct LoggedBody {
        #[pin]
        inner: ResponseBody,
        entry: AccessEntry,
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.entry.bytes += data.len() as u64;
                }
            }
            // The end, or a failed stream (the client gets a truncated body): either way done.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.entry.write(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64, millis: u64) -> String {
        humantime::format_rfc3339_millis(
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
        )
        .to_string()
    }

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400`: the leap day of a year divisible by 400.
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(951_868_799, 999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_709_251_199, 0), "2024-02-29T23:59:59.000Z");
        assert_eq!(at(1_735_689_600, 0), "2025-01-01T00:00:00.000Z");
        assert_eq!(at(4_107_542_400, 123), "2100-03-01T00:00:00.123Z");
    }

    #[test]
    fn query_is_kept_only_under_log_query() {
        let request = Request::get("https://example.com/a/b?token=s3cret")
            .body(())
            .unwrap();
        let id = HeaderValue::from_static("id");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut dropped = AccessEntry::start(&request, &id, ip, false, Instant::now());
        let mut kept = AccessEntry::start(&request, &id, ip, true, Instant::now());
        assert_eq!(dropped.path, "/a/b");
        assert_eq!(kept.path, "/a/b?token=s3cret");
        // Not the point of this test: keep the unit test output free of log lines.
        dropped.written = true;
        kept.written = true;
    }
}
