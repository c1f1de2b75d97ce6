//! Upstream server health: the state the balancer reads (healthy, in-flight requests), passive
//! ejection after consecutive failed requests, and the active checks (one task per server).
//!
//! A server starts healthy. It is ejected by `health_check.unhealthy` consecutive failed checks,
//! or by `passive_failures` consecutive failed requests (connect failure, response timeout,
//! malformed response). It comes back after `health_check.healthy` consecutive good checks; an
//! upstream without `health_check` sends one request to it as a probe once [`COOL_DOWN`] has
//! passed since the last failure (nginx's `fail_timeout`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use prometheus::IntGaugeVec;

use crate::body::RequestBody;
use crate::metrics::Metrics;
use crate::upstream::pool::{Upstream, UpstreamServer};

/// How long a passively ejected server of an upstream without `health_check` rests before one
/// request is sent to it as a probe.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

/// A health check answer is read up to this many bytes (then the connection is dropped rather
/// than reused): the status is all that counts.
const CHECK_BODY_LIMIT: usize = 64 * 1024;

static CHECK_USER_AGENT: HeaderValue = HeaderValue::from_static("rampart-health-check");

/// `health_check = { path, interval, timeout, healthy, unhealthy }`, validated.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive good checks that bring an unhealthy server back.
    pub healthy: u32,
    /// Consecutive failed checks that eject a healthy server.
    pub unhealthy: u32,
}

/// The health of one server (`upstream` name + server string). Shared by every snapshot that
/// has that server, so a reload neither resurrects a dead server nor forgets the requests in
/// flight.
#[derive(Debug)]
pub struct ServerHealth {
    upstream: String,
    server: String,
    /// Origin of `ejected_at`, which is kept as an integer so reads stay lock-free.
    epoch: Instant,
    healthy: AtomicBool,
    /// Consecutive failed requests (passive).
    request_failures: AtomicU32,
    /// Consecutive results of the active check.
    check_successes: AtomicU32,
    check_failures: AtomicU32,
    /// Milliseconds after `epoch` of the last failure while unhealthy (starts the cool-down).
    ejected_at: AtomicU64,
    /// A probe request is on its way to this ejected server.
    probing: AtomicBool,
    in_flight: AtomicUsize,
    /// The generation of the active check task allowed to run; older tasks stop.
    checker: AtomicU64,
    /// The server is in no running snapshot any more: it writes no metric.
    retired: AtomicBool,
    gauge: OnceLock<IntGaugeVec>,
}

