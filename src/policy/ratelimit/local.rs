//! The in-process store of rate-limit state: one GCRA timestamp per (route, key), in a sharded
//! map with a hard bound on the number of keys.
//!
//! governor's own keyed stores grow without bound between calls to `retain_recent()`, which only
//! drops keys whose bucket is full again: a flood of fresh client addresses within one period
//! would grow them past any limit. This store is a governor [`StateStore`], so governor still does
//! the GCRA arithmetic, but it enforces `rate_limit.max_keys` itself:
//!
//! - the map is split into shards (picked by a keyed hash the client cannot steer), each holding
//!   at most `max_keys / shards` keys, so the whole never exceeds `max_keys`;
//! - a new key arriving at a full shard first makes room for a batch (an eighth of the shard):
//!   idle keys (bucket full again, so dropping them loses nothing) go first, then the keys that
//!   would become idle soonest, which have the least state to lose (among keys that made one
//!   request, the least recently used). One scan per batch keeps an insert O(1) amortized; a
//!   lookup never scans.
//!
//! A key evicted before it is idle loses its state: that client starts again with a full bucket
//! (fails open). The alternative, refusing new clients when the store is full, would let a flood
//! of addresses lock every new client out. A client that is being limited right now becomes
//! idle later than any key used once since, so a flood of fresh keys evicts it last.

use std::cell::Cell;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::policy::lock_shard;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::nanos::Nanos;
use governor::state::StateStore;

use super::Key;

/// Shards at most; fewer for small stores so a shard still holds at least `MIN_SHARD_KEYS`.
const MAX_SHARDS: usize = 256;
const MIN_SHARD_KEYS: usize = 1024;
/// A full shard frees `1 / EVICT_FRACTION` of its keys at once (at least one).
const EVICT_FRACTION: usize = 8;

/// The rate-limit state of every limited route of one snapshot, bounded to `max_keys` keys.
///
/// Generic over governor's [`Clock`] so tests drive time by hand (`FakeRelativeClock`).
pub struct LocalStore<C: Clock = DefaultClock> {
    shards: Box<[Mutex<Shard>]>,
    /// Picks the shard. Keyed per process, so a client cannot aim its keys at one shard.
    shard_hasher: RandomState,
    shard_cap: usize,
    clock: C,
    /// The store's time origin; entries remember when they become idle in this frame.
    start: C::Instant,
}

struct Shard {
    map: HashMap<StoreKey, Entry>,
}

/// A key of one route, packed into 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StoreKey {
    value: u64,
    route: u32,
    kind: u8,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// governor's theoretical arrival time, in the route limiter's time frame.
    tat: u64,
    /// When the bucket is full again, in the store's time frame: from then on the entry is
    /// idle and dropping it changes no decision.
    idle_at: u64,
}

impl<C: Clock> LocalStore<C> {
    /// A store for at most `max_keys` keys (at least one). Shards start empty and grow on use.
    pub fn new(max_keys: usize, clock: C) -> Self {
        let max_keys = max_keys.max(1);
        let shards = crate::policy::shard_count(max_keys, MIN_SHARD_KEYS, MAX_SHARDS);
        let start = clock.now();
        LocalStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                    })
                })
                .collect(),
            shard_hasher: RandomState::new(),
            shard_cap: max_keys / shards,
            clock,
            start,
        }
    }

    /// The most keys this store holds at once (`max_keys` rounded down to a multiple of the
    /// shard count).
    pub fn capacity(&self) -> usize {
        self.shard_cap * self.shards.len()
    }

    /// Keys held now (locks every shard in turn: for tests and diagnostics, not the hot path).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock_shard(s).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn clock(&self) -> &C {
        &self.clock
    }

    /// Nanoseconds since the store's start.
    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    fn shard(&self, key: &StoreKey) -> &Mutex<Shard> {
        let hash = self.shard_hasher.hash_one(key);
        // Bits from the middle of the hash: the shard's own map uses the low bits for its
        // buckets and the top bits for its tags, which must still vary within a shard.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }
}

