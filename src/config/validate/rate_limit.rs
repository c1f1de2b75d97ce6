//! `[rate_limit]` (the stores) and a route's `rate_limit`.

#[allow(unused_imports)]
use super::*;

/// Bounds below which `max_keys` would evict live clients under ordinary traffic, and above
/// which the store could take gigabytes.
const MAX_KEYS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=100_000_000;

/// A local store's `max_keys` (`rate_limit.max_keys`, `ban.max_keys`): out of bounds is an
/// error naming `key` and the memory `per_key` costs; the value is clamped so validation goes on.
pub(super) fn bounded_max_keys(
    v: &mut Validator,
    max_keys: u64,
    key: &str,
    per_key: &str,
) -> usize {
    if !MAX_KEYS_RANGE.contains(&max_keys) {
        v.near(
            0..0,
            key,
            format!("must be between 1000 and 100000000 ({per_key})"),
        );
    }
    let max_keys = max_keys.clamp(*MAX_KEYS_RANGE.start(), *MAX_KEYS_RANGE.end());
    usize::try_from(max_keys).unwrap_or(usize::MAX)
}

/// Where the limited routes of a snapshot count: the local store, and with `store = "redis"`
/// the shared store in front of it (the local one is then the `on_store_error = "local"`
/// fallback).
pub(crate) struct LimitStores {
    local: Arc<LocalStore>,
    redis: Option<Arc<RedisStore>>,
}

/// `[rate_limit]`: the stores all the limited routes of the snapshot count in. Connects nowhere:
/// the Redis connection is opened by the first decision.
pub(super) fn rate_limit_store(
    v: &mut Validator<'_>,
    store: &model::RateLimitStore,
) -> LimitStores {
    let on_error = OnStoreError::parse(store.on_store_error.get_ref());
    if on_error.is_none() {
        v.at(
            &store.on_store_error,
            "rate_limit.on_store_error",
            "expected \"local\", \"allow\" or \"deny\"",
        );
    }
    let mut redis = None;
    match store.store.get_ref().as_str() {
        "local" => {}
        "redis" => match &store.redis_url {
            None => v.at(
                &store.store,
                "rate_limit.redis_url",
                "store = \"redis\" needs redis_url",
            ),
            Some(url) => match RedisStore::new(
                url,
                on_error.unwrap_or(OnStoreError::Local),
                store.redis_timeout.0,
            ) {
                Ok(shared) => redis = Some(Arc::new(shared)),
                Err(err) => v.near(
                    0..0,
                    "rate_limit.redis_url",
                    format!("not a Redis URL (like \"redis://127.0.0.1:6379\"): {err}"),
                ),
            },
        },
        _ => v.at(
            &store.store,
            "rate_limit.store",
            "expected \"local\" or \"redis\"",
        ),
    }
    let max_keys = bounded_max_keys(
        v,
        store.max_keys,
        "rate_limit.max_keys",
        "the local store's memory bound, about 100 bytes a key",
    );
    let local = Arc::new(LocalStore::new(max_keys, Default::default()));
    LimitStores { local, redis }
}

/// A route's `rate_limit`, counted in the snapshot's local store under the route's index, and
/// in the Redis store (if any) under the route's name.
pub(super) fn route_rate_limit(
    v: &mut Validator<'_>,
    limit: &model::RouteRateLimit,
    (index, name): (usize, &str),
    span: std::ops::Range<usize>,
    prefix: &str,
    stores: &LimitStores,
) -> Option<RouteLimiter> {
    let route = u32::try_from(index).unwrap_or(u32::MAX);
    let rule = LimitRule {
        rate: limit.rate,
        burst: limit.burst,
        key: limit.key.as_ref().map(|key| key.get_ref().clone()),
    };
    match RouteLimiter::new(&rule, route, &stores.local) {
        Ok(limiter) => Some(match &stores.redis {
            Some(shared) => limiter.shared(shared.clone(), name),
            None => limiter,
        }),
        Err(err) => {
            let key = format!("{prefix}.rate_limit.{}", err.key);
            match (&limit.key, err.key) {
                (Some(written), "key") => v.at(written, &key, err.message),
                _ => v.near(span, &key, err.message),
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn stores_and_route_limits() {
        assert_eq!(
            error_keys("[rate_limit]\non_store_error = \"maybe\""),
            ["rate_limit.on_store_error"]
        );
        assert_eq!(
            error_keys("[rate_limit]\nmax_keys = 10"),
            ["rate_limit.max_keys"]
        );
        let route = "[[routes]]\npath = \"/api/\"\nrespond = { status = 200 }\nrate_limit = { rate = \"5/min\", burst = 0 }";
        assert_eq!(error_keys(route), ["routes[0].rate_limit.burst"]);
    }
}
