//! The in-process jail: strike counters and bans in a sharded map with a hard bound, as the
//! rate limiter's local store does it (`policy/ratelimit/local.rs`).
//!
//! - A client's strikes and its ban live in one shard (picked by a keyed hash the client cannot
//!   steer); each shard holds at most `max_keys / shards` strike counters and as many bans, so a
//!   flood of distinct addresses cannot grow the jail past `2 × max_keys` entries.
//! - A strike counter is a window that opens at the client's first strike and lasts `within`
//!   (fail2ban's `findtime`); `after` strikes before it closes ban the client.
//! - A new counter arriving at a full shard first frees a batch (an eighth): closed windows go
//!   first, then the windows that close soonest. A new ban at a full shard drops ended bans
//!   first, then the bans that end soonest. Eviction never scans on a lookup.
//! - While no ban exists, [`LocalJail::is_banned`] costs one atomic load: the request path and
//!   the accept path pay nothing for a jail nobody is in.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::policy::lock_shard;
use std::time::Instant;

use super::{key_text, reason, unix_now_ms, BanEntry, BanRule};
use crate::policy::ratelimit::Key;

const MAX_SHARDS: usize = 64;
const MIN_SHARD_KEYS: usize = 256;
/// A full shard frees `1 / EVICT_FRACTION` of its entries at once (at least one).
const EVICT_FRACTION: usize = 8;

pub struct LocalJail {
    shards: Box<[Mutex<Shard>]>,
    shard_hasher: RandomState,
    shard_cap: usize,
    epoch: Instant,
    /// The epoch as Unix time (ms): a ban's end in Unix time is derived, not stored.
    epoch_unix_ms: u64,
    /// Bans held (ended ones included until removed): the fast path's test.
    bans: AtomicUsize,
    /// The reasons and routes bans name, shared by the bans that name the same (a ban holds a
    /// pointer, not two strings: a million bans would otherwise be two million allocations).
    labels: Mutex<HashMap<LabelKey, Arc<Label>>>,
}

/// `(reason, route)`.
type LabelKey = (Box<str>, Box<str>);

/// Why a client was banned, and by which route's response.
#[derive(Debug)]
struct Label {
    reason: Box<str>,
    route: Box<str>,
}

/// Distinct labels kept for sharing; past it (only a shared store full of odd labels could get
/// there) a ban gets a label of its own.
const MAX_LABELS: usize = 1024;

#[derive(Default)]
struct Shard {
    /// (scope, client) → the open window.
    strikes: HashMap<(u64, Key), Window>,
    bans: HashMap<Key, Ban>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the window closes (ms since the jail's epoch).
    closes: u64,
    count: u32,
}

#[derive(Debug, Clone)]
struct Ban {
    /// When the ban ends (ms since the jail's epoch).
    until: u64,
    label: Arc<Label>,
    /// Known from (or written to) the shared store.
    shared: bool,
}

impl LocalJail {
    /// A jail for at most `max_keys` strike counters and `max_keys` bans (at least one each).
    pub fn new(max_keys: usize) -> LocalJail {
        let max_keys = max_keys.max(1);
        let shards = crate::policy::shard_count(max_keys, MIN_SHARD_KEYS, MAX_SHARDS);
        LocalJail {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_hasher: RandomState::new(),
            shard_cap: max_keys / shards,
            epoch: Instant::now(),
            epoch_unix_ms: unix_now_ms(),
            bans: AtomicUsize::new(0),
            labels: Mutex::new(HashMap::new()),
        }
    }

    /// The most strike counters (and the most bans) held at once.
    pub fn capacity(&self) -> usize {
        self.shard_cap * self.shards.len()
    }

