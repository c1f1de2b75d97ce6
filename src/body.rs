//! The response body sent to the client: the upstream's stream (with its in-flight count), or
//! one the proxy made itself. It streams; it is never collected whole. The request's body on its
//! way upstream is in `request_body.rs`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::upstream::conn::UpstreamBody;
use crate::upstream::health_state::InFlightRequest;
use crate::upstream::Upstream;

pub use crate::request_body::BoxError;

pin_project_lite::pin_project! {
    /// A response body: the upstream's stream, or one the proxy made itself.
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        // `in_flight` counts the exchange in its server's load until the body ends.
        // `failed` counts the body failing before its end (`upstream_errors{kind="body"}`).
        Upstream {
            #[pin] body: UpstreamBody,
            in_flight: Option<InFlightRequest>,
            failed: Option<BodyFailures>,
        },
        Full { #[pin] body: Full<Bytes> },
        // Bodies the proxy builds from other streams (files, compressed upstream bodies).
        Boxed { #[pin] body: UnsyncBoxBody<Bytes, BoxError> },
    }
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Full {
            body: Full::new(bytes.into()),
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// An upstream's body, counted as in flight on its server (least_conn) until it ends.
    pub fn upstream(
        body: UpstreamBody,
        in_flight: InFlightRequest,
        failed: Option<BodyFailures>,
    ) -> Self {
        ResponseBody::Upstream {
            body,
            in_flight: Some(in_flight),
            failed,
        }
    }

    /// Any `Send` body of bytes (a file stream, a compressing wrapper).
    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        ResponseBody::Boxed {
            body: UnsyncBoxBody::new(body.map_err(Into::into)),
        }
    }
}

/// Where an upstream body that fails is counted: `rampart_upstream_errors_total{upstream,
/// kind="body"}`. Two reference counts per response; the series is looked up only on failure.
pub struct BodyFailures {
    metrics: Arc<Metrics>,
    upstream: Arc<Upstream>,
}

impl BodyFailures {
    pub fn new(metrics: Arc<Metrics>, upstream: Arc<Upstream>) -> Self {
        BodyFailures { metrics, upstream }
    }

    fn count(self) {
        self.metrics
            .upstream_errors
            .with_label_values(&[self.upstream.name.as_str(), "body"])
            .inc();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ResponseBodyProj::Upstream {
                body,
                in_flight,
                failed,
            } => {
                let frame = body.poll_frame(cx);
                if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
                    in_flight.take();
                }
                if matches!(frame, Poll::Ready(Some(Err(_)))) {
                    if let Some(failed) = failed.take() {
                        failed.count();
                    }
                }
                frame.map_err(Into::into)
            }
            ResponseBodyProj::Full { body } => body.poll_frame(cx).map_err(|never| match never {}),
            ResponseBodyProj::Boxed { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { body, .. } => body.is_end_stream(),
            ResponseBody::Full { body } => body.is_end_stream(),
            ResponseBody::Boxed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { body, .. } => body.size_hint(),
            ResponseBody::Full { body } => body.size_hint(),
            ResponseBody::Boxed { body } => body.size_hint(),
        }
    }
}
