//! The shared store (`rate_limit.store = "redis"`): one quota for every replica, decided in one
//! atomic round trip.
//!
//! Each decision runs [`GCRA_SCRIPT`] with `EVALSHA` (the `redis` crate loads it again after a
//! `NOSCRIPT`, e.g. when Redis restarted). The script does governor's GCRA arithmetic on Redis
//! server time (`TIME`), so replicas whose clocks disagree still agree on the quota. The state is
//! one theoretical arrival time (TAT, microseconds) per key under
//! `rampart:rl:{route name}:{key}`, stored with a `PX` expiry equal to the time until the
//! bucket is full again: an idle key costs Redis nothing.
//!
//! The connection is a [`ConnectionManager`] (one multiplexed connection, reconnected
//! automatically), opened on the first decision: loading a config (`rampart check`, startup, a
//! reload) never needs Redis. Every decision is bounded by `rate_limit.redis_timeout` ([`DECISION_TIMEOUT`] by default); a decision that
//! fails or times out is taken by `on_store_error` (`"local"`: the in-process limiter, `"allow"`,
//! `"deny"`), never a 5xx. After a failure Redis is left alone for [`RETRY_AFTER_FAILURE`]
//! (decisions take the fallback at once instead of each waiting for the timeout), then tried
//! again; the shared quota is back as soon as Redis answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::Key;

/// The longest one decision waits for Redis (connecting included) before the fallback decides.
/// The default of `rate_limit.redis_timeout`: a loopback or same-datacenter round trip takes
/// well under a millisecond.
pub const DECISION_TIMEOUT: Duration = Duration::from_millis(100);

/// After a failed decision, how long decisions use the fallback without asking Redis.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// GCRA as governor does it. KEYS[1]: the key. ARGV[1]: T, the emission interval (µs).
/// ARGV[2]: τ, `(burst - 1) × T` (µs). Returns `{allowed, remaining, reset_us, retry_after_us}`.
pub const GCRA_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = tonumber(stored) end
local earliest = tat - tau
if now < earliest then
  local wait = earliest - now
  return {0, 0, wait + tau, wait}
end
local nxt = math.max(tat, now) + t
local idle_ms = math.ceil((nxt - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', idle_ms)
local used = nxt - (now + t)
if used < 0 then used = 0 end
local left = tau - used
if left < 0 then left = 0 end
return {1, math.floor(left / t), nxt - now, 0}
"#;

/// `rate_limit.on_store_error`: who decides while Redis cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// The in-process limiter (each replica counts its own quota meanwhile).
    Local,
    /// Every request passes.
    Allow,
    /// Every request is refused with 429.
    Deny,
}

impl OnStoreError {
    pub fn parse(text: &str) -> Option<OnStoreError> {
        match text {
            "local" => Some(OnStoreError::Local),
            "allow" => Some(OnStoreError::Allow),
            "deny" => Some(OnStoreError::Deny),
            _ => None,
        }
    }
}

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    pub allowed: bool,
    pub remaining: u32,
    pub reset: Duration,
    pub retry_after: Duration,
}

/// The Redis store of one config snapshot, shared by its limited routes.
pub struct RedisStore {
    client: redis::Client,
    timeout: Duration,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    on_error: OnStoreError,
    /// Milliseconds since `epoch` before which Redis is not asked (after a failure).
    skip_until: AtomicU64,
    epoch: Instant,
    /// Whether the last decision came from Redis (to log transitions once, not per request).
    healthy: AtomicBool,
}

/// Why Redis gave no answer (the fallback decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The exchange failed or took longer than `redis_timeout`.
    Failed,
    /// Not tried: a recent failure, and Redis is left alone for a moment.
    Skipped,
}

impl RedisStore {
    /// Parses `redis_url`; connects nowhere.
    pub fn new(url: &str, on_error: OnStoreError, timeout: Duration) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|err| err.to_string())?;
        Ok(RedisStore {
            client,
            timeout,
            connection: OnceCell::new(),
            script: redis::Script::new(GCRA_SCRIPT),
            on_error,
            skip_until: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
        })
    }

    pub fn on_error(&self) -> OnStoreError {
        self.on_error
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// One decision in Redis, or `None` when Redis cannot answer in time (the caller falls back).
    pub(super) async fn decide(
        &self,
        redis_key: &str,
        t_us: u64,
        tau_us: u64,
    ) -> Result<Answer, Unanswered> {
        if self.millis() < self.skip_until.load(Ordering::Relaxed) {
            return Err(Unanswered::Skipped);
        }
        let attempt = tokio::time::timeout(self.timeout, self.run(redis_key, t_us, tau_us));
        let result = match attempt.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match result {
            Ok(answer) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("rate_limit: Redis answers again; quotas are shared again");
                }
                Ok(answer)
            }
            Err(reason) => {
                let retry = u64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(1000);
                self.skip_until
                    .store(self.millis().saturating_add(retry), Ordering::Relaxed);
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        on_store_error = ?self.on_error,
                        "rate_limit: Redis store unavailable ({reason}); using the fallback"
                    );
                }
                Err(Unanswered::Failed)
            }
        }
    }

    async fn run(&self, redis_key: &str, t_us: u64, tau_us: u64) -> redis::RedisResult<Answer> {
        let manager = self
            .connection
            .get_or_try_init(|| super::super::redis_connection(&self.client, self.timeout, 2))
            .await?;
        let mut connection = manager.clone();
        let (allowed, remaining, reset, retry_after): (i64, i64, i64, i64) = self
            .script
            .key(redis_key)
            .arg(t_us)
            .arg(tau_us)
            .invoke_async(&mut connection)
            .await?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Answer {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset: micros(reset),
            retry_after: micros(retry_after),
        })
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// `rampart:rl:{route}:`: the prefix of a route's keys.
pub(super) fn key_prefix(route_name: &str) -> String {
    format!("rampart:rl:{route_name}:")
}

/// The key's part of a Redis key: the same on every replica.
pub(super) fn key_suffix(key: &Key) -> String {
    match *key {
        Key::V4(v) => format!("ip4:{}", std::net::Ipv4Addr::from(v)),
        Key::V6(v) => format!("ip6:{v:016x}"),
        Key::Header(v) => format!("h:{v:016x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_text() {
        assert_eq!(key_prefix("login"), "rampart:rl:login:");
        assert_eq!(
            key_suffix(&Key::from_ip("192.0.2.1".parse().unwrap())),
            "ip4:192.0.2.1"
        );
        assert_eq!(
            key_suffix(&Key::from_ip("2001:db8:1:2::1".parse().unwrap())),
            "ip6:20010db800010002"
        );
        assert_eq!(
            key_suffix(&Key::from_header_value(b"secret-api-key")),
            "h:4cfed12f4c17c68b"
        );
    }

    #[test]
    fn urls_are_checked_without_connecting() {
        assert!(RedisStore::new(
            "redis://127.0.0.1:1/",
            OnStoreError::Local,
            DECISION_TIMEOUT
        )
        .is_ok());
        assert!(RedisStore::new("http://nope", OnStoreError::Local, DECISION_TIMEOUT).is_err());
        // No TLS client is built in: refused at load rather than failing every decision.
        assert!(
            RedisStore::new("rediss://127.0.0.1/", OnStoreError::Local, DECISION_TIMEOUT).is_err()
        );
        assert_eq!(OnStoreError::parse("deny"), Some(OnStoreError::Deny));
        assert_eq!(OnStoreError::parse("maybe"), None);
    }
}
