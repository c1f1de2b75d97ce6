//! `forward_auth`: the request is first shown to an auth server (Authelia, Authentik,
//! oauth2-proxy, a small app of one's own), as nginx's `auth_request`, Traefik's and Caddy's
//! `forward_auth` do.
//!
//! The auth server gets a `GET` of its URL with the original request described in
//! `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto` and `-For`, plus the client's `Cookie`,
//! `Authorization`, `Accept` and `User-Agent`. A 2xx answer lets the request through with the
//! `copy_headers` of that answer (any copy the client sent removed first, so a client cannot
//! forge `Remote-User`); any other answer goes back to the client as the auth server wrote it
//! (status, headers, a bounded body). A timeout, a refused connection or an answer that cannot
//! be read is 503: never a pass.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ResponseBody;
use crate::upstream::headers::strip_hop_by_hop;

/// The most of an auth server's refusal body passed to the client.
pub const MAX_BODY: usize = 64 * 1024;

pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The client headers the auth server sees besides the `X-Forwarded-*` set.
const PASSED: [HeaderName; 4] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::ACCEPT,
    header::USER_AGENT,
];

/// A route's `forward_auth`, compiled.
#[derive(Debug)]
pub struct ForwardAuth {
    url: Uri,
    /// The auth server's `Host`.
    authority: HeaderValue,
    pub copy_headers: Vec<HeaderName>,
    pub timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// The request as the auth server is told about it.
pub struct Subject<'a> {
    pub method: &'a Method,
    /// The path and query the upstream would get.
    pub uri: &'a str,
    pub host: &'a HeaderValue,
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
}

/// What the auth server said.
pub enum Verdict {
    /// 2xx: these `copy_headers` (as many as it sent) go on the request.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Anything else: its answer, for the client.
    Deny(Box<Response<ResponseBody>>),
    /// No usable answer in time: 503.
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Unreachable,
    /// A malformed answer, or a body over [`MAX_BODY`].
    Error,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Error => "error",
        }
    }
}

impl ForwardAuth {
    /// `url` must be `http://host[:port]/path`; the names in `copy_headers` must be header names.
    pub fn new(
        url: &str,
        copy_headers: &[String],
        timeout: Duration,
    ) -> Result<ForwardAuth, String> {
        let parsed: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        if parsed.scheme_str() != Some("http") {
            return Err("only http:// auth URLs are supported (the auth server sits beside the proxy, on a private network)".into());
        }
        let Some(authority) = parsed.authority() else {
            return Err(format!("`{url}` has no host"));
        };
        let authority = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("`{url}` has an invalid host"))?;
        let mut names = Vec::with_capacity(copy_headers.len());
        for name in copy_headers {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` in copy_headers is not a header name"))?;
            if crate::upstream::headers::is_hop_by_hop(&parsed) || parsed == header::HOST {
                return Err(format!("`{name}` cannot be copied onto the request"));
            }
            names.push(parsed);
        }
        if timeout.is_zero() {
            return Err("the timeout must be more than 0s".into());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build(connector);
        Ok(ForwardAuth {
            url: parsed,
            authority,
            copy_headers: names,
            timeout,
            client,
        })
    }

    /// Removes the client's copies of `copy_headers` (always, whatever the auth server says).
    pub fn strip_copies(&self, headers: &mut HeaderMap) {
        for name in &self.copy_headers {
            headers.remove(name);
        }
    }

    /// Asks the auth server about `subject`.
    pub async fn ask(&self, subject: &Subject<'_>) -> Verdict {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.authority.clone());
        for name in &PASSED {
            for value in subject.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(method) = HeaderValue::from_str(subject.method.as_str()) {
            headers.insert(&X_FORWARDED_METHOD, method);
        }
        if let Ok(uri) = HeaderValue::from_str(subject.uri) {
            headers.insert(&X_FORWARDED_URI, uri);
        }
        headers.insert(&crate::header_names::X_FORWARDED_HOST, subject.host.clone());
        headers.insert(
            &crate::header_names::X_FORWARDED_PROTO,
            HeaderValue::from_static("https"),
        );
        if let Ok(ip) = HeaderValue::from_str(&subject.client_ip.to_string()) {
            headers.insert(&crate::header_names::X_FORWARDED_FOR, ip.clone());
            headers.insert(&crate::header_names::X_REAL_IP, ip);
        }

        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                if err.is_connect() {
                    Failure::Unreachable
                } else {
                    Failure::Error
                }
            })?;
            let (parts, body) = response.into_parts();
            if parts.status.is_success() {
                // The body of a 2xx is not used: dropping it closes the connection rather
                // than reading an unbounded body.
                return Ok(Verdict::Allow(self.copied(&parts.headers)));
            }
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| Failure::Error)?
                .to_bytes();
            Ok(Verdict::Deny(Box::new(refusal(
                parts.status,
                parts.headers,
                body,
            ))))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(failure)) => Verdict::Failed(failure),
            Err(_) => Verdict::Failed(Failure::Timeout),
        }
    }

    fn copied(&self, answer: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for name in &self.copy_headers {
            for value in answer.get_all(name) {
                out.push((name.clone(), value.clone()));
            }
        }
        out
    }
}

/// The auth server's refusal as the client gets it: its status, its end-to-end headers (the
/// length recomputed from the body read), its body.
fn refusal(status: StatusCode, mut headers: HeaderMap, body: Bytes) -> Response<ResponseBody> {
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
