//! `rate_limit.store = "redis"` end to end against a real `redis-server` (each test starts its
//! own on a free port): one quota shared by two proxies, the `on_store_error` fallbacks while
//! Redis is down (never a 5xx), and shared quotas again once Redis is back.
//!
//! These tests need the `redis-server` binary; they fail (not skip) without it. CI installs it
//! (`.ci/run`); elsewhere: `apt-get install redis-server`.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `redis-server` of this test, killed on drop (also used by the ACME tests and `bans_redis`).
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free port")
            .port();
        RedisServer::start_on(port)
    }

    fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start redis-server ({err}): these tests need it; install it \
                     with `apt-get install redis-server` (.ci/run does)"
                )
            });
        let mut server = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.command("PING") != "+PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} does not answer PING"
            );
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server on port {port} exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One inline command; the raw reply without its last CRLF ("" when Redis is not there).
    pub(crate) fn command(&self, line: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return String::new();
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        if stream.write_all(format!("{line}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // Replies here are small: read until a pause.
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A route `login` limited to 5/min with a burst of 3, counted in `redis`, keyed by
/// `X-Api-Key` (the client IP without it).
async fn proxy(up: &TestUpstream, redis: &RedisServer, on_store_error: &str) -> TestProxy {
    TestProxy::start(&format!(
        "[rate_limit]\nstore = \"redis\"\nredis_url = \"{}\"\non_store_error = \"{on_store_error}\"\n# generous: a loaded CI machine must not tip decisions into the fallback\nredis_timeout = \"2s\"\n\n{}\n[[routes]]\nname = \"login\"\npath = \"/login/\"\nupstream = \"app\"\nrate_limit = {{ rate = \"5/min\", burst = 3, key = \"header:X-Api-Key\" }}\n",
        redis.url(),
        upstream_toml("app", &[up.server()], ""),
    ))
    .await
}

/// Status and `RateLimit-Remaining` of one request with this key (none: by client IP).
async fn ask(proxy: &TestProxy, key: Option<&str>) -> (u16, Option<String>) {
    let mut request = proxy.client_h1().get(proxy.url("/login/"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(status == 200 || status == 429, "never a {status}");
    (status, resp.headers().one("ratelimit-remaining"))
}

/// Alternating between the proxies, `key` gets exactly 3 requests through, then 429 on both.
async fn assert_one_quota(a: &TestProxy, b: &TestProxy, key: Option<&str>) {
    for (i, remaining) in ["2", "1", "0"].into_iter().enumerate() {
        let proxy = if i % 2 == 0 { a } else { b };
        let (status, left) = ask(proxy, key).await;
        assert_eq!(status, 200, "request {i} is within the shared burst");
        assert_eq!(left.as_deref(), Some(remaining), "request {i}");
    }
    for proxy in [a, b, a, b] {
        assert_eq!(ask(proxy, key).await.0, 429, "the shared quota is used up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_one_quota() {
    let redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = proxy(&up, &redis, "local").await;
    let b = proxy(&up, &redis, "local").await;
    assert_one_quota(&a, &b, None).await;
    assert_eq!(up.count(), 3, "the upstream saw the 3 allowed requests");

    // The 429 carries the same headers as the local limiter's.
    let resp = b.client_h1().get(b.url("/login/")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    let retry_after: u64 = h.one("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(h.one("ratelimit-limit").as_deref(), Some("3"));
    let reset: u64 = h.one("ratelimit-reset").unwrap().parse().unwrap();
    assert!((25..=36).contains(&reset), "reset {reset}");

    // One key, named after the route and the client, expiring when the bucket is full again.
    let keys = redis.command("KEYS rampart:rl:*");
    assert!(keys.contains("rampart:rl:login:ip4:127.0.0.1"), "{keys}");
    let ttl: i64 = redis
        .command("PTTL rampart:rl:login:ip4:127.0.0.1")
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!((24_000..=36_000).contains(&ttl), "PTTL {ttl}");

    // Header keys are shared too, each with its own quota.
    assert_one_quota(&a, &b, Some("alpha")).await;
    assert_one_quota(&b, &a, Some("beta")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_the_local_limiter() {
    let mut redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = proxy(&up, &redis, "local").await;
    let b = proxy(&up, &redis, "local").await;
    assert_one_quota(&a, &b, None).await;
    for proxy in [&a, &b] {
        let metrics = proxy.handle().metrics();
        assert_eq!(metrics.rate_limit_store_errors.get(), 0);
        assert_eq!(
            metrics
                .rate_limit_store_fallbacks
                .with_label_values(&["local"])
                .get(),
            0
        );
    }

    redis.kill();
    // Each proxy now counts on its own, from a fresh local bucket: 3 each, then 429.
    for proxy in [&a, &b] {
        let started = Instant::now();
        for remaining in ["2", "1", "0"] {
            assert_eq!(ask(proxy, None).await, (200, Some(remaining.to_string())));
        }
        assert_eq!(ask(proxy, None).await.0, 429);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the fallback decides without waiting on Redis each time"
        );
        // Counted (issue 15): every decision of the fallback, and the failed exchanges (the
        // first; later ones only when Redis is tried again after a pause).
        let metrics = proxy.handle().metrics();
        assert_eq!(
            metrics
                .rate_limit_store_fallbacks
                .with_label_values(&["local"])
                .get(),
            4
        );
        assert!(metrics.rate_limit_store_errors.get() >= 1);
        assert!(metrics.rate_limit_store_errors.get() <= 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_allow_lets_everything_pass() {
    let mut redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = proxy(&up, &redis, "allow").await;
    let b = proxy(&up, &redis, "allow").await;
    assert_one_quota(&a, &b, None).await;

    redis.kill();
    for _ in 0..5 {
        for proxy in [&a, &b] {
            assert_eq!(ask(proxy, None).await.0, 200, "allowed while Redis is down");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_deny_refuses_with_429() {
    let mut redis = RedisServer::start();
    let up = TestUpstream::start().await;
    let a = proxy(&up, &redis, "deny").await;
    let b = proxy(&up, &redis, "deny").await;
    // Before: allowed through Redis.
    assert_eq!(ask(&a, Some("fresh")).await.0, 200);

    redis.kill();
    for _ in 0..3 {
        for proxy in [&a, &b] {
            let resp = proxy
                .client_h1()
                .get(proxy.url("/login/"))
                .header("x-api-key", "another")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 429, "denied while Redis is down");
            assert!(resp.headers().one("retry-after").is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_shared_again_when_redis_returns() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let up = TestUpstream::start().await;
    let a = proxy(&up, &redis, "local").await;
    let b = proxy(&up, &redis, "local").await;
    assert_one_quota(&a, &b, Some("before")).await;

    redis.kill();
    for proxy in [&a, &b] {
        assert_eq!(ask(proxy, Some("during")).await.0, 200, "decided locally");
    }

    // The same port, empty state. Each proxy reconnects by itself within a few seconds.
    let redis = RedisServer::start_on(port);
    for (name, proxy) in [("a", &a), ("b", &b)] {
        let deadline = Instant::now() + Duration::from_secs(15);
        let probe = format!("probe-{name}");
        loop {
            let before = redis.command("DBSIZE");
            ask(proxy, Some(&probe)).await;
            if redis.command("DBSIZE") != before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "proxy {name} does not use Redis again"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_one_quota(&a, &b, Some("after")).await;
    assert_one_quota(&b, &a, None).await;
}