    /// Strike counters and bans held now (locks every shard: tests and diagnostics).
    pub fn len(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(s, b), shard| {
            let shard = lock_shard(shard);
            (s + shard.strikes.len(), b + shard.bans.len())
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn label(&self, reason: &str, route: &str) -> Arc<Label> {
        let mut labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        let key: LabelKey = (reason.into(), route.into());
        if let Some(label) = labels.get(&key) {
            return label.clone();
        }
        let label = Arc::new(Label {
            reason: key.0.clone(),
            route: key.1.clone(),
        });
        if labels.len() < MAX_LABELS {
            labels.insert(key, label.clone());
        }
        label
    }

    fn until_unix_ms(&self, ban: &Ban) -> u64 {
        self.epoch_unix_ms.saturating_add(ban.until)
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let hash = self.shard_hasher.hash_one(key);
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    pub fn is_banned(&self, key: Key) -> bool {
        if self.bans.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.is_banned_at(key, self.now())
    }

    fn is_banned_at(&self, key: Key, now: u64) -> bool {
        let mut shard = lock_shard(self.shard(&key));
        match shard.bans.get(&key) {
            Some(ban) if ban.until > now => true,
            Some(_) => {
                shard.bans.remove(&key);
                self.bans.fetch_sub(1, Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    /// Counts one strike; `Some(until_unix_ms)` when it banned the client.
    pub fn strike(&self, key: Key, rule: &BanRule, route: &str) -> Option<u64> {
        self.strike_at(key, rule, route, self.now())
    }

    fn strike_at(&self, key: Key, rule: &BanRule, route: &str, now: u64) -> Option<u64> {
        let within = duration_ms(rule.within);
        let scope = rule.scope_id();
        let mut shard = lock_shard(self.shard(&key));
        let count = match shard.strikes.get_mut(&(scope, key)) {
            Some(window) if window.closes > now => {
                window.count = window.count.saturating_add(1);
                window.count
            }
            Some(window) => {
                *window = Window {
                    closes: now.saturating_add(within),
                    count: 1,
                };
                1
            }
            None => {
                if shard.strikes.len() >= self.shard_cap {
                    shard.free_windows(now, self.shard_cap / EVICT_FRACTION);
                }
                shard.strikes.insert(
                    (scope, key),
                    Window {
                        closes: now.saturating_add(within),
                        count: 1,
                    },
                );
                1
            }
        };
        if count < rule.after {
            return None;
        }
        shard.strikes.remove(&(scope, key));
        let ban = Ban {
            until: now.saturating_add(duration_ms(rule.ban_for)),
            label: self.label(&reason(rule), route),
            shared: false,
        };
        let until_unix_ms = self.until_unix_ms(&ban);
        self.insert_ban(&mut shard, key, ban, now);
        Some(until_unix_ms)
    }

    /// Records a ban (a new one, or one of the shared list) unless it has already ended.
    pub fn record(&self, key: Key, until_unix_ms: u64, reason: &str, route: &str, shared: bool) {
        let left = until_unix_ms.saturating_sub(unix_now_ms());
        if left == 0 {
            return;
        }
        let now = self.now();
        let label = self.label(reason, route);
        let mut shard = lock_shard(self.shard(&key));
        let ban = Ban {
            until: now.saturating_add(left),
            label,
            shared,
        };
        self.insert_ban(&mut shard, key, ban, now);
    }

    fn insert_ban(&self, shard: &mut Shard, key: Key, ban: Ban, now: u64) {
        if !shard.bans.contains_key(&key) && shard.bans.len() >= self.shard_cap {
            let before = shard.bans.len();
            shard.free_bans(now, self.shard_cap / EVICT_FRACTION);
            self.bans
                .fetch_sub(before - shard.bans.len(), Ordering::Relaxed);
        }
        if shard.bans.insert(key, ban).is_none() {
            self.bans.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, key: Key) -> bool {
        let mut shard = lock_shard(self.shard(&key));
        shard.strikes.retain(|(_, k), _| *k != key);
        match shard.bans.remove(&key) {
            Some(ban) => {
                self.bans.fetch_sub(1, Ordering::Relaxed);
                ban.until > self.now()
            }
            None => false,
        }
    }

    /// Every active ban, soonest to end first.
    pub fn list(&self) -> Vec<BanEntry> {
        let now = self.now();
        let mut entries: Vec<BanEntry> = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock_shard(shard);
            for (key, ban) in shard.bans.iter().filter(|(_, ban)| ban.until > now) {
                entries.push(BanEntry {
                    address: key_text(key),
                    reason: ban.label.reason.to_string(),
                    route: ban.label.route.to_string(),
                    expires_unix_ms: self.until_unix_ms(ban),
                });
            }
        }
        entries
            .sort_by(|a, b| (a.expires_unix_ms, &a.address).cmp(&(b.expires_unix_ms, &b.address)));
        entries
    }

    /// Bans active now.
    pub fn active(&self) -> usize {
        if self.bans.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let now = self.now();
        self.shards
            .iter()
            .map(|shard| {
                lock_shard(shard)
                    .bans
                    .values()
                    .filter(|b| b.until > now)
                    .count()
            })
            .sum()
    }

    /// The bans made here that the shared store has not seen (made while it was down):
    /// `(key, until_unix_ms, reason, route)`.
    pub(super) fn unshared(&self) -> Vec<(Key, u64, String, String)> {
        let now = self.now();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock_shard(shard);
            for (key, ban) in shard.bans.iter() {
                if !ban.shared && ban.until > now {
                    out.push((
                        *key,
                        self.until_unix_ms(ban),
                        ban.label.reason.to_string(),
                        ban.label.route.to_string(),
                    ));
                }
            }
        }
        out
    }

    /// Marks bans as known to the shared store.
    pub(super) fn mark_shared(&self, keys: &[Key]) {
        for key in keys {
            if let Some(ban) = lock_shard(self.shard(key)).bans.get_mut(key) {
                ban.shared = true;
            }
        }
    }

    /// Drops the shared bans that the shared list no longer holds (lifted on another replica,
    /// or ended there). `present`: the keys of the shared list.
    pub(super) fn forget_shared_except(&self, present: &std::collections::HashSet<Key>) {
        for shard in self.shards.iter() {
            let mut shard = lock_shard(shard);
            let before = shard.bans.len();
            shard
                .bans
                .retain(|key, ban| !ban.shared || present.contains(key));
            self.bans
                .fetch_sub(before - shard.bans.len(), Ordering::Relaxed);
        }
    }
}

impl Shard {
    /// Frees at least `batch` strike counters: closed windows first, then the soonest to close.
    fn free_windows(&mut self, now: u64, batch: usize) {
        let closes: Vec<u64> = self.strikes.values().map(|w| w.closes).collect();
        if let Some(threshold) = threshold(closes, batch, now) {
            let mut ties = threshold.1;
            self.strikes
                .retain(|_, w| keep(w.closes, threshold.0, now, &mut ties));
        }
    }

    /// Frees at least `batch` bans: ended ones first, then the soonest to end.
    fn free_bans(&mut self, now: u64, batch: usize) {
        let ends: Vec<u64> = self.bans.values().map(|b| b.until).collect();
        if let Some(threshold) = threshold(ends, batch, now) {
            let mut ties = threshold.1;
            self.bans
                .retain(|_, b| keep(b.until, threshold.0, now, &mut ties));
        }
    }
}

/// The eviction threshold for `batch` entries: `(t, ties)` where entries ending before `t` go,
/// and `ties` of those ending exactly at `t`. When a batch has ended already, `t` is `now + 1`
/// with no ties: every ended entry goes, nothing else.
fn threshold(mut ends: Vec<u64>, batch: usize, now: u64) -> Option<(u64, usize)> {
    if ends.is_empty() {
        return None;
    }
    let batch = batch.clamp(1, ends.len());
    let t = *ends.select_nth_unstable(batch - 1).1;
    if t <= now {
        return Some((now.saturating_add(1), 0));
    }
    let below = ends.iter().filter(|&&e| e < t).count();
    Some((t, batch - below))
}

fn keep(end: u64, threshold: u64, now: u64, ties: &mut usize) -> bool {
    if end <= now || end < threshold {
        false
    } else if end == threshold && *ties > 0 {
        *ties -= 1;
        false
    } else {
        true
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl std::fmt::Debug for LocalJail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalJail")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rule(after: u32, within_s: u64, for_s: u64) -> BanRule {
        BanRule {
            strikes: vec![429],
            after,
            within: Duration::from_secs(within_s),
            ban_for: Duration::from_secs(for_s),
            scope: "*".into(),
        }
    }

    fn ip(text: &str) -> Key {
        Key::from_ip(text.parse().unwrap())
    }

    #[test]
    fn after_strikes_within_the_window_ban_until_the_end() {
        let jail = LocalJail::new(10_000);
        let rule = rule(3, 60, 600);
        let client = ip("192.0.2.1");
        assert!(jail.strike_at(client, &rule, "r", 0).is_none());
        assert!(jail.strike_at(client, &rule, "r", 10_000).is_none());
        assert!(!jail.is_banned_at(client, 10_000));
        assert!(jail.strike_at(client, &rule, "r", 59_000).is_some());
        assert!(jail.is_banned_at(client, 59_000));
        assert!(jail.is_banned_at(client, 659_000 - 1));
        assert!(!jail.is_banned_at(ip("192.0.2.2"), 60_000));
        // Ended: not banned, and the entry is gone.
        assert!(!jail.is_banned_at(client, 659_000));
        assert_eq!(jail.len(), (0, 0));
    }

    #[test]
    fn strikes_outside_the_window_start_a_new_one() {
        let jail = LocalJail::new(10_000);
        let rule = rule(3, 60, 600);
        let client = ip("192.0.2.1");
        jail.strike_at(client, &rule, "r", 0);
        jail.strike_at(client, &rule, "r", 1_000);
        // The window closed at 60 s: this is the first strike of a new one.
        assert!(jail.strike_at(client, &rule, "r", 61_000).is_none());
        assert!(jail.strike_at(client, &rule, "r", 62_000).is_none());
        assert!(jail.strike_at(client, &rule, "r", 63_000).is_some());
    }

    #[test]
    fn scopes_count_apart_and_ipv6_by_64() {
        let jail = LocalJail::new(10_000);
        let login = BanRule {
            scope: "login".into(),
            ..rule(2, 60, 600)
        };
        let general = rule(2, 60, 600);
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2::ffff");
        jail.strike_at(a, &general, "r", 0);
        assert!(jail.strike_at(b, &login, "r", 0).is_none(), "another scope");
        assert!(jail.strike_at(b, &general, "r", 0).is_some(), "same /64");
        assert!(jail.is_banned_at(a, 1));
        assert!(!jail.is_banned_at(ip("2001:db8:1:3::1"), 1));
        assert!(jail.remove(a));
        assert!(!jail.is_banned_at(b, 1));
    }

    /// A million distinct clients striking once each (a flood of spoofed sources) keeps the
    /// strike counters within the bound, and a million bans keep the ban list within it too.
    #[test]
    fn a_flood_of_a_million_keys_stays_within_the_bound() {
        let jail = LocalJail::new(100_000);
        let capacity = jail.capacity();
        assert!(capacity <= 100_000);
        let strikes = rule(2, 60, 600);
        for i in 0..1_000_000u32 {
            jail.strike_at(Key::V4(i), &strikes, "r", u64::from(i / 1000));
        }
        let (counters, bans) = jail.len();
        assert!(counters <= capacity, "{counters} counters");
        assert!(counters >= capacity - capacity / EVICT_FRACTION);
        assert_eq!(bans, 0);

        // An abuser banned early stays banned while a million one-strike bans come and go
        // (they all end before it: for 10 s against its hour).
        let abuser = Key::V6(0xdead);
        let hour = rule(1, 60, 3600);
        jail.strike_at(abuser, &hour, "r", 0);
        let quick = rule(1, 60, 10);
        for i in 0..1_000_000u32 {
            jail.strike_at(Key::V4(i), &quick, "r", 1);
        }
        let (_, bans) = jail.len();
        assert!(bans <= capacity, "{bans} bans");
        assert_eq!(jail.bans.load(Ordering::Relaxed), bans);
        assert!(jail.is_banned_at(abuser, 2));
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold(vec![1, 2, 3, 50], 2, 10), Some((11, 0)));
        assert_eq!(threshold(vec![5, 50, 40, 90, 70], 3, 10), Some((50, 1)));
        assert_eq!(threshold(vec![100; 16], 2, 0), Some((100, 2)));
        assert_eq!(threshold(vec![], 2, 0), None);
    }
}
