//! Upstream pools: one keep-alive HTTP/1.1 client per server (TCP or unix socket), and the
//! choice of a server for each request (round-robin or least in-flight requests, healthy
//! servers only; see [`crate::upstream::health`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};

use crate::request_body::RequestBody;
use crate::upstream::conn::{Dialer, ExchangeError, UpstreamBody};
use crate::upstream::health_state::{HealthCheck, InFlightRequest, ServerHealth};

/// Where an app server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// `http://host:port` (host may be a name, resolved at connect time)
    Http(Authority),
    /// `unix:/run/gunicorn.sock`
    Unix(PathBuf),
}

impl ServerAddr {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix server is written \"unix:/path/to/app.sock\"".into());
            }
            return Ok(ServerAddr::Unix(PathBuf::from(path)));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| format!("`{text}` is not a URL like \"http://127.0.0.1:8000\""))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(
                "upstream servers are \"http://host:port\" or \"unix:/path\" (TLS to upstreams is not supported)"
                    .into(),
            );
        }
        if uri.path() != "/" || uri.query().is_some() {
            return Err("an upstream server URL has no path (\"http://host:port\")".into());
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| "missing host".to_string())?;
        if authority.as_str().contains('@') {
            return Err("credentials in an upstream URL are not supported".into());
        }
        Ok(ServerAddr::Http(authority))
    }
}

/// How a server is chosen among the healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// The fewest requests in flight (response bodies and WebSockets included).
    LeastConn,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub balance: Balance,
    pub health_check: Option<HealthCheck>,
    /// Consecutive failed requests that eject a server; 0 never ejects.
    pub passive_failures: u32,
    /// Idle keep-alive connections kept per server and worker.
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
}

/// A named group of app servers.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub settings: UpstreamSettings,
    servers: Vec<UpstreamServer>,
    next: AtomicUsize,
    /// Its `rampart_upstream_duration_seconds` handle, looked up on its first observation
    /// (see `metrics/route.rs`).
    duration: OnceLock<prometheus::Histogram>,
}

#[derive(Debug)]
pub struct UpstreamServer {
    /// The config's server string: logs and the metric label, never shown to clients.
    pub label: String,
    /// `Host` of the health check.
    host: HeaderValue,
    /// Opens its connections; their idle lists are per worker thread (`conn.rs`).
    dialer: Dialer,
    upstream: String,
    /// Set once: inherited from the previous snapshot by [`crate::upstream::health::spawn`],
    /// or fresh.
    health: OnceLock<Arc<ServerHealth>>,
}

/// The server chosen for one try of a request.
#[derive(Debug)]
pub struct Pick<'a> {
    pub index: usize,
    pub server: &'a UpstreamServer,
    /// Counts the request in the server's load until dropped.
    pub in_flight: InFlightRequest,
}

impl Upstream {
    pub fn new(name: String, addrs: Vec<ServerAddr>, settings: UpstreamSettings) -> Self {
        let servers = addrs
            .into_iter()
            .map(|addr| UpstreamServer::new(&name, addr, &settings))
            .collect();
        Upstream {
            name,
            settings,
            servers,
            next: AtomicUsize::new(0),
            duration: OnceLock::new(),
        }
    }

    /// Observes an exchange's latency (request sent → response head) in
    /// `rampart_upstream_duration_seconds{upstream}`.
    pub fn observe_duration(&self, metrics: &crate::metrics::Metrics, seconds: f64) {
        self.duration
            .get_or_init(|| {
                metrics
                    .upstream_duration
                    .with_label_values(&[self.name.as_str()])
            })
            .observe(seconds);
    }

