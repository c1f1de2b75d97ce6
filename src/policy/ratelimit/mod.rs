//! Per-route rate limits (a route's `rate_limit`): GCRA quotas from governor, keyed by client
//! IP or by a request header, answered with 429 and the `RateLimit-*` headers.
//!
//! [`RouteLimiter::check`] is the one decision the pipeline asks for. It is async so that a
//! shared store can sit behind the same call. With `store = "local"` every decision is taken in
//! process by [`local::LocalStore`], one bounded store shared by all the routes of a snapshot (a
//! reload starts counting afresh). With `store = "redis"` decisions are taken by
//! [`redis::RedisStore`] (one round trip, shared by every replica), and the local limiter is the
//! `on_store_error = "local"` fallback.

pub mod local;
pub mod redis;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::config::units::Rate;

pub use self::redis::{OnStoreError, RedisStore};
pub use local::LocalStore;
use local::{Probe, RouteState};

/// The separate-fields form of draft-ietf-httpapi-ratelimit-headers.
pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The longest a bucket may take to refill (`burst × rate period`): beyond it a typo is more
/// likely than intent, and governor's nanosecond arithmetic stays far from overflow.
const MAX_REFILL: Duration = Duration::from_secs(366 * 86_400);

/// Who a request is counted against.
///
/// IPv6 clients are counted by their /64: one host usually holds a whole /64 and could rotate
/// through its addresses. An IPv4 address seen through a dual-stack socket counts as IPv4.
/// Header values are kept as a 64-bit digest, never stored as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    V4(u32),
    /// The upper 64 bits of the address.
    V6(u64),
    /// A stable digest of the header value (the same on every replica, for a shared store).
    Header(u64),
}

impl Key {
    pub fn from_ip(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::V4(u32::from(v4)),
                None => Key::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }

    pub fn from_header_value(value: &[u8]) -> Key {
        Key::Header(digest(value))
    }

    /// `(kind, value)`: the packed form the local store keeps.
    fn parts(self) -> (u8, u64) {
        match self {
            Key::V4(v) => (0, u64::from(v)),
            Key::V6(v) => (1, v),
            Key::Header(v) => (2, v),
        }
    }
}

/// [`digest`] for other policies' keys (the jail's scopes): stable across builds and replicas.
pub fn digest_of(bytes: &[u8]) -> u64 {
    digest(bytes)
}

/// FNV-1a, then the MurmurHash3 finalizer for a good spread. Stable across builds and
/// replicas. Not collision-resistant against a chosen victim, which does not matter here: to
/// collide with another client's key one must know it, and then one could just send it.
fn digest(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A route's `key`: what a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client IP after `trusted_proxies` (the default; also `key = "ip"`).
    ClientIp,
    /// `key = "header:X-Api-Key"`; a request without the header falls back to its client IP.
    Header(HeaderName),
}

impl KeySource {
    pub fn parse(text: &str) -> Result<KeySource, String> {
        if text == "ip" {
            return Ok(KeySource::ClientIp);
        }
        let Some(name) = text.strip_prefix("header:") else {
            return Err(format!(
                "expected \"ip\" or \"header:NAME\" (like \"header:X-Api-Key\"), found {text:?}"
            ));
        };
        HeaderName::from_bytes(name.trim().as_bytes())
            .map(KeySource::Header)
            .map_err(|_| format!("`{name}` is not a header name"))
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// The burst: requests allowed at once with a full bucket.
        limit: u32,
        /// Requests allowed right now, this one counted.
        remaining: u32,
        /// Until the bucket is full again.
        reset: Duration,
    },
    Limited {
        limit: u32,
        /// Until one request is allowed again (never zero).
        retry_after: Duration,
        /// Until the bucket is full again.
        reset: Duration,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// Writes `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (whole seconds,
    /// rounded up) and, when limited, `Retry-After` (whole seconds, rounded up, at least 1).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let (limit, remaining, reset) = match *self {
            Decision::Allowed {
                limit,
                remaining,
                reset,
            } => (limit, remaining, reset),
            Decision::Limited {
                limit,
                retry_after,
                reset,
            } => {
                let seconds = ceil_secs(retry_after).max(1);
                headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
                (limit, 0, reset)
            }
        };
        headers.insert(&RATELIMIT_LIMIT, HeaderValue::from(limit));
        headers.insert(&RATELIMIT_REMAINING, HeaderValue::from(remaining));
        headers.insert(&RATELIMIT_RESET, HeaderValue::from(ceil_secs(reset)));
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Why a route's `rate_limit` cannot be enforced: the sub-key and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub key: &'static str,
    pub message: String,
}

