//! Per-route policies applied on the request path: IP rules before anything else is done for
//! the client, security headers on every response.

pub mod access;
pub mod auth;
pub mod ban;
pub mod cookies;
pub mod cors;
pub mod csp;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub mod headers;
pub mod ratelimit;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The number of shards of a bounded local store (the rate limiter's keys, the jail's counters
/// and bans): about one per `min_shard_keys` keys, at most `max_shards`, a power of two.
pub(crate) fn shard_count(max_keys: usize, min_shard_keys: usize, max_shards: usize) -> usize {
    let n = (max_keys / min_shard_keys).clamp(1, max_shards);
    if n.is_power_of_two() {
        n
    } else {
        n.next_power_of_two() / 2
    }
}

/// A shard of a local store, locked. Every update under it is one insertion, removal or
/// assignment, so a panic while it was held cannot leave it inconsistent: a poisoned lock is
/// used as is.
pub(crate) fn lock_shard<T>(shard: &Mutex<T>) -> MutexGuard<'_, T> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A Redis connection for the shared stores (rate limits, bans): every wait bounded by
/// `timeout`, `retries` reconnection attempts at most 1 s apart. Opened by the first call, so
/// loading a config never needs Redis.
pub(crate) async fn redis_connection(
    client: &redis::Client,
    timeout: std::time::Duration,
    retries: usize,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(retries)
        .set_max_delay(1000);
    redis::aio::ConnectionManager::new_with_config(client.clone(), config).await
}
