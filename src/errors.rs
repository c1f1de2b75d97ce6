//! The proxy's own error responses: the one place where a failure becomes a status code.
//!
//! Client-facing bodies are short and generic ("502 Bad Gateway"); the details (OS errors,
//! addresses, crate names) go to the log only. Security headers and the request id are added
//! by the pipeline like on every other response.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::header_names::X_REQUEST_ID;
use crate::metrics::Metrics;
use crate::policy::headers::HeaderPolicy;
use crate::policy::ratelimit::Decision;

/// Why the proxy answered a request itself instead of forwarding it.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// RFC 9112 §6.1: a transfer coding the proxy does not implement (only `chunked` is).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferCoding,
    #[error("forbidden by the route's IP rules")]
    Forbidden,
    #[error("CORS preflight refused: origin or method not allowed by the route's cors")]
    CorsRefused,
    #[error("no route matches")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: HeaderValue },
    #[error("request body larger than client.max_body")]
    PayloadTooLarge,
    #[error("request header section larger than client.max_header_bytes")]
    HeadersTooLarge,
    #[error("host is not served by the certificate this connection was opened for")]
    MisdirectedRequest,
    #[error("rate limit of the route exceeded")]
    RateLimited { decision: Decision },
    #[error("upstream `{upstream}` unreachable: {detail}")]
    UpstreamConnect { upstream: String, detail: String },
    #[error("upstream `{upstream}` failed: {detail}")]
    UpstreamProtocol { upstream: String, detail: String },
    #[error("upstream `{upstream}` did not answer within response_timeout")]
    UpstreamTimeout { upstream: String },
    #[error("upstream `{upstream}` has no healthy server")]
    NoHealthyUpstream { upstream: String },
    #[error("client body failed: {0}")]
    ClientBody(String),
    /// The client stopped sending its body: nothing for `client.body_timeout`, or it was still
    /// waited for when the upstream's `response_timeout` ran out.
    #[error("the client stopped sending its request body")]
    ClientBodyTimeout,
    #[error("no such file under the static route's root")]
    FileNotFound,
    #[error("If-Match or If-Unmodified-Since failed")]
    PreconditionFailed,
    #[error("no requested range overlaps the file")]
    RangeNotSatisfiable { length: u64 },
    #[error("reading a static file failed: {0}")]
    FileSystem(String),
    /// `basic_auth` refused the credentials (or there were none): 401 with the challenge.
    #[error("basic_auth: missing or wrong credentials")]
    Unauthorized { challenge: HeaderValue },
    /// Too many password checks already wait: 503, retry in a moment.
    #[error("basic_auth: too many password checks waiting")]
    AuthBusy,
    /// The `forward_auth` server did not answer usably in time: 503, never a pass.
    #[error("forward_auth: the auth server failed ({0})")]
    AuthUnavailable(&'static str),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Forbidden | ProxyError::CorsRefused => StatusCode::FORBIDDEN,
            ProxyError::NotFound | ProxyError::FileNotFound => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamProtocol { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NoHealthyUpstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ProxyError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ProxyError::FileSystem(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::AuthBusy | ProxyError::AuthUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The metric of its own a failure has, besides the response's count by status: the
    /// rate-limited count, or the upstream errors by kind.
    pub fn count(&self, metrics: &Metrics, route: &str) {
        let (upstream, kind) = match self {
            ProxyError::RateLimited { .. } => {
                metrics.rate_limited.with_label_values(&[route]).inc();
                return;
            }
            ProxyError::UpstreamConnect { upstream, .. } => (upstream, "connect"),
            ProxyError::UpstreamTimeout { upstream } => (upstream, "timeout"),
            ProxyError::UpstreamProtocol { upstream, .. } => (upstream, "protocol"),
            ProxyError::NoHealthyUpstream { upstream } => (upstream, "no_healthy_server"),
            ProxyError::ClientBodyTimeout => {
                metrics.client_timeouts.with_label_values(&["body"]).inc();
                return;
            }
            _ => return,
        };
        metrics
            .upstream_errors
            .with_label_values(&[upstream.as_str(), kind])
            .inc();
    }

    /// The client-facing response: status line text only, never `self`'s details.
    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let mut response = plain_response(status);
        // Retry-After and RateLimit-* (draft-ietf-httpapi-ratelimit-headers).
        if let ProxyError::RateLimited { decision } = &self {
            decision.write_headers(response.headers_mut());
        }
        // RFC 9110 §14.4: a 416 says how long the representation is.
        if let ProxyError::RangeNotSatisfiable { length } = &self {
            if let Ok(range) = HeaderValue::from_str(&format!("bytes */{length}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, range);
            }
        }
        if let ProxyError::AuthBusy = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ProxyError::MethodNotAllowed { allow } = self {
            response.headers_mut().insert(header::ALLOW, allow);
        } else if let ProxyError::Unauthorized { challenge } = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        // A body the client is still sending after an error must not be read as the next request.
        if status == StatusCode::PAYLOAD_TOO_LARGE
            || status == StatusCode::BAD_REQUEST
            || status == StatusCode::NOT_IMPLEMENTED
            || status == StatusCode::REQUEST_TIMEOUT
        {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The body of every error the proxy answers itself: `"404 Not Found\n"`.
fn error_text(status: StatusCode) -> String {
    format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
}

/// `"404 Not Found\n"` as text/plain.
pub fn plain_response(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from(error_text(status))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The proxy's answer to a request head hyper refused before the pipeline ran, as the HTTP/1.1
/// bytes that replace hyper's own bare head (`listener/error_heads.rs`): the same status, body
/// and `Connection: close` as [`ProxyError::into_response`], the default header policy, a request
/// id and hyper's `Date`. Written out here because hyper has already framed its own response.
/// Returns the bytes and the body's length.
pub fn refused_head_bytes(
    status: StatusCode,
    policy: &HeaderPolicy,
    request_id: &HeaderValue,
    date: &[u8],
) -> (Vec<u8>, usize) {
    let body = error_text(status);
    let mut response = plain_response(status);
    let headers = response.headers_mut();
    policy.apply(headers);
    headers.insert(&X_REQUEST_ID, request_id.clone());
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Error").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    (out, body.len())
}