type Governor<C> = RateLimiter<Probe, RouteState<C>, C, StateInformationMiddleware>;

/// One route's limiter: its quota and key, counted in a store shared with the other routes.
///
/// Generic over governor's [`Clock`] so that tests advance time by hand (`FakeRelativeClock`)
/// instead of sleeping.
pub struct RouteLimiter<C: Clock = DefaultClock> {
    key_source: KeySource,
    limit: u32,
    /// governor's τ: how far the bucket's time may run ahead of now (`(burst - 1) × period`).
    tau: Duration,
    clock: C,
    /// This limiter's time origin (read just before governor reads its own).
    start: C::Instant,
    governor: Governor<C>,
    /// The emission interval T (one request per `period`).
    period: Duration,
    /// `store = "redis"`: the shared store, which decides first.
    shared: Option<Shared>,
}

/// A route's place in the Redis store.
struct Shared {
    store: Arc<RedisStore>,
    /// `rampart:rl:{route name}:`
    prefix: String,
    t_us: u64,
    tau_us: u64,
}

/// A route's `rate_limit` as written, in plain values (config/validate.rs reads the file).
#[derive(Debug, Clone)]
pub struct LimitRule {
    pub rate: Rate,
    /// `None`: the rate's count (`"10/s"` allows 10 at once).
    pub burst: Option<u32>,
    /// `None`: the client IP. Otherwise e.g. `"header:X-Api-Key"`.
    pub key: Option<String>,
}

impl<C: Clock + Clone> RouteLimiter<C> {
    /// Compiles a route's `rate_limit`. `route` tells the route's keys apart in the shared store.
    pub fn new(
        config: &LimitRule,
        route: u32,
        store: &Arc<LocalStore<C>>,
    ) -> Result<Self, LimitError> {
        let key_source = match &config.key {
            None => KeySource::ClientIp,
            Some(text) => KeySource::parse(text).map_err(|message| LimitError {
                key: "key",
                message,
            })?,
        };
        if config.burst == Some(0) {
            return Err(LimitError {
                key: "burst",
                message: "a burst of 0 lets nothing through; at least 1".into(),
            });
        }
        let burst = NonZeroU32::new(config.burst.unwrap_or(config.rate.count).max(1))
            .unwrap_or(NonZeroU32::MIN);
        let period = config.rate.period();
        if period.saturating_mul(burst.get()) > MAX_REFILL {
            return Err(LimitError {
                key: "burst",
                message: format!(
                    "burst {burst} at {} takes more than a year to refill",
                    config.rate
                ),
            });
        }
        let quota = Quota::with_period(period)
            .ok_or_else(|| LimitError {
                key: "rate",
                message: "the rate is too high to enforce".into(),
            })?
            .allow_burst(burst);

        let clock = store.clock().clone();
        let start = clock.now();
        let state = RouteState::new(store.clone(), route, start);
        let governor: Governor<C> = RateLimiter::new(quota, state, clock.clone());
        Ok(RouteLimiter {
            key_source,
            limit: burst.get(),
            tau: period.saturating_mul(burst.get() - 1),
            clock,
            start,
            governor,
            period,
            shared: None,
        })
    }
}

impl<C: Clock> RouteLimiter<C> {
    /// Counts this route in the shared Redis store under `rampart:rl:{route_name}:{key}`; the
    /// local limiter stays as the `on_store_error = "local"` fallback.
    pub fn shared(mut self, store: Arc<RedisStore>, route_name: &str) -> Self {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.shared = Some(Shared {
            store,
            prefix: redis::key_prefix(route_name),
            t_us: micros(self.period).max(1),
            tau_us: micros(self.tau),
        });
        self
    }

    /// What this request is counted against: the configured header (digested) when present and
    /// not empty, else the client IP.
    pub fn key(&self, headers: &HeaderMap, client: IpAddr) -> Key {
        if let KeySource::Header(name) = &self.key_source {
            if let Some(value) = headers.get(name).filter(|v| !v.is_empty()) {
                return Key::from_header_value(value.as_bytes());
            }
        }
        Key::from_ip(client)
    }

