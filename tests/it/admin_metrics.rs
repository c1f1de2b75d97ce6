//! The admin listener (`/metrics`, `/healthz`, `/readyz`) and the metrics the pipeline records.
//!
//! Every scrape is parsed by a Prometheus text-format parser (`prometheus-parse`), after a
//! strict line check of our own, and the tests assert exact values after known traffic.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use prometheus_parse::{LineInfo, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin = \"127.0.0.1:0\"";

/// One request to the admin listener over a fresh connection that closes after it.
async fn admin_raw(proxy: &TestProxy, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(proxy.admin_addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let bytes = read_until_close(&mut stream, RAW_READ_LIMIT).await;
    one_response(&bytes)
}

async fn admin_get(proxy: &TestProxy, path: &str) -> RawResponse {
    admin_raw(
        proxy,
        &format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// GET /metrics, checked line by line and parsed.
async fn scrape(proxy: &TestProxy) -> Scrape {
    let response = admin_get(proxy, "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_metrics(&response.body_str())
}

/// The parser skips what it does not understand, so first every line must be a comment, a
/// HELP/TYPE line or a sample with a numeric value.
fn parse_metrics(text: &str) -> Scrape {
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } | LineInfo::Empty => {}
            LineInfo::Sample { value, .. } => {
                let parsed = value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN";
                assert!(parsed, "sample with a bad value: {line:?}");
            }
            LineInfo::Ignored => panic!("not Prometheus text format: {line:?}"),
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse the exposition")
}

fn labels_match(sample: &prometheus_parse::Sample, labels: &[(&str, &str)]) -> bool {
    sample.labels.len() == labels.len()
        && labels
            .iter()
            .all(|(name, value)| sample.labels.get(name) == Some(*value))
}

/// The value of a counter or gauge series; 0 when the series does not exist (yet).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels_match(s, labels))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a counter or gauge"),
        })
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} appears twice");
    found.first().copied().unwrap_or(0.0)
}

/// A histogram's observation count (its `+Inf` bucket, checked against `_count`).
fn observations(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let count = value(scrape, &format!("{name}_count"), labels);
    let inf = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels_match(s, labels))
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .map_or(0.0, |b| b.count),
            _ => panic!("{name} is not a histogram"),
        })
        .next()
        .unwrap_or(0.0);
    assert_eq!(count, inf, "{name}{labels:?}: _count and the +Inf bucket");
    count
}

/// Every `{labels}` of a metric, as sorted (name, value) lists.
fn series_of(scrape: &Scrape, name: &str) -> BTreeSet<Vec<(String, String)>> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            labels
        })
        .collect()
}

fn route_config(up: &TestUpstream) -> String {
    format!(
        "{}\n\
         [[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"app\"\n\
         [[routes]]\nname = \"app\"\npath = \"/status/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], "")
    )
}

