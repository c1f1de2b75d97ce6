//! Prometheus metrics (DESIGN §4), one registry per [`crate::Server`], served by the admin
//! listener. Labels are names from the config (route, upstream, server, certificate) or small
//! fixed sets (method, status, kind, result): never a raw path, host or client address, so the
//! number of series is bounded by the config, whatever clients send.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use http::Method;

mod route;
pub use route::RouteMetrics;

/// The route label of a request no route answered (400 before routing, 404, 421…).
pub const NO_ROUTE: &str = "-";

/// Seconds: 1 ms … 60 s, the range between a static file and a slow report.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `rampart_requests_total{route, method, status}`: every response of the https listener.
    pub requests: IntCounterVec,
    /// `rampart_request_duration_seconds{route}`: request received → response head sent.
    pub request_duration: HistogramVec,
    /// `rampart_upstream_duration_seconds{upstream}`: request sent → upstream response head.
    pub upstream_duration: HistogramVec,
    /// `rampart_upstream_errors_total{upstream, kind}`: kind is connect | timeout | protocol |
    /// body (the upstream's response body failed after its head) | no_healthy_server (503
    /// without an exchange).
    pub upstream_errors: IntCounterVec,
    /// `rampart_rate_limited_total{route}`: requests answered 429.
    pub rate_limited: IntCounterVec,
    /// `rampart_active_connections{listener}`: listener is https | http | admin.
    pub active_connections: IntGaugeVec,
    /// `rampart_tls_handshake_failures_total{reason}`: reason is error | timeout.
    pub tls_handshake_failures: IntCounterVec,
    /// `rampart_connections_refused_total{reason}`: connections closed at accept by a cap,
    /// reason is max_connections | max_connections_per_ip, or invalid_preface (an HTTP/2
    /// connection whose preface was wrong, refused with GOAWAY before any request).
    pub connections_refused: IntCounterVec,
    /// `rampart_client_timeouts_total{kind}`: body (a request body that sent nothing for
    /// `body_timeout`: 408) | send (a connection or HTTP/2 stream whose client read nothing
    /// for `send_timeout`: closed or reset).
    pub client_timeouts: IntCounterVec,
    /// `rampart_http2_resets_total{reason}`: HTTP/2 cut off by the proxy: rapid_reset (a
    /// connection closed: most of its requests were reset by the client) | send_timeout (a
    /// stream reset: its window stayed shut).
    pub http2_resets: IntCounterVec,
    /// `rampart_rate_limit_store_errors_total`: Redis exchanges of the rate limit that failed
    /// or took longer than `redis_timeout`.
    pub rate_limit_store_errors: prometheus::IntCounter,
    /// `rampart_rate_limit_store_fallbacks_total{fallback}`: decisions taken without Redis,
    /// by `on_store_error` (local | allow | deny).
    pub rate_limit_store_fallbacks: IntCounterVec,
    /// `rampart_config_reloads_total{result}`: result is success | failure.
    pub config_reloads: IntCounterVec,
    /// `rampart_config_last_reload_success_timestamp_seconds`: Unix time of the config in use.
    pub config_last_reload_success: IntGauge,
    /// `rampart_certificate_expiry_timestamp_seconds{certificate}`: notAfter of each configured
    /// certificate (label: "default" or the first host of a `[[tls.certificates]]` entry).
    pub certificate_expiry: IntGaugeVec,
    /// `rampart_upstream_server_healthy{upstream, server}`: 1 healthy, 0 ejected.
    pub upstream_server_healthy: IntGaugeVec,
    /// `rampart_listen_restart_required{key}`: 1 while the config's `listen.https`,
    /// `listen.http`, `listen.admin` or `listen.workers` differs from what is running.
    pub listen_restart_required: IntGaugeVec,
    /// `rampart_acme_orders_total{result}`: ACME orders placed, by result (valid | failed).
    pub acme_orders: IntCounterVec,
    /// `rampart_acme_renewal_failures_total{certificate}`: failed attempts to renew a
    /// certificate that is already served (the first issue's failures count in `acme_orders`).
    pub acme_renewal_failures: IntCounterVec,
    /// `rampart_bans_total{route}`: bans made, by the route whose response was the last
    /// strike.
    pub bans: IntCounterVec,
    /// `rampart_bans_active`: bans in force (set when /metrics is read).
    pub bans_active: IntGauge,
    /// `rampart_banned_refused_total{stage}`: banned clients refused, stage is accept (closed
    /// before TLS) | request (403).
    pub banned_refused: IntCounterVec,
    /// `rampart_proxy_protocol_refused_total{reason}`: connections closed for their PROXY
    /// protocol header, reason is missing | invalid | timeout (from a listed peer) | unlisted
    /// (a header from a peer not in `proxy_protocol_from`).
    pub proxy_protocol_refused: IntCounterVec,
    /// `rampart_auth_requests_total{route, kind, outcome}`: `basic_auth` and `forward_auth`
    /// decisions; kind is basic | forward, outcome is allowed | denied | busy (basic: too many
    /// checks waiting) | timeout | unreachable | error (forward: the auth server failed).
    pub auth: IntCounterVec,
    /// `rampart_csp_violations_total{route, directive}`: CSP violation reports received;
    /// route is the route that served the reporting page, directive one of a fixed set or
    /// `other`.
    pub csp_violations: IntCounterVec,
    /// The kept handles of the requests no route answered ([`NO_ROUTE`]); a route keeps its
    /// own ([`crate::snapshot::Route::metrics`]).
    pub no_route: RouteMetrics,
}

