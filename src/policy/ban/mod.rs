//! Bans (`[ban]`, a route's `ban`): fail2ban's jail inside the proxy. The statuses a client gets
//! are strikes; `after` strikes `within` a window ban the client `for` a while. A banned client
//! gets 403 on the request path and is closed at accept on the public listeners.
//!
//! The [`Jail`] holds the strikes and bans. It belongs to the server, not to a snapshot, so bans
//! survive a reload (the reloader hands the running jail to the new snapshot). Its local store
//! is bounded like the rate limiter's ([`local::LocalJail`]); with `store = "redis"` strikes and
//! bans are shared by every replica ([`redis::SharedJail`]), and the request path still reads
//! only the local copy of the ban list.
//!
//! Clients are keyed as the limiter keys them ([`Key`]): an IPv4 address, or an IPv6 /64.

pub mod local;
pub mod redis;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::client_ip::is_trusted;
use crate::policy::ratelimit::Key;
pub use local::LocalJail;
pub use redis::SharedJail;

/// One jail's rule: the `[ban]` defaults, or a route's own `ban` merged over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRule {
    /// Statuses that count as strikes (400..=599), sorted.
    pub strikes: Vec<u16>,
    pub after: u32,
    pub within: Duration,
    pub ban_for: Duration,
    /// Where strikes are counted and what a ban names as its route: `"*"` for the `[ban]`
    /// jail, the route's name for a route with its own rule.
    pub scope: Arc<str>,
}

impl BanRule {
    /// Whether a response with this status is a strike.
    pub fn counts(&self, status: u16) -> bool {
        self.strikes.binary_search(&status).is_ok()
    }

    /// The scope as a 64-bit key of the local store.
    pub fn scope_id(&self) -> u64 {
        crate::policy::ratelimit::digest_of(self.scope.as_bytes())
    }
}

/// How the jail stores its state: the part of `[ban]` a reload cannot change without a new
/// jail (compared by the reloader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSettings {
    pub max_keys: usize,
    /// `store = "redis"`: the URL (`[rate_limit].redis_url`) and the timeout of one call.
    pub redis: Option<(String, Duration)>,
}

/// One ban as the admin listener lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    /// The address (`192.0.2.7`) or the /64 (`2001:db8:1:2::/64`).
    pub address: String,
    pub reason: String,
    pub route: String,
    /// Unix time (milliseconds) when the ban ends.
    pub expires_unix_ms: u64,
}

/// A ban just made by a strike: for the metrics and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    pub address: String,
    pub route: Arc<str>,
}

/// The strikes and bans of a server, kept across reloads.
pub struct Jail {
    local: LocalJail,
    shared: Option<SharedJail>,
    settings: JailSettings,
    removals: AtomicU64,
}

impl Jail {
    /// A jail; with Redis settings, one that also shares through Redis (connects nowhere yet:
    /// [`Jail::start_sync`] starts that once a server runs).
    pub fn new(settings: JailSettings) -> Result<Jail, String> {
        let shared = match &settings.redis {
            Some((url, timeout)) => Some(SharedJail::new(url, *timeout)?),
            None => None,
        };
        Ok(Jail {
            local: LocalJail::new(settings.max_keys),
            shared,
            settings,
            removals: AtomicU64::new(0),
        })
    }

    pub fn settings(&self) -> &JailSettings {
        &self.settings
    }

    pub fn local(&self) -> &LocalJail {
        &self.local
    }

    /// With a shared store: the task that keeps the local copy of the shared ban list fresh.
    pub fn start_sync(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.shared.is_some() {
            let jail = Arc::downgrade(self);
            tokio::spawn(redis::sync_loop(jail, shutdown));
        }
    }