    /// Counts one request against `key` and says whether it may pass.
    ///
    /// With a Redis store, Redis decides; when it cannot (unreachable, too slow),
    /// `on_store_error` does: the local limiter, or allow, or deny. Never an error.
    pub async fn check(&self, key: &Key) -> Decision {
        self.check_counted(key, None).await
    }

    /// [`check`](Self::check), counting Redis errors and fallbacks in `metrics`.
    pub async fn check_counted(
        &self,
        key: &Key,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Decision {
        let Some(shared) = &self.shared else {
            return self.decide(key);
        };
        let redis_key = format!("{}{}", shared.prefix, redis::key_suffix(key));
        // Boxed: the Redis exchange's state is kilobytes, and it would otherwise be part of
        // every request's future (moved on each spawn), Redis or not. One allocation next to a
        // network round trip.
        let decided = Box::pin(shared.store.decide(&redis_key, shared.t_us, shared.tau_us));
        let decided = decided.await;
        if let Some(metrics) = metrics {
            match &decided {
                Err(redis::Unanswered::Failed) => {
                    metrics.rate_limit_store_errors.inc();
                }
                Err(redis::Unanswered::Skipped) | Ok(_) => {}
            }
            if decided.is_err() {
                let fallback = match shared.store.on_error() {
                    OnStoreError::Local => "local",
                    OnStoreError::Allow => "allow",
                    OnStoreError::Deny => "deny",
                };
                metrics
                    .rate_limit_store_fallbacks
                    .with_label_values(&[fallback])
                    .inc();
            }
        }
        match decided.ok() {
            Some(answer) if answer.allowed => Decision::Allowed {
                limit: self.limit,
                remaining: answer.remaining,
                reset: answer.reset,
            },
            Some(answer) => Decision::Limited {
                limit: self.limit,
                retry_after: answer.retry_after.max(Duration::from_nanos(1)),
                reset: answer.reset,
            },
            None => match shared.store.on_error() {
                OnStoreError::Local => self.decide(key),
                // As for a client with a full bucket.
                OnStoreError::Allow => Decision::Allowed {
                    limit: self.limit,
                    remaining: self.limit - 1,
                    reset: self.period,
                },
                // Try again once Redis may be back.
                OnStoreError::Deny => Decision::Limited {
                    limit: self.limit,
                    retry_after: redis::RETRY_AFTER_FAILURE,
                    reset: redis::RETRY_AFTER_FAILURE + self.tau,
                },
            },
        }
    }

    fn decide(&self, key: &Key) -> Decision {
        let probe = Probe::new(*key);
        match self.governor.check_key(&probe) {
            Ok(snapshot) => {
                let now = self.clock.now().duration_since(self.start).as_u64();
                Decision::Allowed {
                    limit: self.limit,
                    remaining: snapshot.remaining_burst_capacity(),
                    reset: Duration::from_nanos(probe.tat.get().saturating_sub(now)),
                }
            }
            Err(not_until) => {
                // The bucket is full again τ after the next single request is allowed.
                let wait = not_until.wait_time_from(self.clock.now());
                Decision::Limited {
                    limit: self.limit,
                    retry_after: wait.max(Duration::from_nanos(1)),
                    reset: wait + self.tau,
                }
            }
        }
    }
}

impl<C: Clock> std::fmt::Debug for RouteLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimiter")
            .field("key", &self.key_source)
            .field("limit", &self.limit)
            .field("tau", &self.tau)
            .field("shared", &self.shared.as_ref().map(|s| &s.prefix))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn config(rate: &str, burst: Option<u32>, key: Option<&str>) -> LimitRule {
        LimitRule {
            rate: rate.parse().unwrap(),
            burst,
            key: key.map(str::to_string),
        }
    }

    struct Fixture {
        clock: FakeRelativeClock,
        store: Arc<LocalStore<FakeRelativeClock>>,
    }

    impl Fixture {
        fn new(max_keys: usize) -> Self {
            let clock = FakeRelativeClock::default();
            let store = Arc::new(LocalStore::new(max_keys, clock.clone()));
            Fixture { clock, store }
        }

        fn limiter(&self, rate: &str, burst: u32, route: u32) -> RouteLimiter<FakeRelativeClock> {
            RouteLimiter::new(&config(rate, Some(burst), None), route, &self.store).unwrap()
        }

