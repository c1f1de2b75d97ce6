//! The jail's cost on the request path (`policy/ban`): the ban check every request and every
//! accepted connection pays (`Bans::refuses`), with nobody banned (the common case: one atomic
//! load), with a million bans held and the client not among them, and for a banned client; and
//! one strike counted in the local jail (a response whose status is a strike). One thread, the
//! real clock.
//!
//! Run with `--bench`, it also floods a jail of the default bound (`max_keys` = 1,000,000) with
//! a million distinct clients striking once, then a million bans, and prints the counters and
//! bans held and the resident set's growth.
//!
//! `cargo bench --bench bans`

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rampart::policy::ban::{BanRule, Bans, Jail, JailSettings, LocalJail};
use rampart::policy::ratelimit::Key;

/// `cargo test --all-targets` runs each bench once as a smoke test, in a debug build: there the
/// jails hold ten thousand entries instead of a million.
fn scale(n: u32) -> u32 {
    if std::env::args().any(|arg| arg == "--bench") {
        n
    } else {
        n / 100
    }
}

fn rule(after: u32) -> BanRule {
    BanRule {
        strikes: vec![429],
        after,
        within: Duration::from_secs(60),
        ban_for: Duration::from_secs(3600),
        scope: "*".into(),
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn bans(max_keys: usize) -> Bans {
    let settings = JailSettings {
        max_keys,
        redis: None,
    };
    Bans {
        jail: Arc::new(Jail::new(settings).expect("a local jail")),
        default_rule: Some(Arc::new(rule(1))),
        allow: Arc::from(Vec::new()),
    }
}

/// A local strike completes on its first poll; this polls it once, with no runtime.
fn strike(bans: &Bans, client: IpAddr, rule: &BanRule) {
    let mut future = pin!(bans.jail.strike(client, 429, rule, &bans.allow, "app"));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(made) => {
            black_box(made);
        }
        Poll::Pending => unreachable!("the local jail never waits"),
    }
}

fn checks(c: &mut Criterion) {
    let empty = bans(1_000_000);
    let client = ip(7);
    c.bench_function("ban check: nobody banned", |b| {
        b.iter(|| black_box(empty.refuses(black_box(client))))
    });

    // A million bans (one strike each bans: `after = 1`), the client not among them.
    let full = bans(1_000_000);
    let one_strike = rule(1);
    let banned = scale(1_000_000);
    for i in 0..banned {
        strike(&full, ip(i), &one_strike);
    }
    let outsider = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    c.bench_function("ban check: a million bans, client not banned", |b| {
        b.iter(|| black_box(full.refuses(black_box(outsider))))
    });
    c.bench_function("ban check: client banned", |b| {
        b.iter(|| black_box(full.refuses(black_box(ip(12_345 % banned)))))
    });

    // A strike that does not ban: the counter of a known client goes up.
    let counting = bans(1_000_000);
    let never = rule(u32::MAX);
    c.bench_function("strike: counted in the local jail", |b| {
        b.iter(|| strike(&counting, black_box(client), &never))
    });
}

/// Resident set size of this process (KiB), from `/proc/self/status`.
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

fn flood(_: &mut Criterion) {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let before = rss_kib();
    let jail = LocalJail::new(1_000_000);
    let counting = rule(u32::MAX);
    for i in 0..1_000_000u32 {
        jail.strike(Key::V4(0x0b00_0000 + i), &counting, "app");
    }
    let after_strikes = rss_kib();
    let banning = rule(1);
    for i in 0..1_000_000u32 {
        jail.strike(Key::V4(0x0c00_0000 + i), &banning, "app");
    }
    let after_bans = rss_kib();
    let (counters, held) = jail.len();
    println!(
        "flood: capacity {}, {counters} strike counters and {held} bans held after 1,000,000 \
         distinct clients each; RSS +{} KiB after the strikes, +{} KiB after the bans",
        jail.capacity(),
        after_strikes.saturating_sub(before),
        after_bans.saturating_sub(before)
    );
    // A second million of each: the bound holds, the resident set stays.
    for i in 0..1_000_000u32 {
        jail.strike(Key::V4(0x0d00_0000 + i), &counting, "app");
        jail.strike(Key::V4(0x0e00_0000 + i), &banning, "app");
    }
    let (counters, held) = jail.len();
    println!(
        "flood: after a second million of each: {counters} counters, {held} bans, RSS +{} KiB",
        rss_kib().saturating_sub(before)
    );
}

// The flood first: its resident-set figures are then this jail's, not memory freed by the
// other benches and reused.
criterion_group!(benches, flood, checks);
criterion_main!(benches);
