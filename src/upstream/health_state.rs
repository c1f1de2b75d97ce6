//! Upstream server health state: what the balancer reads (healthy, in-flight requests), the
//! passive ejection after consecutive failed requests, and the in-flight accounting of each
//! request (`least_conn`'s load). Apart from the active checks (`health.rs`), which feed it.
//!
//! A server starts healthy. It is ejected by `health_check.unhealthy` consecutive failed checks,
//! or by `passive_failures` consecutive failed requests (connect failure, response timeout,
//! malformed response). It comes back after `health_check.healthy` consecutive good checks; an
//! upstream without `health_check` sends one request to it as a probe once [`COOL_DOWN`] has
//! passed since the last failure (nginx's `fail_timeout`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::StatusCode;
use prometheus::IntGaugeVec;

/// How long a passively ejected server of an upstream without `health_check` rests before one
/// request is sent to it as a probe.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

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
    pub(super) checker: AtomicU64,
    /// The server is in no running snapshot any more: it writes no metric.
    pub(super) retired: AtomicBool,
    pub(super) gauge: OnceLock<IntGaugeVec>,
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

    pub(super) fn mark_healthy(&self, reason: &str) {
        self.request_failures.store(0, Ordering::Relaxed);
        self.check_failures.store(0, Ordering::Relaxed);
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(upstream = %self.upstream, server = %self.server, reason, "upstream server healthy again");
            self.publish();
        }
    }

    /// `rampart_upstream_server_healthy{upstream, server}` = the current state.
    pub(super) fn publish(&self) {
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
}