impl ServerHealth {
    pub fn new(upstream: &str, server: &str) -> Self {
        ServerHealth {
            upstream: upstream.to_owned(),
            server: server.to_owned(),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
            request_failures: AtomicU32::new(0),
            check_successes: AtomicU32::new(0),
            check_failures: AtomicU32::new(0),
            ejected_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            checker: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            gauge: OnceLock::new(),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Requests sent to this server whose response has not ended yet (least_conn's measure).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Ejected, and rested for [`COOL_DOWN`] since its last failure: may be tried again.
    pub fn cooled_down(&self, now: Instant) -> bool {
        !self.is_healthy()
            && self.millis(now) >= self.ejected_at.load(Ordering::Acquire) + millis(COOL_DOWN)
    }

    /// Claims the one probe request of a cooled-down server (false when another request has it).
    pub fn try_start_probe(&self, now: Instant) -> bool {
        self.cooled_down(now)
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The server answered a request (any status: a 500 is the app's answer, not a failure to
    /// reach it). Without active checks, that brings an ejected server back (the probe).
    pub fn request_succeeded(&self, active_checks: bool) {
        self.request_failures.store(0, Ordering::Relaxed);
        if !active_checks && !self.is_healthy() {
            self.mark_healthy("a probe request succeeded");
        }
    }

    /// A request failed to get an answer. `threshold` consecutive failures eject the server
    /// (0: never). A failure while ejected starts the cool-down again.
    pub fn request_failed(&self, threshold: u32, now: Instant) {
        if !self.is_healthy() {
            self.ejected_at.store(self.millis(now), Ordering::Release);
            return;
        }
        if threshold == 0 {
            return;
        }
        let failures = self.request_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= threshold {
            self.eject(now, &format!("{failures} consecutive failed requests"));
        }
    }

    /// One active check's result.
    pub fn check_result(
        &self,
        outcome: Result<StatusCode, String>,
        check: &HealthCheck,
        now: Instant,
    ) {
        match outcome {
            Ok(status) if status.is_success() || status.is_redirection() => {
                self.check_failures.store(0, Ordering::Relaxed);
                // One writer (the server's check task): load + store cannot lose counts.
                let successes = self
                    .check_successes
                    .load(Ordering::Relaxed)
                    .saturating_add(1);
                self.check_successes.store(successes, Ordering::Relaxed);
                if !self.is_healthy() && successes >= check.healthy {
                    self.mark_healthy(&format!("{successes} consecutive good health checks"));
                }
            }
            outcome => {
                self.check_successes.store(0, Ordering::Relaxed);
                let failures = self
                    .check_failures
                    .load(Ordering::Relaxed)
                    .saturating_add(1);
                self.check_failures.store(failures, Ordering::Relaxed);
                let why = match outcome {
                    Ok(status) => format!("status {}", status.as_u16()),
                    Err(err) => err,
                };
                tracing::debug!(upstream = %self.upstream, server = %self.server, result = %why, "health check failed");
                if self.is_healthy() && failures >= check.unhealthy {
                    self.eject(
                        now,
                        &format!("{failures} consecutive failed health checks, last: {why}"),
                    );
                }
            }
        }
    }

    fn eject(&self, now: Instant, reason: &str) {
        self.ejected_at.store(self.millis(now), Ordering::Release);
        // Coming back takes `healthy` fresh good checks, counted from now.
        self.check_successes.store(0, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(upstream = %self.upstream, server = %self.server, reason, "upstream server ejected");
            self.publish();
        }
    }

    fn mark_healthy(&self, reason: &str) {
        self.request_failures.store(0, Ordering::Relaxed);
        self.check_failures.store(0, Ordering::Relaxed);
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(upstream = %self.upstream, server = %self.server, reason, "upstream server healthy again");
            self.publish();
        }
    }

    /// `rampart_upstream_server_healthy{upstream, server}` = the current state.
    fn publish(&self) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        if let Some(gauge) = self.gauge.get() {
            gauge
                .with_label_values(&[self.upstream.as_str(), self.server.as_str()])
                .set(i64::from(self.is_healthy()));
        }
    }

    /// Starts counting a request to this server; the count ends when the guard is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>, probe: bool) -> InFlightRequest {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightRequest {
            health: self.clone(),
            probe,
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One request on its way to a server, counted in its in-flight requests until dropped: with
/// the upstream response body (so a streamed download counts until its last byte), with a
/// WebSocket tunnel, or with the error.
#[derive(Debug)]
pub struct InFlightRequest {
    health: Arc<ServerHealth>,
    probe: bool,
}

impl InFlightRequest {
    pub fn health(&self) -> &ServerHealth {
        &self.health
    }
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            // Whatever came of it (even a cancelled request), the next probe may go.
            self.health.probing.store(false, Ordering::Release);
        }
    }
}

/// Starts the health machinery of a snapshot about to be served: each server takes over the
/// health state of the same server (same upstream name, same server string) in `previous`,
/// the metric is set for every server, and one check task per server starts for upstreams with
/// `health_check`. Tasks hold their upstream weakly: they stop once no snapshot has it, or when
/// a newer snapshot's task took over their server.
pub fn spawn(upstreams: &[Arc<Upstream>], previous: Option<&[Arc<Upstream>]>, metrics: &Metrics) {
    let mut old: HashMap<(&str, &str), &Arc<ServerHealth>> = HashMap::new();
    for upstream in previous.unwrap_or_default() {
        for server in upstream.servers() {
            old.insert(
                (upstream.name.as_str(), server.label.as_str()),
                server.health(),
            );
        }
    }
    let runtime = tokio::runtime::Handle::try_current();
    // Replaced whole, so a server gone from the config leaves no stale series.
    metrics.upstream_server_healthy.reset();
    for upstream in upstreams {
        for (index, server) in upstream.servers().iter().enumerate() {
            if let Some(state) = old.remove(&(upstream.name.as_str(), server.label.as_str())) {
                server.inherit_health(state.clone());
            }
            let health = server.health();
            if !health.is_healthy()
                && upstream.settings.health_check.is_none()
                && upstream.passive_threshold() == 0
            {
                // Ejected under the old config; the new one has nothing that ejects it, so
                // nothing would ever send it a probe or a check either.
                health.mark_healthy("the new config neither checks nor ejects it");
            }
            let _ = health.gauge.set(metrics.upstream_server_healthy.clone());
            health.retired.store(false, Ordering::Release);
            health.publish();
            let generation = health.checker.fetch_add(1, Ordering::AcqRel) + 1;
            let Some(check) = &upstream.settings.health_check else {
                continue;
            };
            match &runtime {
                Ok(runtime) => {
                    runtime.spawn(check_loop(
                        Arc::downgrade(upstream),
                        index,
                        health.clone(),
                        generation,
                        check.interval,
                    ));
                }
                Err(_) => {
                    tracing::error!(upstream = %upstream.name, "no async runtime: health checks not started")
                }
            }
        }
    }
    for state in old.into_values() {
        state.retired.store(true, Ordering::Release);
        state.checker.fetch_add(1, Ordering::AcqRel);
    }
}

/// Checks one server every `interval` (the first at once) while its snapshot lives.
async fn check_loop(
    upstream: Weak<Upstream>,
    index: usize,
    health: Arc<ServerHealth>,
    generation: u64,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    // A check slower than the interval delays the next one instead of a burst of catch-ups.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if health.checker.load(Ordering::Acquire) != generation {
            return;
        }
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let (Some(check), Some(server)) = (
            &upstream.settings.health_check,
            upstream.servers().get(index),
        ) else {
            return;
        };
        // Health checks are this thread's only upstream traffic: its expired idle
        // connections (and those of servers a reload removed) are closed here.
        crate::upstream::conn::sweep_idle();
        let outcome = check_once(server, check).await;
        health.check_result(outcome, check, Instant::now());
    }
}