    /// Whether `ip` is banned now: the request path's and the accept path's one question. Reads
    /// the local copy only (no Redis call), and costs one atomic load while nobody is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.local.is_banned(Key::from_ip(ip))
    }

    /// Counts a response's status against the client under `rule`; returns the ban it made, if
    /// any. `allow` clients are never counted. `route`: the route that answered (the ban names
    /// it).
    pub async fn strike(
        &self,
        ip: IpAddr,
        status: u16,
        rule: &BanRule,
        allow: &[IpNet],
        route: &str,
    ) -> Option<NewBan> {
        if !rule.counts(status) || is_trusted(ip, allow) {
            return None;
        }
        let key = Key::from_ip(ip);
        let new_ban = || NewBan {
            address: key_text(&key),
            route: rule.scope.clone(),
        };
        if let Some(shared) = &self.shared {
            if let Some(answer) = shared.strike(&key, rule, route).await {
                return answer.map(|until_unix_ms| {
                    self.local
                        .record(key, until_unix_ms, &reason(rule), route, true);
                    new_ban()
                });
            }
            // Redis cannot answer: the local store counts meanwhile.
        }
        self.local.strike(key, rule, route).map(|_| new_ban())
    }

    /// Every active ban, soonest to end first.
    pub fn list(&self) -> Vec<BanEntry> {
        self.local.list()
    }

    /// Lifts the ban of an address (its /64 for IPv6), here and in the shared store. `false`
    /// when it was not banned here.
    pub async fn remove(&self, ip: IpAddr) -> bool {
        let key = Key::from_ip(ip);
        // A refresh of the shared list that read it before the removal must not bring the ban
        // back: it sees the removal count change and drops what it read.
        self.removals.fetch_add(1, Ordering::SeqCst);
        let mut removed = false;
        if let Some(shared) = &self.shared {
            removed |= shared.remove(&key).await;
        }
        removed |= self.local.remove(key);
        removed
    }

    /// How many removals so far (see [`Jail::remove`]).
    pub(crate) fn removals(&self) -> u64 {
        self.removals.load(Ordering::SeqCst)
    }

    /// Bans active now.
    pub fn active(&self) -> usize {
        self.local.active()
    }

    pub(crate) fn shared(&self) -> Option<&SharedJail> {
        self.shared.as_ref()
    }
}

impl std::fmt::Debug for Jail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jail")
            .field("settings", &self.settings)
            .field("active", &self.active())
            .finish_non_exhaustive()
    }
}

/// What a snapshot knows about bans: the jail (the server's, after the first reload), the
/// `[ban]` rule when there is one, and `allow`.
#[derive(Debug, Clone)]
pub struct Bans {
    pub jail: Arc<Jail>,
    /// The `[ban]` rule, for routes without a `ban` of their own; `None`: no `[ban]`.
    pub default_rule: Option<Arc<BanRule>>,
    pub allow: Arc<[IpNet]>,
}

impl Bans {
    /// Whether `ip` may be refused: banned and not (or no longer) in `allow`.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        self.jail.is_banned(ip) && !is_trusted(ip, &self.allow)
    }
}

/// The address a ban names: `192.0.2.7` or `2001:db8:1:2::/64`.
pub fn key_text(key: &Key) -> String {
    match *key {
        Key::V4(v) => Ipv4Addr::from(v).to_string(),
        Key::V6(v) => format!("{}/64", Ipv6Addr::from(u128::from(v) << 64)),
        Key::Header(v) => format!("{v:016x}"),
    }
}

/// `"10 strikes (429) within 60s"`: why a client was banned.
pub fn reason(rule: &BanRule) -> String {
    let statuses: Vec<String> = rule.strikes.iter().map(u16::to_string).collect();
    format!(
        "{} strikes ({}) within {}",
        rule.after,
        statuses.join(", "),
        humantime::format_duration(rule.within)
    )
}

pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The JSON of `GET /bans`: `[{"address", "reason", "route", "expires", "expires_in"}]`.
pub fn list_json(entries: &[BanEntry]) -> String {
    let now = unix_now_ms();
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| {
            serde_json::json!({
                "address": entry.address,
                "reason": entry.reason,
                "route": entry.route,
                "expires": entry.expires_unix_ms.div_ceil(1000),
                "expires_in": entry.expires_unix_ms.saturating_sub(now).div_ceil(1000),
            })
        })
        .collect();
    let mut text = serde_json::Value::Array(list).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_named_as_keyed() {
        let key = |s: &str| key_text(&Key::from_ip(s.parse().unwrap()));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
    }

    #[test]
    fn reasons_say_the_rule() {
        let rule = BanRule {
            strikes: vec![401, 429],
            after: 5,
            within: Duration::from_secs(60),
            ban_for: Duration::from_secs(3600),
            scope: "login".into(),
        };
        assert_eq!(reason(&rule), "5 strikes (401, 429) within 1m");
        assert!(rule.counts(401) && rule.counts(429) && !rule.counts(404));
    }
}