    pub fn servers(&self) -> &[UpstreamServer] {
        &self.servers
    }

    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// The server for the next try of a request, never one in `failed` (the servers it already
    /// failed on); `None` when no healthy server is left.
    ///
    /// Without `health_check`, an ejected server whose cool-down is over gets this request as
    /// its probe (one at a time): nothing else would ever bring it back.
    pub fn pick(&self, failed: &[usize]) -> Option<Pick<'_>> {
        if self.settings.health_check.is_none() {
            let now = Instant::now();
            for (index, server) in self.servers.iter().enumerate() {
                if !failed.contains(&index) && server.health().try_start_probe(now) {
                    return Some(self.pick_at(index, true));
                }
            }
        }
        let index = match self.settings.balance {
            Balance::RoundRobin => self.round_robin(failed),
            Balance::LeastConn => self.least_conn(failed),
        }?;
        Some(self.pick_at(index, false))
    }

    fn pick_at(&self, index: usize, probe: bool) -> Pick<'_> {
        let server = &self.servers[index];
        Pick {
            index,
            server,
            in_flight: server.health().begin_request(probe),
        }
    }

    fn usable(&self, index: usize, failed: &[usize]) -> bool {
        !failed.contains(&index) && self.servers[index].health().is_healthy()
    }

    /// The next healthy server in turn. A retry takes the healthy server after the one that
    /// failed.
    fn round_robin(&self, failed: &[usize]) -> Option<usize> {
        let n = self.servers.len();
        if let Some(&last) = failed.last() {
            return (1..=n)
                .map(|step| (last + step) % n)
                .find(|&i| self.usable(i, failed));
        }
        // The k-th healthy server, so an ejected server's share spreads evenly over the others.
        let healthy = (0..n).filter(|&i| self.usable(i, failed)).count();
        if healthy == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % healthy;
        (0..n)
            .filter(|&i| self.usable(i, failed))
            .nth(k)
            .or_else(|| (0..n).find(|&i| self.usable(i, failed)))
    }

    /// The healthy server with the fewest requests in flight; ties take turns (the k-th of
    /// the tied servers), so one server is not favoured.
    fn least_conn(&self, failed: &[usize]) -> Option<usize> {
        let n = self.servers.len();
        let load = |i: usize| self.servers[i].health().in_flight();
        let least = (0..n).filter(|&i| self.usable(i, failed)).map(load).min()?;
        let tied = |i: &usize| self.usable(*i, failed) && load(*i) <= least;
        let ties = (0..n).filter(tied).count().max(1);
        let k = self.next.fetch_add(1, Ordering::Relaxed) % ties;
        // Loads move meanwhile: fall back to any usable server rather than to none.
        (0..n)
            .filter(tied)
            .nth(k)
            .or_else(|| (0..n).find(|&i| self.usable(i, failed)))
    }

    /// The server answered (a response head arrived).
    pub fn request_succeeded(&self, pick: &Pick<'_>) {
        pick.in_flight
            .health()
            .request_succeeded(self.settings.health_check.is_some());
    }

    /// Connect failure, response timeout or malformed response.
    pub fn request_failed(&self, pick: &Pick<'_>) {
        pick.in_flight
            .health()
            .request_failed(self.passive_threshold(), Instant::now());
    }

    /// Consecutive failed requests that eject a server; 0 never ejects.
    pub(crate) fn passive_threshold(&self) -> u32 {
        // As in nginx, a lone server is never ejected passively: there is nowhere else to send
        // its requests, and ejecting it would only turn a 502 into a 503 and delay recovery.
        if self.servers.len() > 1 {
            self.settings.passive_failures
        } else {
            0
        }
    }

    /// At least one server may be sent requests (what `/readyz` asks of every upstream): a
    /// healthy one, or, without `health_check`, an ejected one whose cool-down is over (it
    /// will get the next request as a probe; readiness must not wait for traffic that a
    /// not-ready answer would keep away).
    pub fn has_healthy_server(&self) -> bool {
        let now = Instant::now();
        self.servers.iter().any(|server| {
            let health = server.health();
            health.is_healthy() || (self.settings.health_check.is_none() && health.cooled_down(now))
        })
    }
}

impl UpstreamServer {
    fn new(upstream: &str, addr: ServerAddr, settings: &UpstreamSettings) -> Self {
        let (label, host, dialer) = match addr {
            ServerAddr::Http(authority) => {
                // An authority is always a valid header value.
                let host = HeaderValue::from_str(authority.as_str())
                    .unwrap_or(HeaderValue::from_static("localhost"));
                let dialer = Dialer::tcp(
                    authority.as_str(),
                    settings.connect_timeout,
                    settings.keepalive,
                    settings.keepalive_timeout,
                );
                (format!("http://{authority}"), host, dialer)
            }
            ServerAddr::Unix(path) => {
                let label = format!("unix:{}", path.display());
                let dialer = Dialer::unix(
                    path,
                    settings.connect_timeout,
                    settings.keepalive,
                    settings.keepalive_timeout,
                );
                (label, HeaderValue::from_static("localhost"), dialer)
            }
        };
        UpstreamServer {
            label,
            host,
            dialer,
            upstream: upstream.to_owned(),
            health: OnceLock::new(),
        }
    }

    pub fn health(&self) -> &Arc<ServerHealth> {
        self.health
            .get_or_init(|| Arc::new(ServerHealth::new(&self.upstream, &self.label)))
    }

    /// Takes over the state of the same server in the previous snapshot (before any request
    /// or check has used this one).
    pub(crate) fn inherit_health(&self, health: Arc<ServerHealth>) {
        if self.health.set(health).is_err() {
            tracing::debug!(upstream = %self.upstream, server = %self.label, "health state already in use; not inherited");
        }
    }

    /// `Host` for requests rampart makes itself: the server's `host:port`, or `localhost` for
    /// a unix socket.
    pub fn host_header(&self) -> HeaderValue {
        self.host.clone()
    }

