//! The shared jail (`[ban] store = "redis"`, through `[rate_limit].redis_url`): one ban list for
//! every replica.
//!
//! - A strike is one round trip: [`STRIKE_SCRIPT`] counts it under
//!   `rampart:ban:strikes:{scope}:{client}` (a window that opens at the first strike, as a `PX`
//!   expiry of `within`) and, at `after`, writes the ban into the hash `rampart:bans`
//!   (field: the client, value: `until_ms \t route \t reason`, `until_ms` in Redis time).
//! - The request path never calls Redis: every replica keeps a local copy of the list, refreshed
//!   by [`sync_loop`] every [`SYNC_INTERVAL`] (one `HGETALL`; ended bans are deleted then). A ban
//!   lifted on one replica (`DELETE /bans/IP`) leaves the others' copies at the next refresh.
//! - Every call is bounded by `[rate_limit].redis_timeout`. While Redis cannot answer, strikes
//!   are counted in the local jail and the bans it makes are enforced locally; they are written
//!   to Redis once it answers again. Bans already copied stay enforced meanwhile.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Weak;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::{BanRule, Jail};
use crate::policy::ratelimit::Key;

/// The hash of active bans.
pub const BANS_KEY: &str = "rampart:bans";

/// How often each replica copies the shared ban list.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed call, how long Redis is left alone (calls fall back at once meanwhile).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// KEYS[1]: the strike counter, KEYS[2]: [`BANS_KEY`]. ARGV: within (ms), after, ban length
/// (ms), the client's field, route, reason. Returns the ban's end (Unix ms, Redis time), or 0.
pub const STRIKE_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n < tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ends = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[4], string.format('%.0f', ends) .. '\t' .. ARGV[5] .. '\t' .. ARGV[6])
return ends
"#;

pub struct SharedJail {
    client: redis::Client,
    timeout: Duration,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    skip_until: AtomicU64,
    epoch: Instant,
    healthy: AtomicBool,
}

impl SharedJail {
    pub fn new(url: &str, timeout: Duration) -> Result<SharedJail, String> {
        let client = redis::Client::open(url).map_err(|err| err.to_string())?;
        Ok(SharedJail {
            client,
            timeout,
            connection: OnceCell::new(),
            script: redis::Script::new(STRIKE_SCRIPT),
            skip_until: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let manager = self
            .connection
            .get_or_try_init(|| super::super::redis_connection(&self.client, self.timeout, 1))
            .await?;
        Ok(manager.clone())
    }

    /// Runs one call within the timeout; `None` (and Redis left alone for a while) on failure.
    async fn call<T, F>(&self, what: &str, call: F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.millis() < self.skip_until.load(Ordering::Relaxed) {
            return None;
        }
        let reason = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("ban: Redis answers again; the ban list is shared again");
                }
                return Some(value);
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        let retry = u64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(1000);
        self.skip_until
            .store(self.millis().saturating_add(retry), Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "ban: Redis store unavailable during {what} ({reason}); strikes and bans are \
                 local until it answers"
            );
        }
        None
    }

