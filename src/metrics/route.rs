//! The handles of a route's per-request series, looked up once instead of per request.
//!
//! `with_label_values` hashes the label strings and takes a lock on the metric's map at every
//! call. A route keeps the handles it used (clones of the registry's own series, so counting
//! through them is counting in the registry) and then pays one atomic load per response.
//! They are filled on the route's first response with those labels, not when the snapshot is
//! built: a series still appears only once it has counted something. A reload builds new
//! routes with empty tables; the same labels find the same series, which keeps counting. (So
//! these metrics must never be `reset()`: a kept handle would count in a series no longer
//! exported.)
//!
//! A snapshot is served by one server ([`crate::Server::start`] and
//! [`crate::Reloader::apply`] take it by value), so its handles belong to that server's
//! [`Metrics`].

use std::sync::OnceLock;

use http::StatusCode;
use prometheus::{Histogram, IntCounter};

use super::{MethodLabel, Metrics};

/// The statuses whose `rampart_requests_total` handle is kept, sorted; any other status is
/// looked up at each response (its series is the same either way).
const STATUSES: [u16; 24] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 414, 429,
    431, 500, 502, 503, 504,
];

/// `rampart_requests_total{route, method, status}` and `rampart_request_duration_seconds{route}`
/// of one route (or of the requests no route answered: [`Metrics::no_route`]).
#[derive(Clone)]
pub struct RouteMetrics {
    duration: OnceLock<Histogram>,
    /// One cell per method label and kept status: `method * STATUSES.len() + status`.
    requests: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    pub fn new() -> Self {
        RouteMetrics {
            duration: OnceLock::new(),
            requests: (0..MethodLabel::COUNT * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// Counts one response of `route` (the route's name, the label of every series here) and
    /// observes its duration.
    pub fn record(
        &self,
        metrics: &Metrics,
        route: &str,
        method: MethodLabel,
        status: StatusCode,
        seconds: f64,
    ) {
        let lookup = || {
            metrics
                .requests
                .with_label_values(&[route, method.as_str(), status.as_str()])
        };
        let cell = STATUSES
            .binary_search(&status.as_u16())
            .ok()
            .and_then(|index| self.requests.get(method.index() * STATUSES.len() + index));
        match cell {
            Some(cell) => cell.get_or_init(lookup).inc(),
            None => lookup().inc(),
        }
        self.duration
            .get_or_init(|| metrics.request_duration.with_label_values(&[route]))
            .observe(seconds);
    }
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    #[test]
    fn statuses_are_sorted_for_the_binary_search() {
        assert!(STATUSES.windows(2).all(|pair| pair[0] < pair[1]));
    }

    /// The kept handles and `with_label_values` count in the same series, a status without a
    /// kept handle included, and a second table (a reload's route) adds to the same counts.
    #[test]
    fn kept_handles_count_in_the_registry_series() {
        let metrics = Metrics::new();
        let route = RouteMetrics::new();
        let get = MethodLabel::of(&Method::GET);
        let brew = MethodLabel::of(&Method::from_bytes(b"BREW").unwrap());
        for _ in 0..3 {
            route.record(&metrics, "app", get, StatusCode::OK, 0.01);
        }
        route.record(&metrics, "app", brew, StatusCode::IM_A_TEAPOT, 0.01);
        route.record(&metrics, "app", brew, StatusCode::IM_A_TEAPOT, 0.01);
        let post = MethodLabel::of(&Method::POST);
        route.record(&metrics, "app", post, StatusCode::OK, 0.01);
        metrics
            .requests
            .with_label_values(&["app", "GET", "200"])
            .inc();
        metrics
            .request_duration
            .with_label_values(&["app"])
            .observe(0.01);
        let reloaded = RouteMetrics::new();
        reloaded.record(&metrics, "app", get, StatusCode::OK, 0.01);
        metrics.no_route.record(
            &metrics,
            crate::metrics::NO_ROUTE,
            get,
            StatusCode::NOT_FOUND,
            0.01,
        );

        let text = metrics.render();
        for line in [
            "rampart_requests_total{method=\"GET\",route=\"app\",status=\"200\"} 5\n",
            "rampart_requests_total{method=\"OTHER\",route=\"app\",status=\"418\"} 2\n",
            "rampart_requests_total{method=\"POST\",route=\"app\",status=\"200\"} 1\n",
            "rampart_requests_total{method=\"GET\",route=\"-\",status=\"404\"} 1\n",
            "rampart_request_duration_seconds_count{route=\"app\"} 8\n",
            "rampart_request_duration_seconds_count{route=\"-\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert_eq!(text.matches("rampart_requests_total{").count(), 4);
    }
}
