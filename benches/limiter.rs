//! The rate limiter's decision on the hot path: key already known, key among a million, and a
//! new key at the store's bound (the flood case, eviction included). Real clock (governor's
//! default, quanta), the local store, one thread. Plus one decision in the Redis store over
//! loopback (a `redis-server` started by the bench; skipped with a note without the binary).
//!
//! `cargo bench --bench limiter`

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use rampart::policy::ratelimit::redis::DECISION_TIMEOUT;
use rampart::policy::ratelimit::{
    Decision, Key, LimitRule, LocalStore, OnStoreError, RedisStore, RouteLimiter,
};

/// A quota no bench loop can use up (a million a second, a burst of a billion), so every
/// decision is an allowed one that updates the key's state: the common case.
fn generous(store: &Arc<LocalStore>) -> RouteLimiter {
    let config = LimitRule {
        rate: "1000000/s".parse().unwrap(),
        burst: Some(1_000_000_000),
        key: None,
    };
    RouteLimiter::new(&config, 0, store).unwrap()
}

/// The local decision completes on its first poll; this polls it once, with no runtime.
fn decide(limiter: &RouteLimiter, key: &Key) -> Decision {
    let mut future = pin!(limiter.check(key));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(decision) => decision,
        Poll::Pending => unreachable!("the local store never waits"),
    }
}

/// `cargo test --all-targets` runs each bench once as a smoke test, in a debug build: there the
/// stores hold ten thousand keys instead of a million.
fn scale(keys: u32) -> u32 {
    if std::env::args().any(|arg| arg == "--bench") {
        keys
    } else {
        keys / 100
    }
}

fn key(i: u32) -> Key {
    Key::from_ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
}

/// One decision for the only key in the store: the floor cost (two clock reads, two hashes,
/// one shard lock, governor's GCRA step, the header numbers).
fn one_key(c: &mut Criterion) {
    let store = Arc::new(LocalStore::new(1_000_000, Default::default()));
    let limiter = generous(&store);
    let client = key(1);
    c.bench_function("decision, 1 key", |b| {
        b.iter(|| decide(&limiter, std::hint::black_box(&client)))
    });
}

/// One decision for a known key among 1,000,000 held keys, visited in a scattered order: the
/// same work as above plus the cache misses of a large table.
fn million_keys(c: &mut Criterion) {
    let keys = scale(1_000_000);
    let store = Arc::new(LocalStore::new(2 * keys as usize, Default::default()));
    let limiter = generous(&store);
    for i in 0..keys {
        decide(&limiter, &key(i));
    }
    assert_eq!(store.len(), keys as usize);
    let mut i: u32 = 0;
    c.bench_function("decision, 1M keys", |b| {
        b.iter(|| {
            // A stride coprime with the key count walks every key in a cache-unfriendly order.
            i = (i + 611_953) % keys;
            decide(&limiter, &key(i))
        })
    });
}

/// One decision for a key never seen before, with the store (max_keys = 1,000,000) full of
/// live keys: the insert plus its share of batch eviction — the cost per request of a flood
/// of fresh addresses.
fn new_key_at_the_bound(c: &mut Criterion) {
    let store = Arc::new(LocalStore::new(
        scale(1_000_000) as usize,
        Default::default(),
    ));
    let limiter = generous(&store);
    // Past the bound: every shard is full and has evicted at least once.
    let mut next = store.capacity() as u32 * 3 / 2;
    for i in 0..next {
        decide(&limiter, &key(i));
    }
    assert!(store.len() <= store.capacity());
    c.bench_function("decision, new key, store full (1M)", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            decide(&limiter, &key(next))
        })
    });
}

/// A `redis-server` for the bench, killed on drop.
struct RedisChild(std::process::Child);

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One decision in the Redis store over loopback: the script's round trip (EVALSHA, TIME, GET,
/// SET PX) on one multiplexed connection, from a current-thread runtime.
fn redis_loopback(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child else {
        println!("decision, Redis over loopback: skipped (no redis-server binary)");
        return;
    };
    let _redis = RedisChild(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = Arc::new(LocalStore::new(1_000, Default::default()));
    // "deny": a decision Redis did not take shows up as Limited, and the bench stops.
    let shared = RedisStore::new(
        &format!("redis://127.0.0.1:{port}/"),
        OnStoreError::Deny,
        DECISION_TIMEOUT,
    )
    .unwrap();
    let limiter = generous(&local).shared(Arc::new(shared), "bench");
    let client = key(1);
    let decide = || runtime.block_on(limiter.check(std::hint::black_box(&client)));
    // The first decision connects (the server may need a moment to accept).
    let mut attempts = 0;
    while !decide().is_allowed() {
        attempts += 1;
        assert!(attempts < 50, "Redis does not answer");
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    c.bench_function("decision, Redis over loopback", |b| {
        b.iter(|| {
            let decision = decide();
            assert!(decision.is_allowed(), "Redis stopped answering");
            decision
        })
    });
}

criterion_group!(
    benches,
    one_key,
    million_keys,
    new_key_at_the_bound,
    redis_loopback
);
criterion_main!(benches);