/// The listen keys a reload cannot apply (sockets are bound once).
pub const LISTEN_KEYS: [&str; 4] = [
    "listen.https",
    "listen.http",
    "listen.admin",
    "listen.workers",
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Metrics {
            requests: counter_vec(
                &registry,
                "rampart_requests_total",
                "Responses sent on the https listener, by route, method and status.",
                &["route", "method", "status"],
            ),
            request_duration: histogram_vec(
                &registry,
                "rampart_request_duration_seconds",
                "Time from request received to response head sent, by route.",
                &["route"],
            ),
            upstream_duration: histogram_vec(
                &registry,
                "rampart_upstream_duration_seconds",
                "Time from request sent upstream to the upstream's response head, by upstream.",
                &["upstream"],
            ),
            upstream_errors: counter_vec(
                &registry,
                "rampart_upstream_errors_total",
                "Failed upstream exchanges, by upstream and kind (connect, timeout, protocol, \
                 body, no_healthy_server).",
                &["upstream", "kind"],
            ),
            rate_limited: counter_vec(
                &registry,
                "rampart_rate_limited_total",
                "Requests refused with 429 by a route's rate limit.",
                &["route"],
            ),
            active_connections: gauge_vec(
                &registry,
                "rampart_active_connections",
                "Open client connections, by listener (https, http, admin).",
                &["listener"],
            ),
            tls_handshake_failures: counter_vec(
                &registry,
                "rampart_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out, by reason (error, timeout).",
                &["reason"],
            ),
            connections_refused: counter_vec(
                &registry,
                "rampart_connections_refused_total",
                "Connections refused before any request, by reason (max_connections, \
                 max_connections_per_ip, invalid_preface).",
                &["reason"],
            ),
            client_timeouts: counter_vec(
                &registry,
                "rampart_client_timeouts_total",
                "Clients cut off for a stalled transfer, by kind (body: request body, send: \
                 response not read).",
                &["kind"],
            ),
            http2_resets: counter_vec(
                &registry,
                "rampart_http2_resets_total",
                "HTTP/2 connections or streams cut off by the proxy, by reason (rapid_reset, \
                 send_timeout).",
                &["reason"],
            ),
            rate_limit_store_errors: counter(
                &registry,
                "rampart_rate_limit_store_errors_total",
                "Rate-limit exchanges with Redis that failed or timed out.",
            ),
            rate_limit_store_fallbacks: counter_vec(
                &registry,
                "rampart_rate_limit_store_fallbacks_total",
                "Rate-limit decisions taken without Redis, by on_store_error (local, allow, deny).",
                &["fallback"],
            ),
            config_reloads: counter_vec(
                &registry,
                "rampart_config_reloads_total",
                "Config reloads, by result (success, failure).",
                &["result"],
            ),
            config_last_reload_success: gauge(
                &registry,
                "rampart_config_last_reload_success_timestamp_seconds",
                "Unix time at which the running config was loaded.",
            ),
            certificate_expiry: gauge_vec(
                &registry,
                "rampart_certificate_expiry_timestamp_seconds",
                "Unix time at which each configured certificate expires (notAfter).",
                &["certificate"],
            ),
            upstream_server_healthy: gauge_vec(
                &registry,
                "rampart_upstream_server_healthy",
                "1 while an upstream server is healthy, 0 while it is ejected.",
                &["upstream", "server"],
            ),
            listen_restart_required: gauge_vec(
                &registry,
                "rampart_listen_restart_required",
                "1 while the config's listen address differs from the one bound: a restart \
                 applies it.",
                &["key"],
            ),
            acme_orders: counter_vec(
                &registry,
                "rampart_acme_orders_total",
                "ACME orders placed, by result (valid, failed).",
                &["result"],
            ),
            acme_renewal_failures: counter_vec(
                &registry,
                "rampart_acme_renewal_failures_total",
                "Failed attempts to renew an ACME certificate that is being served.",
                &["certificate"],
            ),
            bans: counter_vec(
                &registry,
                "rampart_bans_total",
                "Clients banned, by the route whose response was the last strike.",
                &["route"],
            ),
            bans_active: gauge(&registry, "rampart_bans_active", "Bans in force."),
            banned_refused: counter_vec(
                &registry,
                "rampart_banned_refused_total",
                "Banned clients refused, by stage (accept: closed before TLS; request: 403).",
                &["stage"],
            ),
            proxy_protocol_refused: counter_vec(
                &registry,
                "rampart_proxy_protocol_refused_total",
                "Connections closed for their PROXY protocol header, by reason (missing, \
                 invalid, timeout, unlisted).",
                &["reason"],
            ),
            auth: counter_vec(
                &registry,
                "rampart_auth_requests_total",
                "basic_auth and forward_auth decisions, by route, kind (basic, forward) and \
                 outcome (allowed, denied, busy, timeout, unreachable, error).",
                &["route", "kind", "outcome"],
            ),
            csp_violations: counter_vec(
                &registry,
                "rampart_csp_violations_total",
                "CSP violation reports received, by route of the reporting page and directive.",
                &["route", "directive"],
            ),
            no_route: RouteMetrics::new(),
            registry,
        };
        for reason in ["missing", "invalid", "timeout", "unlisted"] {
            metrics.proxy_protocol_refused.with_label_values(&[reason]);
        }
        for stage in ["accept", "request"] {
            metrics.banned_refused.with_label_values(&[stage]);
        }
        for key in LISTEN_KEYS {
            metrics.listen_restart_required.with_label_values(&[key]);
        }
        for result in ["success", "failure"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        for result in ["valid", "failed"] {
            metrics.acme_orders.with_label_values(&[result]);
        }
        for listener in ["https", "http", "admin"] {
            metrics.active_connections.with_label_values(&[listener]);
        }
        for reason in ["error", "timeout"] {
            metrics.tls_handshake_failures.with_label_values(&[reason]);
        }
        for reason in [
            "max_connections",
            "max_connections_per_ip",
            "invalid_preface",
        ] {
            metrics.connections_refused.with_label_values(&[reason]);
        }
        for kind in ["body", "send"] {
            metrics.client_timeouts.with_label_values(&[kind]);
        }
        for reason in ["rapid_reset", "send_timeout"] {
            metrics.http2_resets.with_label_values(&[reason]);
        }
        for fallback in ["local", "allow", "deny"] {
            metrics
                .rate_limit_store_fallbacks
                .with_label_values(&[fallback]);
        }
        metrics
    }

    /// Counts an open connection of `listener` until the guard is dropped.
    pub fn connection_opened(&self, listener: &str) -> ConnectionGuard {
        let gauge = self.active_connections.with_label_values(&[listener]);
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements `rampart_active_connections` when the connection's task ends, however it ends.
#[derive(Debug)]
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method label: the standard methods by name, anything else as `OTHER` (a client can
/// invent methods, and every new one would be a new series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(usize);

impl MethodLabel {
    const LABELS: [&'static str; 10] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "OTHER",
    ];
    /// How many labels there are ([`MethodLabel::index`] is below it).
    pub const COUNT: usize = Self::LABELS.len();

    pub fn of(method: &Method) -> Self {
        MethodLabel(match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            Method::TRACE => 7,
            Method::CONNECT => 8,
            _ => 9,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::LABELS.get(self.0).copied().unwrap_or("OTHER")
    }

    pub fn index(self) -> usize {
        self.0
    }
}

// The names and label sets below are constants of this file, so registering cannot fail except
// by a programming error that every test would show; a failure is logged, never a panic.

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|err| unreachable_metric(name, err));
    register(registry, name, Box::new(vec.clone()));
    vec
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|err| unreachable_metric(name, err));
    register(registry, name, Box::new(vec.clone()));
    vec
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let counter =
        prometheus::IntCounter::new(name, help).unwrap_or_else(|err| unreachable_metric(name, err));
    register(registry, name, Box::new(counter.clone()));
    counter
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).unwrap_or_else(|err| unreachable_metric(name, err));
    register(registry, name, Box::new(gauge.clone()));
    gauge
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, labels).unwrap_or_else(|err| unreachable_metric(name, err));
    register(registry, name, Box::new(vec.clone()));
    vec
}

