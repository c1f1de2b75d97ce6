//! Upstream active health checks: one task per server of an upstream with `health_check`,
//! feeding the server's health state (`health_state.rs`); and the hand-over of that state from
//! one snapshot to the next on reload.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::BodyExt;

use crate::metrics::Metrics;
use crate::request_body::RequestBody;
use crate::upstream::health_state::{HealthCheck, ServerHealth};
use crate::upstream::pool::{Upstream, UpstreamServer};

/// A health check answer is read up to this many bytes (then the connection is dropped rather
/// than reused): the status is all that counts.
const CHECK_BODY_LIMIT: usize = 64 * 1024;

static CHECK_USER_AGENT: HeaderValue = HeaderValue::from_static("rampart-health-check");

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
            .exchange(request, check.timeout)
            .await
            .map_err(|err| crate::error_chain::chain_text(&err))?;
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