/// `GET {path}` with `Host` = the server's address (`localhost` for a unix socket), bounded by
/// `timeout` from connecting to the end of the (bounded) body.
async fn check_once(server: &UpstreamServer, check: &HealthCheck) -> Result<StatusCode, String> {
    let uri = server
        .uri_for(check.path.as_str())
        .map_err(|err| err.to_string())?;
    let mut request = Request::new(RequestBody::empty());
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(header::HOST, server.host_header());
    headers.insert(header::USER_AGENT, CHECK_USER_AGENT.clone());
    let exchange = async {
        let response = server
            .exchange(request)
            .await
            .map_err(|err| crate::errors::chain_text(&err))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut read = 0;
        // Read to the end so the keep-alive connection is reused; a huge body is not read.
        while read <= CHECK_BODY_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
                Some(Err(err)) => return Err(format!("reading the body: {err}")),
                None => break,
            }
        }
        Ok(status)
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            path: PathAndQuery::from_static("/health/"),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy: 2,
            unhealthy: 3,
        }
    }

    fn status(code: u16) -> Result<StatusCode, String> {
        Ok(StatusCode::from_u16(code).unwrap())
    }

    #[test]
    fn active_checks_eject_after_unhealthy_and_restore_after_healthy() {
        let health = ServerHealth::new("app", "http://127.0.0.1:1");
        let now = Instant::now();
        health.check_result(status(500), &check(), now);
        health.check_result(Err("refused".into()), &check(), now);
        assert!(health.is_healthy(), "two failures of three");
        health.check_result(status(200), &check(), now);
        health.check_result(status(503), &check(), now);
        health.check_result(status(404), &check(), now);
        assert!(health.is_healthy(), "a success resets the failure count");
        health.check_result(status(500), &check(), now);
        assert!(!health.is_healthy(), "three consecutive failures");

        health.check_result(status(204), &check(), now);
        health.check_result(status(500), &check(), now);
        health.check_result(status(301), &check(), now);
        assert!(!health.is_healthy(), "a failure resets the success count");
        health.check_result(status(200), &check(), now);
        assert!(
            health.is_healthy(),
            "two consecutive successes (3xx counts)"
        );
    }

    #[test]
    fn passive_failures_eject_and_a_success_resets_the_count() {
        let health = ServerHealth::new("app", "http://127.0.0.1:1");
        let now = Instant::now();
        health.request_failed(3, now);
        health.request_failed(3, now);
        health.request_succeeded(false);
        health.request_failed(3, now);
        health.request_failed(3, now);
        assert!(health.is_healthy());
        health.request_failed(3, now);
        assert!(!health.is_healthy());

        let never = ServerHealth::new("app", "http://127.0.0.1:1");
        for _ in 0..100 {
            never.request_failed(0, now);
        }
        assert!(never.is_healthy(), "passive_failures = 0 never ejects");
    }

    #[test]
    fn without_active_checks_one_probe_after_the_cool_down() {
        let health = Arc::new(ServerHealth::new("app", "http://127.0.0.1:1"));
        let start = Instant::now();
        health.request_failed(1, start);
        assert!(!health.is_healthy());
        assert!(!health.try_start_probe(start + Duration::from_secs(9)));

        let later = start + COOL_DOWN;
        assert!(health.try_start_probe(later));
        let probe = health.begin_request(true);
        assert!(!health.try_start_probe(later), "one probe at a time");
        // The probe fails: the cool-down starts again from that failure.
        health.request_failed(1, later);
        drop(probe);
        assert!(!health.try_start_probe(later + Duration::from_secs(5)));

        let again = later + COOL_DOWN;
        assert!(health.try_start_probe(again));
        let probe = health.begin_request(true);
        health.request_succeeded(false);
        drop(probe);
        assert!(health.is_healthy());
        assert_eq!(health.in_flight(), 0);
    }

    #[test]
    fn a_cancelled_probe_frees_the_next_one() {
        let health = Arc::new(ServerHealth::new("app", "http://127.0.0.1:1"));
        let start = Instant::now();
        health.request_failed(1, start);
        let later = start + COOL_DOWN;
        assert!(health.try_start_probe(later));
        drop(health.begin_request(true));
        assert!(health.try_start_probe(later));
    }

    #[test]
    fn with_active_checks_a_request_success_does_not_restore() {
        let health = ServerHealth::new("app", "http://127.0.0.1:1");
        let now = Instant::now();
        health.request_failed(1, now);
        health.request_succeeded(true);
        assert!(!health.is_healthy());
        health.check_result(status(200), &check(), now);
        assert!(!health.is_healthy());
        health.check_result(status(200), &check(), now);
        assert!(health.is_healthy());
    }

    /// A snapshot's upstream list holding one upstream `app`.
    fn upstreams(servers: &[&str]) -> Vec<Arc<Upstream>> {
        use crate::upstream::{Balance, ServerAddr, UpstreamSettings};
        let settings = UpstreamSettings {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            retries: 1,
            balance: Balance::RoundRobin,
            health_check: None,
            passive_failures: 3,
            keepalive: 16,
            keepalive_timeout: Duration::from_secs(60),
        };
        let addrs = servers
            .iter()
            .map(|s| ServerAddr::parse(s).unwrap())
            .collect();
        vec![Arc::new(Upstream::new("app".into(), addrs, settings))]
    }

    #[test]
    fn a_reload_inherits_health_and_heals_what_the_new_config_cannot_eject() {
        let metrics = Metrics::new();
        let (one, two) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
        let first = upstreams(&[one, two]);
        spawn(&first, None, &metrics);
        first[0].servers()[0]
            .health()
            .request_failed(1, Instant::now());

        let second = upstreams(&[two, one]);
        spawn(&second, Some(&first), &metrics);
        assert!(Arc::ptr_eq(
            second[0].servers()[1].health(),
            first[0].servers()[0].health()
        ));
        assert!(!second[0].servers()[1].health().is_healthy());
        let text = metrics.render();
        assert!(
            text.contains(&format!("server=\"{one}\",upstream=\"app\"}} 0")),
            "{text}"
        );

        // Alone and without checks, nothing could ever bring it back: healed.
        let third = upstreams(&[one]);
        spawn(&third, Some(&second), &metrics);
        assert!(third[0].servers()[0].health().is_healthy());
        let text = metrics.render();
        assert!(
            text.contains(&format!("server=\"{one}\",upstream=\"app\"}} 1")),
            "{text}"
        );
        assert!(!text.contains(two), "stale series: {text}");
    }

    #[test]
    fn the_gauge_follows_transitions() {
        let metrics = Metrics::new();
        let health = ServerHealth::new("app", "unix:/run/app.sock");
        let _ = health.gauge.set(metrics.upstream_server_healthy.clone());
        health.publish();
        let value = || {
            metrics
                .upstream_server_healthy
                .with_label_values(&["app", "unix:/run/app.sock"])
                .get()
        };
        assert_eq!(value(), 1);
        health.request_failed(1, Instant::now());
        assert_eq!(value(), 0);
        health.request_succeeded(false);
        assert_eq!(value(), 1);
    }
}
