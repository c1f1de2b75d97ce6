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