impl Shard {
    /// Frees at least one batch of keys: all idle ones if that is enough, else the ones that
    /// become idle soonest. One pass to collect, one selection, one pass to remove.
    fn make_room(&mut self, now: u64, batch: usize) {
        let mut idle_ats: Vec<u64> = self.map.values().map(|e| e.idle_at).collect();
        let batch = batch.clamp(1, idle_ats.len().max(1));
        if idle_ats.is_empty() {
            return;
        }
        let threshold = *idle_ats.select_nth_unstable(batch - 1).1;
        if threshold <= now {
            // At least a batch is idle: drop every idle key, nothing else.
            self.map.retain(|_, e| e.idle_at > now);
            return;
        }
        // Drop the `batch` soonest-idle keys; among keys tied at the threshold, only as many as
        // the batch still needs (a burst of new keys at one instant all tie).
        let below = idle_ats.iter().filter(|&&t| t < threshold).count();
        let mut ties = batch - below;
        self.map.retain(|_, e| {
            if e.idle_at < threshold {
                false
            } else if e.idle_at == threshold && ties > 0 {
                ties -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// One route's view of the shared store: the governor [`StateStore`] of its limiter.
pub(super) struct RouteState<C: Clock> {
    store: Arc<LocalStore<C>>,
    route: u32,
    /// The route limiter's time origin, in the store's frame (nanoseconds after its start).
    offset: u64,
}

impl<C: Clock> RouteState<C> {
    /// `route_start`: the instant the route's limiter counts from.
    pub(super) fn new(store: Arc<LocalStore<C>>, route: u32, route_start: C::Instant) -> Self {
        let offset = route_start.duration_since(store.start).as_u64();
        RouteState {
            store,
            route,
            offset,
        }
    }
}

/// The key governor passes to the store, with a slot the store writes the new theoretical
/// arrival time into (governor's snapshot keeps it private, and `RateLimit-Reset` needs it).
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub key: Key,
    pub tat: Cell<u64>,
}

impl Probe {
    pub(super) fn new(key: Key) -> Self {
        Probe {
            key,
            tat: Cell::new(0),
        }
    }
}

impl PartialEq for Probe {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Probe {}

impl Hash for Probe {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl<C: Clock> StateStore for RouteState<C> {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (kind, value) = probe.key.parts();
        let key = StoreKey {
            value,
            route: self.route,
            kind,
        };
        let store = &self.store;
        let mut shard = lock_shard(store.shard(&key));
        // Under the shard lock, `f` runs exactly once: no compare-and-swap retries.
        match shard.map.entry(key) {
            MapEntry::Occupied(mut occupied) => {
                let (result, tat) = f(Some(Nanos::from(occupied.get().tat)))?;
                probe.tat.set(tat.as_u64());
                *occupied.get_mut() = Entry {
                    tat: tat.as_u64(),
                    idle_at: self.offset.saturating_add(tat.as_u64()),
                };
                Ok(result)
            }
            MapEntry::Vacant(_) => {
                let (result, tat) = f(None)?;
                probe.tat.set(tat.as_u64());
                if shard.map.len() >= store.shard_cap {
                    let batch = store.shard_cap / EVICT_FRACTION;
                    shard.make_room(store.now(), batch);
                }
                shard.map.insert(
                    key,
                    Entry {
                        tat: tat.as_u64(),
                        idle_at: self.offset.saturating_add(tat.as_u64()),
                    },
                );
                Ok(result)
            }
        }
    }
}

impl<C: Clock> std::fmt::Debug for LocalStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn entry(idle_at: u64) -> Entry {
        Entry { tat: 0, idle_at }
    }

    fn shard_with(idle_ats: &[u64]) -> Shard {
        let mut map = HashMap::new();
        for (i, &idle_at) in idle_ats.iter().enumerate() {
            let key = StoreKey {
                value: i as u64,
                route: 0,
                kind: 0,
            };
            map.insert(key, entry(idle_at));
        }
        Shard { map }
    }

    fn remaining(shard: &Shard) -> Vec<u64> {
        let mut left: Vec<u64> = shard.map.values().map(|e| e.idle_at).collect();
        left.sort_unstable();
        left
    }

    #[test]
    fn shards_split_the_budget_without_exceeding_it() {
        let clock = FakeRelativeClock::default();
        for max_keys in [1, 1000, 1024, 100_000, 1_000_000, 1_000_001] {
            let store = LocalStore::new(max_keys, clock.clone());
            assert!(store.shards.len().is_power_of_two());
            assert!(store.shards.len() <= MAX_SHARDS);
            assert!(store.capacity() <= max_keys, "{max_keys}");
            assert!(store.capacity() > max_keys - store.shards.len());
        }
    }

    #[test]
    fn idle_keys_go_first_and_only_them_when_enough() {
        // now = 10: keys with idle_at <= 10 are idle.
        let mut shard = shard_with(&[1, 2, 3, 50, 60, 70]);
        shard.make_room(10, 2);
        assert_eq!(remaining(&shard), [50, 60, 70]);
    }

    #[test]
    fn soonest_idle_go_next_when_too_few_are_idle() {
        let mut shard = shard_with(&[5, 50, 40, 90, 70]);
        shard.make_room(10, 3);
        assert_eq!(remaining(&shard), [70, 90]);
    }

    #[test]
    fn ties_at_the_threshold_free_only_the_batch() {
        let mut shard = shard_with(&[100; 16]);
        shard.make_room(0, 2);
        assert_eq!(shard.map.len(), 14);
    }
}