        fn advance(&self, by: Duration) {
            self.clock.advance(by);
        }
    }

    fn ip(text: &str) -> Key {
        Key::from_ip(text.parse().unwrap())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn burst_then_deny_then_refill() {
        let f = Fixture::new(1000);
        let limiter = f.limiter("5/min", 3, 0); // one request per 12 s, 3 at once
        let client = ip("192.0.2.1");
        for remaining in [2, 1, 0] {
            assert_eq!(
                limiter.decide(&client),
                Decision::Allowed {
                    limit: 3,
                    remaining,
                    reset: secs(12 * (3 - u64::from(remaining))),
                }
            );
        }
        assert_eq!(
            limiter.decide(&client),
            Decision::Limited {
                limit: 3,
                retry_after: secs(12),
                reset: secs(36),
            }
        );

        // 5 s later: 7 s still to wait; a denied request does not push the wait further.
        f.advance(secs(5));
        assert_eq!(
            limiter.decide(&client),
            Decision::Limited {
                limit: 3,
                retry_after: secs(7),
                reset: secs(31),
            }
        );

        // One period after the burst: exactly one request again.
        f.advance(secs(7));
        assert_eq!(
            limiter.decide(&client),
            Decision::Allowed {
                limit: 3,
                remaining: 0,
                reset: secs(36),
            }
        );
        assert!(!limiter.decide(&client).is_allowed());

        // A full refill (3 periods) restores the whole burst.
        f.advance(secs(36));
        assert_eq!(
            limiter.decide(&client),
            Decision::Allowed {
                limit: 3,
                remaining: 2,
                reset: secs(12),
            }
        );
    }

    #[test]
    fn partial_refill_arithmetic() {
        let f = Fixture::new(1000);
        let limiter = f.limiter("10/s", 5, 0); // one per 100 ms
        let client = ip("198.51.100.7");
        for _ in 0..5 {
            assert!(limiter.decide(&client).is_allowed());
        }
        // 250 ms later: two requests refilled, half of a third.
        f.advance(Duration::from_millis(250));
        assert_eq!(
            limiter.decide(&client),
            Decision::Allowed {
                limit: 5,
                remaining: 1,
                reset: Duration::from_millis(350),
            }
        );
        assert!(limiter.decide(&client).is_allowed());
        let Decision::Limited {
            retry_after, reset, ..
        } = limiter.decide(&client)
        else {
            panic!("the third request in 250 ms must be limited");
        };
        assert_eq!(retry_after, Duration::from_millis(50));
        assert_eq!(reset, Duration::from_millis(450));
    }

    #[test]
    fn headers_round_up_and_retry_after_is_never_zero() {
        let mut headers = HeaderMap::new();
        Decision::Limited {
            limit: 3,
            retry_after: Duration::from_millis(1),
            reset: Duration::from_millis(24_001),
        }
        .write_headers(&mut headers);
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(headers["ratelimit-limit"], "3");
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert_eq!(headers["ratelimit-reset"], "25");

        let mut headers = HeaderMap::new();
        Decision::Allowed {
            limit: 20,
            remaining: 19,
            reset: Duration::from_millis(100),
        }
        .write_headers(&mut headers);
        assert!(headers.get("retry-after").is_none());
        assert_eq!(headers["ratelimit-remaining"], "19");
        assert_eq!(headers["ratelimit-reset"], "1");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let f = Fixture::new(1000);
        let limiter = f.limiter("1/min", 2, 0);
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2:ffff:ffff:ffff:ffff");
        let other = ip("2001:db8:1:3::1");
        assert_eq!(a, b);
        assert!(limiter.decide(&a).is_allowed());
        assert!(limiter.decide(&b).is_allowed());
        assert!(!limiter.decide(&a).is_allowed(), "same /64, quota used up");
        assert!(limiter.decide(&other).is_allowed(), "another /64");
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        // An IPv6 /64 whose upper bits equal an IPv4 address is still another key.
        assert_ne!(ip("::c000:201"), ip("192.0.2.1"));
    }

    #[test]
    fn header_keys_and_their_fallback() {
        let f = Fixture::new(1000);
        let limiter = RouteLimiter::new(
            &config("1/min", Some(1), Some("header:X-Api-Key")),
            0,
            &f.store,
        )
        .unwrap();
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-api-key", HeaderValue::from_static(value));
            limiter.key(&headers, client)
        };
        assert_eq!(with("alpha"), with("alpha"));
        assert_ne!(with("alpha"), with("beta"));
        assert_eq!(with(""), Key::from_ip(client), "an empty value falls back");
        assert_eq!(limiter.key(&HeaderMap::new(), client), Key::from_ip(client));

        assert!(limiter.decide(&with("alpha")).is_allowed());
        assert!(!limiter.decide(&with("alpha")).is_allowed());
        assert!(limiter.decide(&with("beta")).is_allowed(), "own quota");
        assert!(
            limiter.decide(&Key::from_ip(client)).is_allowed(),
            "no header: counted by IP"
        );
    }