#[tokio::test]
async fn requests_are_counted_by_route_method_and_status() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&route_config(&up))
        .start()
        .await;
    let client = proxy.client_h2();
    for _ in 0..3 {
        let r = client.get(proxy.url("/api/items")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client
        .post(proxy.url("/api/items"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let brew = http::Method::from_bytes(b"BREW").unwrap();
    let r = client
        .request(brew, proxy.url("/api/pot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = client.get(proxy.url("/status/503")).send().await.unwrap();
        assert_eq!(r.status(), 503);
    }
    // No route: 404, and a path that climbs above / is refused before routing: 400.
    let r = client.get(proxy.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let raw = one_response(&proxy.raw_h1(&get_close("/a/../../etc", "localhost")).await);
    assert_eq!(raw.status, 400);

    let s = scrape(&proxy).await;
    let requests = "rampart_requests_total";
    let expected: BTreeMap<(&str, &str, &str), f64> = [
        (("api", "GET", "200"), 3.0),
        (("api", "POST", "200"), 1.0),
        (("api", "OTHER", "200"), 1.0),
        (("app", "GET", "503"), 2.0),
        (("-", "GET", "404"), 1.0),
        (("-", "GET", "400"), 1.0),
    ]
    .into_iter()
    .collect();
    for ((route, method, status), count) in &expected {
        let labels = [("route", *route), ("method", *method), ("status", *status)];
        assert_eq!(value(&s, requests, &labels), *count, "{requests}{labels:?}");
    }
    assert_eq!(
        series_of(&s, requests).len(),
        expected.len(),
        "no other series"
    );

    let duration = "rampart_request_duration_seconds";
    assert_eq!(observations(&s, duration, &[("route", "api")]), 5.0);
    assert_eq!(observations(&s, duration, &[("route", "app")]), 2.0);
    assert_eq!(observations(&s, duration, &[("route", "-")]), 2.0);
    // Seven exchanges reached the upstream and got a response head.
    let upstream = "rampart_upstream_duration_seconds";
    assert_eq!(observations(&s, upstream, &[("upstream", "app")]), 7.0);
    assert_eq!(series_of(&s, "rampart_upstream_errors_total").len(), 0);
    assert_eq!(series_of(&s, "rampart_rate_limited_total").len(), 0);
    assert_eq!(up.count(), 7);
}

/// A reload builds new routes and upstreams, whose kept metric handles start empty: a route
/// that stays keeps counting in its series, a removed route's series keeps its count, a new
/// route gets its own, and a status without a kept handle (418) counts the same way.
#[tokio::test]
async fn request_counts_carry_on_across_a_reload() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&route_config(&up))
        .start()
        .await;
    let client = proxy.client_h2();
    let traffic = || async {
        for (path, status) in [("/api/x", 200), ("/status/418", 418), ("/nowhere", 404)] {
            let r = client.get(proxy.url(path)).send().await.unwrap();
            assert_eq!(r.status(), status, "{path}");
        }
    };
    traffic().await;
    // The route "app" becomes "teapot" (same path and upstream); "api" stays.
    let renamed = proxy.config.replacen(
        "name = \"app\"\npath = \"/status/\"",
        "name = \"teapot\"\npath = \"/status/\"",
        1,
    );
    assert_ne!(renamed, proxy.config);
    proxy
        .handle()
        .reload(rampart::config::load_str(&renamed, "test.toml").unwrap());
    traffic().await;
    traffic().await;

    let s = scrape(&proxy).await;
    assert_eq!(
        value(&s, "rampart_config_reloads_total", &[("result", "success")]),
        1.0
    );
    let requests = "rampart_requests_total";
    let expected: BTreeMap<(&str, &str), f64> = [
        (("api", "200"), 3.0),
        (("app", "418"), 1.0),
        (("teapot", "418"), 2.0),
        (("-", "404"), 3.0),
    ]
    .into_iter()
    .collect();
    for ((route, status), count) in &expected {
        let labels = [("route", *route), ("method", "GET"), ("status", *status)];
        assert_eq!(value(&s, requests, &labels), *count, "{requests}{labels:?}");
        let duration = "rampart_request_duration_seconds";
        assert_eq!(
            observations(&s, duration, &[("route", *route)]),
            *count,
            "{duration} of {route}"
        );
    }
    assert_eq!(series_of(&s, requests).len(), expected.len());
    let upstream = "rampart_upstream_duration_seconds";
    assert_eq!(observations(&s, upstream, &[("upstream", "app")]), 6.0);
    assert_eq!(up.count(), 6);
}

#[tokio::test]
async fn rate_limited_requests_are_counted_by_route() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&format!(
            "{}\n[[routes]]\nname = \"login\"\npath = \"/login/\"\nupstream = \"app\"\n\
             rate_limit = {{ rate = \"1/min\", burst = 2 }}\n",
            upstream_toml("app", &[up.server()], "")
        ))
        .start()
        .await;
    let client = proxy.client_h1();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = client.get(proxy.url("/login/")).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);

    let s = scrape(&proxy).await;
    assert_eq!(
        value(&s, "rampart_rate_limited_total", &[("route", "login")]),
        3.0
    );
    assert_eq!(series_of(&s, "rampart_rate_limited_total").len(), 1);
    let requests = |status| {
        value(
            &s,
            "rampart_requests_total",
            &[("route", "login"), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(requests("200"), 2.0);
    assert_eq!(requests("429"), 3.0);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn upstream_errors_are_counted_by_upstream_and_kind() {
    let slow = TestUpstream::start().await;
    let garbage = RawUpstream::start(b"NOT HTTP AT ALL\r\n\r\n".to_vec()).await;
    let dead = dead_addr().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&format!(
            "{}{}{}\
             [[routes]]\nname = \"dead\"\npath = \"/dead/\"\nupstream = \"dead\"\n\
             [[routes]]\nname = \"slow\"\npath = \"/slow/\"\nupstream = \"slow\"\n\
             [[routes]]\nname = \"bad\"\npath = \"/bad/\"\nupstream = \"bad\"\n",
            upstream_toml("dead", &[format!("http://{dead}")], "retries = 0"),
            upstream_toml("slow", &[slow.server()], "response_timeout = \"300ms\""),
            upstream_toml("bad", &[garbage.server()], "retries = 0"),
        ))
        .start()
        .await;
    let client = proxy.client_h1();
    for _ in 0..2 {
        let r = client.get(proxy.url("/dead/x")).send().await.unwrap();
        assert_eq!(r.status(), 502);
    }
    let r = client.get(proxy.url("/slow/3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let r = client.get(proxy.url("/bad/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);

    let s = scrape(&proxy).await;
    let errors = "rampart_upstream_errors_total";
    assert_eq!(
        value(&s, errors, &[("upstream", "dead"), ("kind", "connect")]),
        2.0
    );
    assert_eq!(
        value(&s, errors, &[("upstream", "slow"), ("kind", "timeout")]),
        1.0
    );
    assert_eq!(
        value(&s, errors, &[("upstream", "bad"), ("kind", "protocol")]),
        1.0
    );
    assert_eq!(series_of(&s, errors).len(), 3);
    // No response head came back, so no upstream latency was observed.
    assert_eq!(series_of(&s, "rampart_upstream_duration_seconds").len(), 0);
    let requests = |route, status| {
        value(
            &s,
            "rampart_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(requests("dead", "502"), 2.0);
    assert_eq!(requests("slow", "504"), 1.0);
    assert_eq!(requests("bad", "502"), 1.0);
}

/// xorshift64*: reproducible random tokens without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn token(&mut self) -> String {
        format!("{:x}", self.next())
    }

    fn ip(&mut self) -> String {
        let n = self.next();
        format!(
            "{}.{}.{}.{}",
            1 + n % 223,
            (n >> 8) % 256,
            (n >> 16) % 256,
            (n >> 24) % 256
        )
    }
}

/// Random paths, Host headers and (believed) X-Forwarded-For addresses: `count` requests over
/// HTTP/2 from 32 concurrent tasks, then a quarter as many over HTTP/1.1, where the Host header
/// is what routing sees (some are invalid hosts: 400 before routing).
async fn random_traffic(proxy: &TestProxy, seed: u64, count: usize) -> usize {
    let h2 = proxy.client_h2();
    let h1 = proxy.client_h1();
    let mut tasks = tokio::task::JoinSet::new();
    let tasks_n = 32;
    for task in 0..tasks_n {
        let (h2, h1) = (h2.clone(), h1.clone());
        let url = proxy.url("");
        let mut random = Random(seed.wrapping_mul(1000) + task as u64 + 1);
        tasks.spawn(async move {
            let mut sent = 0;
            for i in 0..count / tasks_n {
                let path = format!(
                    "/{}/{}?q={}",
                    random.token(),
                    random.token(),
                    random.token()
                );
                let host = if i % 7 == 0 {
                    format!("bad host {}", random.token())
                } else {
                    format!("h{}.example", random.token())
                };
                let (client, expected) = if i % 4 == 3 {
                    (&h1, None)
                } else {
                    (&h2, Some(200))
                };
                let r = client
                    .get(format!("{url}{path}"))
                    .header("host", host)
                    .header("x-forwarded-for", random.ip())
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                match expected {
                    Some(expected) => assert_eq!(status, expected),
                    None => assert!(status == 200 || status == 400, "status {status}"),
                }
                sent += 1;
            }
            sent
        });
    }
    let mut sent = 0;
    while let Some(done) = tasks.join_next().await {
        sent += done.unwrap();
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_hosts_and_forwarded_for_leave_the_series_unchanged() {
    // A canned answer: the upstream's own cost stays out of the request rate.
    let up = RawUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".to_vec()).await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config("[client]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
        .config(&format!(
            "{}\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            upstream_toml("app", &[up.server()], "")
        ))
        .start()
        .await;
    // A first round creates every series this traffic can touch (200 and 400, route "app" and
    // "-"); the big round after it must add none.
    let warm = random_traffic(&proxy, 1, 320).await;
    let before = scrape(&proxy).await;
    let started = Instant::now();
    let sent = random_traffic(&proxy, 2, 5_120).await;
    let elapsed = started.elapsed();
    let after = scrape(&proxy).await;
    println!("{sent} random requests in {elapsed:?}");

    let all_series = |s: &Scrape| -> BTreeSet<(String, Vec<(String, String)>)> {
        s.samples
            .iter()
            .map(|sample| {
                let mut labels: Vec<(String, String)> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                (sample.metric.clone(), labels)
            })
            .collect()
    };
    assert_eq!(all_series(&before), all_series(&after), "series changed");
    let routes: BTreeSet<String> = series_of(&after, "rampart_requests_total")
        .into_iter()
        .flat_map(|labels| {
            labels
                .into_iter()
                .filter(|(k, _)| k == "route")
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(routes, BTreeSet::from(["-".to_string(), "app".to_string()]));
    // Every request was counted, in those few series.
    let total: f64 = after
        .samples
        .iter()
        .filter(|s| s.metric == "rampart_requests_total")
        .map(|s| match s.value {
            Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(total as usize, warm + sent);
    assert_eq!(series_of(&after, "rampart_requests_total").len(), 2);
}

#[tokio::test]
async fn admin_paths_on_the_public_listener_are_routed_like_any_path() {
    let up = TestUpstream::start().await;
    let proxied = TestProxy::builder()
        .listen(ADMIN)
        .config(&simple_config(&up))
        .start()
        .await;
    let client = proxied.client_h2();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = client.get(proxied.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let echo: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(echo["path"], path, "the app answered {path}");
    }
    assert_eq!(up.count(), 3);
    // The plain-http listener redirects them like any path.
    let redirect = one_response(&proxied.raw_http(&get_close("/metrics", "localhost")).await);
    assert_eq!(redirect.status, 308);

    // Without a route for them: the proxy's own 404, not metrics.
    let unrouted = TestProxy::builder()
        .listen(ADMIN)
        .config(&route_config(&up))
        .start()
        .await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = unrouted
            .client_h1()
            .get(unrouted.url(path))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        assert_proxy_error(&headers, status, &body, "404 Not Found\n", path);
    }
}

#[tokio::test]
async fn admin_endpoints_answer_get_and_head_only() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&simple_config(&up))
        .start()
        .await;

    let health = admin_get(&proxy, "/healthz").await;
    assert_eq!((health.status, health.body_str().as_str()), (200, "ok\n"));
    assert_eq!(health.header("cache-control"), Some("no-store"));
    let ready = admin_get(&proxy, "/readyz").await;
    assert_eq!((ready.status, ready.body_str().as_str()), (200, "ready\n"));

    // HEAD: the head of GET /metrics, and not one byte of body after it.
    let mut stream = TcpStream::connect(proxy.admin_addr()).await.unwrap();
    stream
        .write_all(b"HEAD /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let bytes = read_until_close(&mut stream, RAW_READ_LIMIT).await;
    let head_end = find(&bytes, b"\r\n\r\n").expect("a response head") + 4;
    assert_eq!(head_end, bytes.len(), "no body after the head");
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{head}"
    );

    let post = admin_raw(
        &proxy,
        "POST /healthz HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    for path in ["/", "/metrics/", "/favicon.ico", "/healthz/x"] {
        let r = admin_get(&proxy, path).await;
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (404, "404 Not Found\n"),
            "{path}"
        );
    }
    // Nothing proxied: the admin listener never reaches the app.
    assert_eq!(up.count(), 0);
}

/// Scrapes until `pred` holds (connection counts settle when a closed connection's task ends).
async fn scrape_until(proxy: &TestProxy, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(proxy).await;
        if pred(&s) || Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn active_connections_are_counted_per_listener() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&simple_config(&up))
        .start()
        .await;
    let active =
        |s: &Scrape, listener| value(s, "rampart_active_connections", &[("listener", listener)]);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut tls = proxy.tls().await;
        tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(tls.read(&mut buf).await.unwrap() > 0);
        open.push(tls);
    }
    let plain = TcpStream::connect(proxy.http_addr()).await.unwrap();
    // The scrape's own connection is the one admin connection.
    let s = scrape_until(&proxy, |s| {
        active(s, "admin") == 1.0 && active(s, "http") == 1.0
    })
    .await;
    assert_eq!(active(&s, "https"), 3.0);
    assert_eq!(active(&s, "http"), 1.0);
    assert_eq!(active(&s, "admin"), 1.0);

    drop(open);
    drop(plain);
    let s = scrape_until(&proxy, |s| {
        active(s, "https") == 0.0 && active(s, "http") == 0.0
    })
    .await;
    assert_eq!(active(&s, "https"), 0.0);
    assert_eq!(active(&s, "http"), 0.0);
}

#[tokio::test]
async fn readyz_is_503_while_an_upstream_has_no_healthy_server() {
    let up = TestUpstream::start().await;
    let dead = dead_addr().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&format!(
            "{}{}\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n\
             [[routes]]\nname = \"dead\"\npath = \"/dead/\"\nupstream = \"dead\"\n",
            upstream_toml("app", &[up.server()], ""),
            upstream_toml(
                "dead",
                &[format!("http://{dead}")],
                "health_check = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\", unhealthy = 1, healthy = 1 }"
            ),
        ))
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        let ready = admin_get(&proxy, "/readyz").await;
        if ready.status != 200 || Instant::now() >= deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body_str(), "not ready: no healthy server in dead\n");
    // Alive all the same.
    let health = admin_get(&proxy, "/healthz").await;
    assert_eq!(health.status, 200);
}

/// A listen address a reload cannot apply is flagged on every reload until the config matches
/// the bound socket again: `rampart_listen_restart_required{key}` and a line of `/readyz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapplied_listen_address_stays_flagged_across_reloads() {
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .listen("admin = \"127.0.0.1:0\"\n")
        .config(&simple_config(&up))
        .start()
        .await;
    let flag = || {
        proxy
            .handle()
            .metrics()
            .listen_restart_required
            .with_label_values(&["listen.https"])
            .get()
    };
    let readyz = || async {
        reqwest::get(proxy.admin_url("/readyz"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(flag(), 0);
    let moved = proxy
        .config
        .replacen("https = \"127.0.0.1:0\"", "https = \"127.0.0.1:1\"", 1);
    assert_ne!(moved, proxy.config);
    // Two reloads with the moved address: the second compares with the bound socket too.
    for round in 0..2 {
        let snapshot = rampart::config::load_str(&moved, "test.toml").unwrap();
        proxy.handle().reload(snapshot);
        assert_eq!(flag(), 1, "reload {round}");
        let body = readyz().await;
        assert!(
            body.contains("restart required to apply: listen.https"),
            "{body}"
        );
    }
    let snapshot = rampart::config::load_str(&proxy.config, "test.toml").unwrap();
    proxy.handle().reload(snapshot);
    assert_eq!(flag(), 0);
    assert_eq!(readyz().await, "ready\n");
    // Another number of workers needs a restart too.
    let more_workers = proxy
        .config
        .replacen("[listen]\n", "[listen]\nworkers = 7\n", 1);
    assert_ne!(more_workers, proxy.config);
    proxy
        .handle()
        .reload(rampart::config::load_str(&more_workers, "test.toml").unwrap());
    let body = readyz().await;
    assert!(
        body.contains("restart required to apply: listen.workers"),
        "{body}"
    );
}