fn register(registry: &Registry, name: &str, collector: Box<dyn prometheus::core::Collector>) {
    if let Err(err) = registry.register(collector) {
        tracing::error!(metric = name, error = %err, "cannot register metric");
    }
}

fn unreachable_metric<T>(name: &str, err: prometheus::Error) -> T {
    panic!("metric {name} is malformed: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_and_rendered() {
        let metrics = Metrics::new();
        metrics
            .requests
            .with_label_values(&["app", "GET", "200"])
            .inc();
        metrics
            .request_duration
            .with_label_values(&["app"])
            .observe(0.01);
        metrics
            .upstream_duration
            .with_label_values(&["app"])
            .observe(0.01);
        metrics
            .upstream_errors
            .with_label_values(&["app", "connect"])
            .inc();
        metrics.rate_limited.with_label_values(&["app"]).inc();
        metrics
            .auth
            .with_label_values(&["app", "basic", "denied"])
            .inc();
        metrics
            .csp_violations
            .with_label_values(&["app", "script-src-elem"])
            .inc();
        metrics
            .certificate_expiry
            .with_label_values(&["default"])
            .set(1);
        metrics
            .upstream_server_healthy
            .with_label_values(&["app", "http://127.0.0.1:1"])
            .set(1);
        let text = metrics.render();
        for name in [
            "rampart_requests_total",
            "rampart_request_duration_seconds",
            "rampart_upstream_duration_seconds",
            "rampart_upstream_errors_total",
            "rampart_rate_limited_total",
            "rampart_active_connections",
            "rampart_tls_handshake_failures_total",
            "rampart_connections_refused_total",
            "rampart_config_reloads_total",
            "rampart_config_last_reload_success_timestamp_seconds",
            "rampart_certificate_expiry_timestamp_seconds",
            "rampart_upstream_server_healthy",
            "rampart_listen_restart_required",
            "rampart_auth_requests_total",
            "rampart_csp_violations_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
    }

    #[test]
    fn invented_methods_share_one_label() {
        let method = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(MethodLabel::of(&method).as_str(), "OTHER");
        assert_eq!(MethodLabel::of(&Method::PATCH).as_str(), "PATCH");
        assert_eq!(MethodLabel::of(&Method::CONNECT).as_str(), "CONNECT");
        assert_eq!(MethodLabel::of(&method).index(), MethodLabel::COUNT - 1);
    }
}
