//! The local rate-limit store under a flood of distinct client addresses: it never holds more
//! than `max_keys`, and clients interleaved with the flood get exactly the decisions they would
//! get without it. Drives the library's limiter directly (no HTTP) on governor's fake clock.
//!
//! Alone in its test binary so that the resident set it prints is the store's, not other tests'.
//! `cargo test --release --test ratelimit_flood -- --ignored --nocapture` runs the large variant.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use rampart::policy::ratelimit::{Decision, Key, LimitRule, LocalStore, RouteLimiter};

/// Resident set size of this process, from `/proc/self/status` (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Flood key `i`: even ones IPv4, odd ones an address in its own IPv6 /64.
fn flood_key(i: u64) -> Key {
    let ip = if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)))
    } else {
        let net = (0x2001_0db8u128 << 96) | (u128::from(i) << 64);
        IpAddr::V6(Ipv6Addr::from(net | 0x1234))
    };
    Key::from_ip(ip)
}

fn limiter(
    store: &Arc<LocalStore<FakeRelativeClock>>,
    rate: &str,
    burst: u32,
) -> RouteLimiter<FakeRelativeClock> {
    let config = LimitRule {
        rate: rate.parse().unwrap(),
        burst: Some(burst),
        key: None,
    };
    RouteLimiter::new(&config, 0, store).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// `keys` distinct flood addresses, `per_tick` of them per fake millisecond, against a store of
/// `max_keys`. Route quota 10/s with a burst of 10: a flood key stays live (not idle) 100 ms,
/// so with 2000 keys a millisecond twice the store is live at any time and eviction has to
/// take live keys, not only idle ones.
async fn flood(keys: u64, max_keys: usize, per_tick: u64) {
    let rss_before = rss_kib();
    let clock = FakeRelativeClock::default();
    let store = Arc::new(LocalStore::new(max_keys, clock.clone()));
    let capacity = store.capacity();
    assert!(capacity <= max_keys);
    let limited = limiter(&store, "10/s", 10);

    // The same route on a store nobody floods: the decisions every normal client must get.
    let reference_store = Arc::new(LocalStore::new(1000, clock.clone()));
    let reference = limiter(&reference_store, "10/s", 10);
    // A heavy client (every tick: limited most of the time, its state must survive) and a
    // light one (every 50 ms: always allowed, with a Remaining that must stay exact).
    let heavy = Key::from_ip("192.0.2.10".parse().unwrap());
    let light = Key::from_ip("2001:db8:ffff:ffff::1".parse().unwrap());

    let mut latencies = Vec::new();
    let (mut heavy_allowed, mut heavy_limited) = (0, 0);
    let mut light_evicted = 0;
    let started = Instant::now();
    for i in 0..keys {
        let decision = limited.check(&flood_key(i)).await;
        assert!(decision.is_allowed(), "flood key {i} is new: allowed");

        if i % per_tick == per_tick - 1 {
            clock.advance(Duration::from_millis(1));
            let tick = i / per_tick;
            let mut clients = vec![heavy];
            if tick.is_multiple_of(50) {
                clients.push(light);
            }
            for client in clients {
                let timer = Instant::now();
                let got = limited.check(&client).await;
                latencies.push(timer.elapsed());
                let expected = reference.check(&client).await;
                if client == heavy {
                    // Being limited, it is the last key to become idle: never evicted.
                    assert_eq!(got, expected, "the heavy client at flood key {i}");
                    match got {
                        Decision::Allowed { .. } => heavy_allowed += 1,
                        Decision::Limited { .. } => heavy_limited += 1,
                    }
                } else {
                    // Nearly idle, it may be evicted when the flood is faster than its keys
                    // go idle: then it starts again with a full bucket (fails open), never
                    // stricter than without the flood.
                    let (
                        Decision::Allowed { remaining, .. },
                        Decision::Allowed {
                            remaining: expected_remaining,
                            ..
                        },
                    ) = (got, expected)
                    else {
                        panic!("the light client at flood key {i}: {got:?}, expected {expected:?}");
                    };
                    assert!(remaining >= expected_remaining);
                    light_evicted += u32::from(remaining != expected_remaining);
                }
            }
            let len = store.len();
            assert!(len <= capacity, "{len} keys held, bound {capacity}");
        }
    }
    let elapsed = started.elapsed();
    let len = store.len();
    assert!(len <= capacity);
    assert!(len >= capacity / 2, "eviction frees batches, not the store");
    assert!(heavy_allowed > 0 && heavy_limited > 0);

    let rss_after = rss_kib();
    latencies.sort_unstable();
    println!(
        "flood: {keys} distinct keys ({} per fake ms) against max_keys = {max_keys} (capacity {capacity}): \
         {len} keys held at the end; {:.2} s, {:.0} ns per decision",
        per_tick,
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / keys as f64
    );
    println!(
        "flood: RSS before {} KiB, after {} KiB (growth {} KiB, {:.0} bytes per held key)",
        rss_before,
        rss_after,
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 * 1024.0 / len.max(1) as f64
    );
    println!(
        "flood: normal clients' decisions during the flood: p50 {:?}, p99 {:?}, max {:?} ({} decisions); heavy client {} allowed, {} limited; light client's decisions that differed (its state evicted): {}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        latencies.len(),
        heavy_allowed,
        heavy_limited,
        light_evicted
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 512 * 1024,
        "the store grew the process by more than 512 MiB"
    );
}

#[tokio::test]
async fn a_million_addresses_stay_within_max_keys() {
    flood(1_000_000, 100_000, 2_000).await;
}

/// The shipped default bound (`max_keys = 1000000`) under ten million addresses. Slow in a
/// debug build: run with `--release -- --ignored`.
#[tokio::test]
#[ignore]
async fn ten_million_addresses_against_the_default_bound() {
    flood(10_000_000, 1_000_000, 20_000).await;
}
