//! `[ban] store = "redis"` against a real `redis-server`: two rampart processes (servers) count
//! one client's strikes together and enforce one ban list; a ban lifted on one is lifted on the
//! other; with Redis killed, each still enforces the bans it knows and bans on its own; bans
//! survive a restart of rampart.
//!
//! Needs `redis-server` (see `ratelimit_redis`).

use crate::common;
use crate::ratelimit_redis::RedisServer;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;

/// A proxy whose jail is shared through `redis`: one strike per 429, a ban at the fourth.
async fn replica(up: &TestUpstream, redis: &RedisServer) -> TestProxy {
    TestProxy::builder()
        .listen("admin = \"127.0.0.1:0\"")
        .config(&simple_config(up))
        .config(&format!(
            "[rate_limit]\nredis_url = \"{}\"\n# generous: a loaded CI machine must not tip calls into the fallback\nredis_timeout = \"2s\"\n\n[ban]\nstore = \"redis\"\nafter = 4\n",
            redis.url()
        ))
        .start()
        .await
}

fn client_from(proxy: &TestProxy, source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .http1_only()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .add_root_certificate(reqwest::Certificate::from_der(&proxy.cert_der).unwrap())
        .resolve("localhost", proxy.https)
        .build()
        .unwrap()
}

/// One GET on a fresh connection from `source`: the status, `None` when closed at accept.
async fn fresh(proxy: &TestProxy, source: &str, path: &str) -> Option<u16> {
    client_from(proxy, source)
        .get(proxy.url(path))
        .send()
        .await
        .ok()
        .map(|resp| resp.status().as_u16())
}

/// Polls until a fresh connection from `source` gets `expected` (the copy of the shared list is
/// refreshed every second).
async fn eventually(proxy: &TestProxy, source: &str, expected: Option<u16>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fresh(proxy, source, "/").await != expected {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_strikes_and_bans() {
    let redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = replica(&up, &redis).await;
    let b = replica(&up, &redis).await;
    let client = "127.0.0.20";

    // Strikes on both count together: two on each is the fourth.
    for proxy in [&a, &b, &a] {
        assert_eq!(fresh(proxy, client, "/status/429").await, Some(429));
    }
    assert_eq!(fresh(&a, client, "/").await, Some(200), "three strikes");
    assert_eq!(fresh(&b, client, "/").await, Some(200), "three strikes");
    assert_eq!(fresh(&b, client, "/status/429").await, Some(429));

    // B made the ban: it refuses at once; A once its copy is refreshed.
    assert_eq!(fresh(&b, client, "/").await, None);
    eventually(&a, client, None, "A learns B's ban").await;
    let stored = redis.command("HGET rampart:bans ip4:127.0.0.20");
    assert!(
        stored.contains("\tapp\t4 strikes (429) within 1m"),
        "{stored}"
    );
    // The counter went with the ban.
    assert_eq!(
        redis.command("EXISTS rampart:ban:strikes:*:ip4:127.0.0.20"),
        ":0"
    );
    // Others are served by both.
    assert_eq!(fresh(&a, "127.0.0.21", "/").await, Some(200));

    // Lifted on A: lifted in Redis, and on B at its next refresh.
    let lifted = reqwest::Client::new()
        .delete(a.admin_url("/bans/127.0.0.20"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    // (A refresh racing the removal may hold the ban for one more round, a second at most.)
    eventually(&a, client, Some(200), "A serves the client again").await;
    eventually(&b, client, Some(200), "B drops the lifted ban").await;
    assert_eq!(redis.command("HEXISTS rampart:bans ip4:127.0.0.20"), ":0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_replica_enforces_what_it_knows() {
    let mut redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = replica(&up, &redis).await;
    let b = replica(&up, &redis).await;
    for _ in 0..4 {
        assert_eq!(fresh(&a, "127.0.0.22", "/status/429").await, Some(429));
    }
    assert_eq!(fresh(&a, "127.0.0.22", "/").await, None);
    eventually(&b, "127.0.0.22", None, "B learns A's ban").await;

    redis.kill();
    // Both still refuse what they know; nobody gets a 5xx for Redis being away.
    for proxy in [&a, &b] {
        assert_eq!(fresh(proxy, "127.0.0.22", "/").await, None);
        assert_eq!(fresh(proxy, "127.0.0.23", "/").await, Some(200));
    }
    // Strikes are counted locally meanwhile: four on A ban there.
    for _ in 0..4 {
        assert_eq!(fresh(&a, "127.0.0.24", "/status/429").await, Some(429));
    }
    assert_eq!(fresh(&a, "127.0.0.24", "/").await, None);
    // Still refused after a few refreshes that fail.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fresh(&a, "127.0.0.22", "/").await, None);
    assert_eq!(fresh(&b, "127.0.0.22", "/").await, None);
    assert_eq!(fresh(&a, "127.0.0.24", "/").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_survive_a_restart_with_redis() {
    let redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = replica(&up, &redis).await;
    for _ in 0..4 {
        assert_eq!(fresh(&a, "127.0.0.25", "/status/429").await, Some(429));
    }
    assert_eq!(fresh(&a, "127.0.0.25", "/").await, None);
    a.shutdown().await;

    // A new process (a restart) reads the ban list from Redis.
    let restarted = replica(&up, &redis).await;
    eventually(
        &restarted,
        "127.0.0.25",
        None,
        "the restarted proxy knows the ban",
    )
    .await;
    let listed = reqwest::get(restarted.admin_url("/bans"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains("\"address\":\"127.0.0.25\""), "{listed}");
    assert_eq!(fresh(&restarted, "127.0.0.26", "/").await, Some(200));
}