    /// One strike in Redis: `Some(Some(until_unix_ms))` when it banned, `Some(None)` when not,
    /// `None` when Redis could not answer.
    pub(super) async fn strike(
        &self,
        key: &Key,
        rule: &BanRule,
        route: &str,
    ) -> Option<Option<u64>> {
        let counter = format!("rampart:ban:strikes:{}:{}", rule.scope, field(key));
        let within = duration_ms(rule.within);
        let ban_for = duration_ms(rule.ban_for);
        let reason = super::reason(rule);
        let ends: i64 = self
            .call("a strike", async {
                let mut connection = self.connection().await?;
                self.script
                    .key(&counter)
                    .key(BANS_KEY)
                    .arg(within)
                    .arg(rule.after)
                    .arg(ban_for)
                    .arg(field(key))
                    .arg(route)
                    .arg(&reason)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Some(u64::try_from(ends).ok().filter(|&ends| ends > 0))
    }

    /// Lifts a ban in Redis; `true` when Redis held it.
    pub(super) async fn remove(&self, key: &Key) -> bool {
        let removed: Option<i64> = self
            .call("an unban", async {
                let mut connection = self.connection().await?;
                redis::cmd("HDEL")
                    .arg(BANS_KEY)
                    .arg(field(key))
                    .query_async(&mut connection)
                    .await
            })
            .await;
        removed.unwrap_or(0) > 0
    }

    /// Copies the shared list into the local jail, writes the local-only bans to Redis and
    /// deletes the bans that ended. `false` when Redis could not answer.
    pub(super) async fn sync(&self, jail: &Jail) -> bool {
        let removals = jail.removals();
        let list: Option<Vec<(String, String)>> = self
            .call("a ban list refresh", async {
                let mut connection = self.connection().await?;
                redis::cmd("HGETALL")
                    .arg(BANS_KEY)
                    .query_async(&mut connection)
                    .await
            })
            .await;
        let Some(list) = list else { return false };
        if jail.removals() != removals {
            // A ban was lifted meanwhile: this copy may still hold it. The next round reads
            // the list again.
            return true;
        }
        let now = super::unix_now_ms();
        let mut present = HashSet::new();
        let mut ended = Vec::new();
        for (name, value) in &list {
            let (Some(key), Some((until, route, reason))) = (parse_field(name), parse_value(value))
            else {
                // Not ours, or damaged: left alone.
                continue;
            };
            if until <= now {
                ended.push(name.clone());
                continue;
            }
            present.insert(key);
            jail.local.record(key, until, reason, route, true);
        }
        jail.local.forget_shared_except(&present);
        // Bans made here while Redis was away: shared now.
        let unshared = jail.local.unshared();
        if !unshared.is_empty() || !ended.is_empty() {
            let written = self
                .call("a ban list write", async {
                    let mut connection = self.connection().await?;
                    let mut pipe = redis::pipe();
                    for (key, until, reason, route) in &unshared {
                        pipe.cmd("HSET")
                            .arg(BANS_KEY)
                            .arg(field(key))
                            .arg(format!("{until}\t{route}\t{reason}"))
                            .ignore();
                    }
                    for name in &ended {
                        pipe.cmd("HDEL").arg(BANS_KEY).arg(name).ignore();
                    }
                    pipe.query_async::<()>(&mut connection).await
                })
                .await;
            if written.is_some() {
                let keys: Vec<Key> = unshared.iter().map(|(key, ..)| *key).collect();
                jail.local.mark_shared(&keys);
            }
        }
        true
    }
}

/// Keeps a jail's copy of the shared list fresh until shutdown (or until the jail is dropped).
pub(super) async fn sync_loop(jail: Weak<Jail>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        {
            let Some(jail) = jail.upgrade() else { return };
            if let Some(shared) = jail.shared() {
                // Boxed: the exchange's state stays off this task's stack between rounds.
                Box::pin(shared.sync(&jail)).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SYNC_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The client's field in Redis: `ip4:192.0.2.7` or `ip6:{upper 64 bits in hex}` (as the rate
/// limiter's keys).
pub fn field(key: &Key) -> String {
    match *key {
        Key::V4(v) => format!("ip4:{}", Ipv4Addr::from(v)),
        Key::V6(v) => format!("ip6:{v:016x}"),
        Key::Header(v) => format!("h:{v:016x}"),
    }
}

fn parse_field(text: &str) -> Option<Key> {
    if let Some(v4) = text.strip_prefix("ip4:") {
        return v4.parse::<Ipv4Addr>().ok().map(|ip| Key::V4(u32::from(ip)));
    }
    let v6 = text.strip_prefix("ip6:")?;
    if v6.len() != 16 {
        return None;
    }
    u64::from_str_radix(v6, 16).ok().map(Key::V6)
}

fn parse_value(text: &str) -> Option<(u64, &str, &str)> {
    let mut parts = text.splitn(3, '\t');
    let until = parts.next()?.parse().ok()?;
    Some((until, parts.next()?, parts.next().unwrap_or("")))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl std::fmt::Debug for SharedJail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedJail")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        for ip in ["192.0.2.7", "2001:db8:1:2::9"] {
            let key = Key::from_ip(ip.parse().unwrap());
            assert_eq!(parse_field(&field(&key)), Some(key));
        }
        assert_eq!(
            field(&Key::from_ip("192.0.2.7".parse().unwrap())),
            "ip4:192.0.2.7"
        );
        assert_eq!(parse_field("ip6:12"), None);
        assert_eq!(parse_field("h:0000000000000001"), None);
        assert_eq!(
            parse_value("1700000000000\tlogin\t5 strikes"),
            Some((1_700_000_000_000, "login", "5 strikes"))
        );
        assert_eq!(parse_value("soon\tlogin\tx"), None);
    }
}
