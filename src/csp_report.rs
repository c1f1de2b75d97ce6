//! The CSP violation report endpoint (`[headers] csp_reports = true`): the https listener
//! answers `POST /.well-known/rampart/csp-report` itself, on every host, before routing. The
//! formats, the directive set and the nonce are in `policy/csp.rs`.

use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::body::ResponseBody;
use crate::errors::ProxyError;
use crate::metrics::{Metrics, NO_ROUTE};
use crate::policy::csp::{directive_label, parse_reports, ReportFormat, MAX_REPORT_BYTES, TARGET};
use crate::router::Lookup;
use crate::snapshot::Snapshot;

/// The route that served the reporting page: its document URL's path routed like a `GET` on
/// the host the report came to (the endpoint is same-origin). `-` when none.
fn route_of<'s>(snapshot: &'s Snapshot, host: &str, document: &str) -> &'s str {
    let Ok(uri) = document.parse::<http::Uri>() else {
        return NO_ROUTE;
    };
    let Ok(forms) = crate::path::forms(uri.path()) else {
        return NO_ROUTE;
    };
    match snapshot
        .router
        .lookup(host, forms.routed.as_ref(), &Method::GET)
    {
        Lookup::Found(route) => route.name.as_str(),
        _ => NO_ROUTE,
    }
}

/// Answers `POST /.well-known/rampart/csp-report`: 204 for a report taken, 405 / 415 / 413 /
/// 429 / 400 otherwise. The request never reaches an upstream.
pub async fn serve_report(
    request: Request<Incoming>,
    snapshot: &Snapshot,
    limiter: &governor::DefaultDirectRateLimiter,
    host: &str,
    metrics: &Metrics,
) -> Result<Response<ResponseBody>, ProxyError> {
    if request.method() != Method::POST {
        return Err(ProxyError::MethodNotAllowed {
            allow: HeaderValue::from_static("POST"),
        });
    }
    let Some(format) = ReportFormat::of(request.headers().get(http::header::CONTENT_TYPE)) else {
        return Ok(status_only(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    };
    if crate::request_checks::declared_length(request.headers())
        .is_some_and(|len| len > MAX_REPORT_BYTES as u64)
    {
        return Err(ProxyError::PayloadTooLarge);
    }
    if limiter.check().is_err() {
        return Ok(status_only(StatusCode::TOO_MANY_REQUESTS));
    }
    let body = Limited::new(request.into_body(), MAX_REPORT_BYTES).collect();
    let body = match tokio::time::timeout(snapshot.client.body_timeout, body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ProxyError::PayloadTooLarge)
        }
        Ok(Err(_)) => return Err(ProxyError::ClientBody("CSP report body".into())),
        Err(_) => return Err(ProxyError::ClientBodyTimeout),
    };
    let Some(violations) = parse_reports(format, &body) else {
        return Err(ProxyError::BadRequest("not a CSP violation report"));
    };
    for violation in &violations {
        let route = route_of(snapshot, host, &violation.document);
        let directive = directive_label(&violation.directive);
        metrics
            .csp_violations
            .with_label_values(&[route, directive])
            .inc();
        tracing::info!(
            target: TARGET,
            time = %humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            event = "csp_violation",
            route,
            document = violation.document.as_str(),
            directive = violation.directive.as_str(),
            blocked = violation.blocked.as_str(),
            disposition = violation.disposition.as_str(),
        );
    }
    Ok(status_only(StatusCode::NO_CONTENT))
}

fn status_only(status: StatusCode) -> Response<ResponseBody> {
    if status == StatusCode::NO_CONTENT {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = status;
        return response;
    }
    crate::errors::plain_response(status)
}