    #[test]
    fn header_digest_is_stable() {
        // The same value must give the same key on every replica and build (shared store).
        assert_eq!(digest(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(digest(b"secret-api-key"), 0x4cfe_d12f_4c17_c68b);
    }

    #[test]
    fn routes_count_separately_in_one_store() {
        let f = Fixture::new(1000);
        let login = f.limiter("1/min", 1, 0);
        let api = f.limiter("1/min", 1, 1);
        let client = ip("192.0.2.1");
        assert!(login.decide(&client).is_allowed());
        assert!(!login.decide(&client).is_allowed());
        assert!(api.decide(&client).is_allowed());
        assert_eq!(f.store.len(), 2);
    }

    #[test]
    fn key_syntax() {
        assert_eq!(KeySource::parse("ip"), Ok(KeySource::ClientIp));
        assert_eq!(
            KeySource::parse("header:X-Api-Key"),
            Ok(KeySource::Header(HeaderName::from_static("x-api-key")))
        );
        assert!(KeySource::parse("cookie:session").is_err());
        assert!(KeySource::parse("header:").is_err());
        assert!(KeySource::parse("header:bad name").is_err());
    }

    #[test]
    fn refused_configs() {
        let f = Fixture::new(1000);
        let err = |c: LimitRule| RouteLimiter::new(&c, 0, &f.store).unwrap_err().key;
        assert_eq!(err(config("5/min", Some(0), None)), "burst");
        assert_eq!(err(config("1/day", Some(400), None)), "burst");
        assert_eq!(err(config("5/min", None, Some("cookie:x"))), "key");
        // Without a burst, the rate's count is the burst.
        let limiter = RouteLimiter::new(&config("10/s", None, None), 0, &f.store).unwrap();
        assert_eq!(limiter.limit, 10);
    }

    #[test]
    fn the_store_never_exceeds_max_keys() {
        let f = Fixture::new(1000);
        let limiter = f.limiter("1/min", 5, 0);
        let capacity = f.store.capacity();
        assert!(capacity <= 1000);
        for i in 0..10_000u32 {
            assert!(
                limiter.decide(&Key::V4(i)).is_allowed(),
                "a new key is served"
            );
            if i % 97 == 0 {
                assert!(f.store.len() <= capacity);
            }
        }
        assert!(f.store.len() <= capacity);
        // Eviction frees one batch (an eighth) at a time, not the whole store.
        assert!(f.store.len() >= capacity - capacity / 8);
    }

    #[test]
    fn a_limited_client_outlives_idle_and_newer_keys() {
        let f = Fixture::new(1000);
        let limiter = f.limiter("1/min", 2, 0);
        let capacity = f.store.capacity() as u32;
        // Half the store: keys used once, idle after a minute.
        for i in 0..capacity / 2 {
            limiter.decide(&Key::V4(i));
        }
        f.advance(secs(61));
        // One client uses up its quota and keeps being refused.
        let abuser = ip("203.0.113.66");
        assert!(limiter.decide(&abuser).is_allowed());
        assert!(limiter.decide(&abuser).is_allowed());
        assert!(!limiter.decide(&abuser).is_allowed());
        // Three times the store of fresh keys, a second apart in steps: the idle half goes
        // first, then the keys that become idle soonest, never the abuser (idle last).
        for step in 0..30u32 {
            for i in 0..capacity / 10 {
                limiter.decide(&Key::V6(u64::from(step) << 32 | u64::from(i)));
            }
            f.advance(secs(1));
            assert!(f.store.len() <= capacity as usize);
            assert!(
                !limiter.decide(&abuser).is_allowed(),
                "the abuser's state survived step {step}"
            );
        }
    }
}