    /// `{path_and_query}` as an origin-form request target (RFC 9112 §3.2.1).
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder().path_and_query(path_and_query).build()
    }

    /// Sends `request` (origin-form target) and returns the response head, its body driving
    /// the connection (`conn.rs`); [`ExchangeError::Timeout`] without a head within `timeout`.
    /// The dialer's own future, not one around it (which would hold the request once more).
    pub fn exchange(
        &self,
        request: Request<RequestBody>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, ExchangeError>> + '_ {
        self.dialer.exchange(request, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_addresses() {
        assert_eq!(
            ServerAddr::parse("http://127.0.0.1:8000"),
            Ok(ServerAddr::Http(Authority::from_static("127.0.0.1:8000")))
        );
        assert_eq!(
            ServerAddr::parse("unix:/run/app.sock"),
            Ok(ServerAddr::Unix(PathBuf::from("/run/app.sock")))
        );
        assert!(ServerAddr::parse("https://x").is_err());
        assert!(ServerAddr::parse("http://x/path").is_err());
        assert!(ServerAddr::parse("http://u:p@x").is_err());
        assert!(ServerAddr::parse("unix:").is_err());
    }

    fn upstream(servers: usize, balance: Balance, passive_failures: u32) -> Upstream {
        let addrs = (0..servers)
            .map(|i| ServerAddr::parse(&format!("http://127.0.0.1:{}", 1000 + i)).unwrap())
            .collect();
        let settings = UpstreamSettings {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            retries: 1,
            balance,
            health_check: None,
            passive_failures,
            keepalive: 16,
            keepalive_timeout: Duration::from_secs(60),
        };
        Upstream::new("app".into(), addrs, settings)
    }

    fn eject(upstream: &Upstream, index: usize) {
        upstream.servers[index]
            .health()
            .request_failed(1, Instant::now());
    }

    fn picks(upstream: &Upstream, n: usize) -> Vec<usize> {
        (0..n).map(|_| upstream.pick(&[]).unwrap().index).collect()
    }

    #[test]
    fn round_robin_skips_ejected_servers_and_spreads_their_share() {
        let up = upstream(3, Balance::RoundRobin, 3);
        assert_eq!(picks(&up, 6), [0, 1, 2, 0, 1, 2]);
        eject(&up, 1);
        let chosen = picks(&up, 6);
        assert!(!chosen.contains(&1), "{chosen:?}");
        assert_eq!(chosen.iter().filter(|&&i| i == 0).count(), 3);
        assert!(up.has_healthy_server());
        eject(&up, 0);
        eject(&up, 2);
        assert!(up.pick(&[]).is_none());
        assert!(!up.has_healthy_server());
    }

    #[test]
    fn a_retry_goes_to_the_next_healthy_server_never_back() {
        let up = upstream(3, Balance::RoundRobin, 3);
        eject(&up, 1);
        assert_eq!(up.pick(&[0]).unwrap().index, 2);
        assert_eq!(up.pick(&[2]).unwrap().index, 0);
        assert!(up.pick(&[0, 2]).is_none());
    }

    #[test]
    fn least_conn_prefers_the_idle_server_and_rotates_ties() {
        let up = upstream(3, Balance::LeastConn, 3);
        let busy = up.pick(&[]).unwrap();
        let busy_index = busy.index;
        let chosen = picks(&up, 4);
        assert!(!chosen.contains(&busy_index), "{chosen:?}");
        // Idle servers share the ties.
        let others: Vec<usize> = (0..3).filter(|&i| i != busy_index).collect();
        for other in &others {
            assert_eq!(
                chosen.iter().filter(|&i| i == other).count(),
                2,
                "{chosen:?}"
            );
        }
        drop(busy);
        let mut all = picks(&up, 3);
        all.sort();
        assert_eq!(all, [0, 1, 2]);
        assert_eq!(up.servers[busy_index].health().in_flight(), 0);
    }

    #[test]
    fn least_conn_skips_ejected_servers() {
        let up = upstream(2, Balance::LeastConn, 3);
        eject(&up, 0);
        let _a = up.pick(&[]).unwrap();
        let _b = up.pick(&[]).unwrap();
        assert_eq!(up.pick(&[]).unwrap().index, 1);
    }

    #[test]
    fn passive_ejection_needs_consecutive_failures_and_spares_a_lone_server() {
        let up = upstream(2, Balance::RoundRobin, 2);
        let pick = up.pick(&[1]).unwrap();
        up.request_failed(&pick);
        assert!(up.servers[0].health().is_healthy());
        up.request_failed(&pick);
        assert!(!up.servers[0].health().is_healthy());

        let lone = upstream(1, Balance::RoundRobin, 1);
        let pick = lone.pick(&[]).unwrap();
        for _ in 0..10 {
            lone.request_failed(&pick);
        }
        assert!(lone.servers[0].health().is_healthy());
    }
}
