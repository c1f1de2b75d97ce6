//! Upstream health: active checks eject and restore servers, passive ejection after
//! consecutive failed requests, least_conn, the answer when no server is healthy, health check
//! tasks across reloads, and the validation of `health_check`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rampart::upstream::Upstream;

/// Health checks every 100 ms (loopback answers in well under the timeout).
const CHECK: &str = "health_check = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\", healthy = 2, unhealthy = 2 }";

/// Long enough for a few checks on a loaded 2-core machine; polls return as soon as they can.
const WAIT: Duration = Duration::from_secs(10);

fn route_to(upstream: &str) -> String {
    format!("[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"{upstream}\"\n")
}

fn app_config(servers: &[String], extra: &str) -> String {
    format!(
        "{}{}",
        upstream_toml("app", servers, extra),
        route_to("app")
    )
}

fn upstream_named(proxy: &TestProxy, name: &str) -> Arc<Upstream> {
    proxy
        .handle()
        .snapshot()
        .upstreams
        .iter()
        .find(|u| u.name == name)
        .cloned()
        .expect("the upstream is in the running snapshot")
}

fn server_healthy(proxy: &TestProxy, upstream: &str, server: &str) -> bool {
    upstream_named(proxy, upstream)
        .servers()
        .iter()
        .find(|s| s.label == server)
        .expect("the server is in the upstream")
        .health()
        .is_healthy()
}

fn gauge_line(upstream: &str, server: &str, value: u8) -> String {
    format!(
        "rampart_upstream_server_healthy{{server=\"{server}\",upstream=\"{upstream}\"}} {value}"
    )
}

fn in_flight(proxy: &TestProxy, server: &str) -> usize {
    upstream_named(proxy, "app")
        .servers()
        .iter()
        .find(|s| s.label == server)
        .expect("the server is in the upstream")
        .health()
        .in_flight()
}

async fn settle(proxy: &TestProxy, server: String, count: usize) {
    assert!(
        eventually(WAIT, || in_flight(proxy, &server) == count).await,
        "{server} never reached {count} requests in flight"
    );
}

/// The status of a GET, its body read to the end.
async fn get_status(proxy: &TestProxy, client: &reqwest::Client, path: &str) -> u16 {
    let response = client.get(proxy.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_check_ejects_a_failing_server_and_traffic_goes_to_the_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = SwitchableUpstream::start(200).await;
    let bad = SwitchableUpstream::start_unix(&dir.path().join("bad.sock"), 500).await;
    let proxy = TestProxy::start(&app_config(&[good.server(), bad.server()], CHECK)).await;

    assert!(
        eventually(WAIT, || !server_healthy(&proxy, "app", &bad.server())).await,
        "the server whose /health answers 500 was never ejected"
    );
    assert!(bad.check_count() >= 2, "ejected before `unhealthy` checks");
    assert!(server_healthy(&proxy, "app", &good.server()));

    let client = proxy.client_h1();
    for i in 0..10 {
        assert_eq!(get_status(&proxy, &client, &format!("/r{i}")).await, 200);
    }
    assert_eq!((good.served(), bad.served()), (10, 0));

    let metrics = proxy.handle().metrics().render();
    assert!(
        metrics.contains(&gauge_line("app", &good.server(), 1)),
        "{metrics}"
    );
    assert!(
        metrics.contains(&gauge_line("app", &bad.server(), 0)),
        "{metrics}"
    );

    // The check: Host is the server's address (`localhost` for a unix socket), and it says
    // who it is.
    let check = good.checks()[0].clone();
    assert_eq!(check.status, 200);
    assert_eq!(check.host, Some(good.addr.unwrap().to_string()));
    assert_eq!(check.user_agent.as_deref(), Some("rampart-health-check"));
    let check = bad.checks()[0].clone();
    assert_eq!(
        (check.status, check.host.as_deref()),
        (500, Some("localhost"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_server_comes_back_after_healthy_consecutive_good_checks() {
    let good = SwitchableUpstream::start(200).await;
    let flaky = SwitchableUpstream::start(503).await;
    // `healthy = 3` and 300 ms between checks: one good check must not be enough.
    let check = "health_check = { path = \"/health\", interval = \"300ms\", timeout = \"300ms\", healthy = 3, unhealthy = 1 }";
    let proxy = TestProxy::start(&app_config(&[good.server(), flaky.server()], check)).await;
    assert!(eventually(WAIT, || !server_healthy(&proxy, "app", &flaky.server())).await);

    let checks_before = flaky.check_count();
    flaky.set_health(200);
    assert!(
        eventually(WAIT, || flaky.checks()[checks_before..]
            .iter()
            .any(|c| c.status == 200))
        .await
    );
    assert!(
        !server_healthy(&proxy, "app", &flaky.server()),
        "back after one good check"
    );
    assert!(eventually(WAIT, || server_healthy(&proxy, "app", &flaky.server())).await);
    let good_checks = flaky.checks()[checks_before..]
        .iter()
        .filter(|c| c.status == 200)
        .count();
    assert!(good_checks >= 3, "back after {good_checks} good checks");
    let metrics = proxy.handle().metrics().render();
    assert!(
        metrics.contains(&gauge_line("app", &flaky.server(), 1)),
        "{metrics}"
    );

    // Both take traffic again, in turn.
    let client = proxy.client_h1();
    for i in 0..10 {
        assert_eq!(get_status(&proxy, &client, &format!("/r{i}")).await, 200);
    }
    assert_eq!((good.served(), flaky.served()), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_never_picks_an_unhealthy_server_and_spreads_its_share() {
    let a = SwitchableUpstream::start(200).await;
    let down = SwitchableUpstream::start(500).await;
    let c = SwitchableUpstream::start(200).await;
    let proxy = TestProxy::start(&app_config(
        &[a.server(), down.server(), c.server()],
        &format!("balance = \"round_robin\"\n{CHECK}"),
    ))
    .await;
    assert!(eventually(WAIT, || !server_healthy(&proxy, "app", &down.server())).await);

    let client = proxy.client_h2();
    for i in 0..30 {
        assert_eq!(get_status(&proxy, &client, &format!("/r{i}")).await, 200);
    }
    assert_eq!((a.served(), down.served(), c.served()), (15, 0, 15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_ejected_after_passive_failures_and_then_never_tried() {
    let live = TestUpstream::start().await;
    let dead = format!("http://{}", dead_addr().await);
    // No retries, so each try of the dead server shows as a 502.
    let proxy = TestProxy::start(&app_config(
        &[dead.clone(), live.server()],
        "retries = 0\npassive_failures = 3",
    ))
    .await;
    let client = proxy.client_h1();
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(get_status(&proxy, &client, &format!("/r{i}")).await);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        3,
        "exactly passive_failures 502s: {statuses:?}"
    );
    let last_502 = statuses.iter().rposition(|&s| s == 502).unwrap();
    assert!(
        last_502 < 6,
        "round-robin reaches the dead server every other request: {statuses:?}"
    );
    assert_eq!(live.count(), 37);

    assert!(!server_healthy(&proxy, "app", &dead));
    assert!(upstream_named(&proxy, "app").has_healthy_server());
    let metrics = proxy.handle().metrics().render();
    assert!(metrics.contains(&gauge_line("app", &dead, 0)), "{metrics}");
    assert!(
        metrics.contains(&gauge_line("app", &live.server(), 1)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_failures_zero_never_ejects() {
    let live = TestUpstream::start().await;
    let dead = format!("http://{}", dead_addr().await);
    let proxy = TestProxy::start(&app_config(
        &[dead.clone(), live.server()],
        "retries = 0\npassive_failures = 0",
    ))
    .await;
    let client = proxy.client_h1();
    let mut bad = 0;
    for i in 0..10 {
        if get_status(&proxy, &client, &format!("/r{i}")).await == 502 {
            bad += 1;
        }
    }
    assert_eq!(bad, 5, "the dead server keeps its turn");
    assert!(server_healthy(&proxy, "app", &dead));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_server_is_never_ejected_passively() {
    let dead = format!("http://{}", dead_addr().await);
    let proxy = TestProxy::start(&app_config(
        std::slice::from_ref(&dead),
        "passive_failures = 1",
    ))
    .await;
    let client = proxy.client_h1();
    for i in 0..5 {
        assert_eq!(get_status(&proxy, &client, &format!("/r{i}")).await, 502);
    }
    assert!(server_healthy(&proxy, "app", &dead));
    assert!(upstream_named(&proxy, "app").has_healthy_server());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_new_requests_to_the_idle_server() {
    let a = TestUpstream::start().await;
    let b = TestUpstream::start().await;
    let proxy = TestProxy::start(&app_config(
        &[a.server(), b.server()],
        "balance = \"least_conn\"",
    ))
    .await;
    let client = proxy.client_h2();
    let in_flight = |up: &TestUpstream| in_flight(&proxy, &up.server());
    // A finished exchange leaves the count when the proxy is done with its body, which may be
    // a moment after the client has read it.
    let settle = |up: &TestUpstream, count: usize| settle(&proxy, up.server(), count);

    // One request waits 1.5 s for its response head.
    let slow = {
        let client = client.clone();
        let url = proxy.url("/slow/1500");
        tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
    };
    assert!(
        eventually(WAIT, || a.count() + b.count() == 1).await,
        "the slow request never arrived"
    );
    let (busy, idle) = if a.count() == 1 { (&a, &b) } else { (&b, &a) };
    assert_eq!(in_flight(busy), 1);
    for i in 0..6 {
        settle(idle, 0).await;
        assert_eq!(get_status(&proxy, &client, &format!("/fast{i}")).await, 200);
    }
    assert_eq!(
        (busy.count(), idle.count()),
        (1, 6),
        "all fast requests go to the idle server"
    );
    assert_eq!(slow.await.unwrap(), 200);
    settle(&a, 0).await;
    settle(&b, 0).await;

    // A response whose body is still streaming counts too.
    let streaming = client.get(proxy.url("/stream/4/300")).send().await.unwrap();
    assert_eq!(streaming.status(), 200);
    let (busy, idle) = if a.last().path.starts_with("/stream") {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(in_flight(busy), 1, "the streaming response is in flight");
    let (busy_before, idle_before) = (busy.count(), idle.count());
    for i in 0..4 {
        settle(idle, 0).await;
        assert_eq!(
            get_status(&proxy, &client, &format!("/during{i}")).await,
            200
        );
    }
    assert_eq!(
        (busy.count() - busy_before, idle.count() - idle_before),
        (0, 4),
        "a streaming response keeps its server busy"
    );
    assert_eq!(
        streaming.text().await.unwrap(),
        "chunk-0\nchunk-1\nchunk-2\nchunk-3\n"
    );
    settle(busy, 0).await;

    // Idle again: ties take turns.
    let (a_before, b_before) = (a.count(), b.count());
    for i in 0..6 {
        settle(&a, 0).await;
        settle(&b, 0).await;
        assert_eq!(
            get_status(&proxy, &client, &format!("/after{i}")).await,
            200
        );
    }
    assert_eq!((a.count() - a_before, b.count() - b_before), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_down_requests_get_503_at_once_and_readiness_follows() {
    let one = SwitchableUpstream::start(500).await;
    let two = SwitchableUpstream::start(500).await;
    let proxy = TestProxy::start(&app_config(&[one.server(), two.server()], CHECK)).await;
    let upstream = upstream_named(&proxy, "app");
    assert!(eventually(WAIT, || !upstream.has_healthy_server()).await);

    for client in [proxy.client_h1(), proxy.client_h2()] {
        let response = client.get(proxy.url("/down")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        assert_proxy_error(
            &headers,
            503,
            &body,
            "503 Service Unavailable\n",
            "no healthy server",
        );
    }
    assert_eq!(
        (one.served(), two.served()),
        (0, 0),
        "failing fast: nothing was forwarded"
    );
    // Counted as upstream errors of their own kind (issue 15), not as connect errors.
    let errors = &proxy.handle().metrics().upstream_errors;
    assert_eq!(
        errors
            .with_label_values(&["app", "no_healthy_server"])
            .get(),
        2
    );
    assert_eq!(errors.with_label_values(&["app", "connect"]).get(), 0);

    two.set_health(200);
    assert!(eventually(WAIT, || upstream.has_healthy_server()).await);
    let client = proxy.client_h1();
    for i in 0..4 {
        assert_eq!(get_status(&proxy, &client, &format!("/up{i}")).await, 200);
    }
    assert_eq!((one.served(), two.served()), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passively_ejected_servers_all_down_is_503_without_connecting() {
    let dead_one = format!("http://{}", dead_addr().await);
    let dead_two = format!("http://{}", dead_addr().await);
    let proxy = TestProxy::start(&app_config(
        &[dead_one.clone(), dead_two.clone()],
        "retries = 1\npassive_failures = 1",
    ))
    .await;
    let client = proxy.client_h1();
    // Both servers fail this request (the retry included): a 502, and both are ejected.
    assert_eq!(get_status(&proxy, &client, "/first").await, 502);
    let upstream = upstream_named(&proxy, "app");
    assert!(!upstream.has_healthy_server());
    let response = client.get(proxy.url("/second")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let headers = response.headers().clone();
    assert_proxy_error(
        &headers,
        503,
        &response.text().await.unwrap(),
        "503 Service Unavailable\n",
        "every server ejected",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_stop_when_a_reload_removes_their_upstream() {
    let old = SwitchableUpstream::start(200).await;
    let new = SwitchableUpstream::start(200).await;
    let body = format!(
        "{}{}",
        upstream_toml("old", &[old.server()], CHECK),
        route_to("old")
    );
    let proxy = TestProxy::start(&body).await;
    assert!(eventually(WAIT, || old.check_count() >= 3).await);

    let replaced = proxy.config.replace(
        &body,
        &format!(
            "{}{}",
            upstream_toml("new", &[new.server()], CHECK),
            route_to("new")
        ),
    );
    let snapshot = rampart::config::load_str(&replaced, "reloaded.toml").unwrap();
    proxy.handle().reload(snapshot);
    assert!(eventually(WAIT, || new.check_count() >= 3).await);

    // The old task notices at its next tick (100 ms): after that, no more checks.
    let settled = old.check_count();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let after_tick = old.check_count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        old.check_count(),
        after_tick,
        "the removed upstream is still checked ({settled} checks before the reload settled)"
    );
    let metrics = proxy.handle().metrics().render();
    assert!(!metrics.contains(&old.server()), "stale series: {metrics}");
    assert!(
        metrics.contains(&gauge_line("new", &new.server(), 1)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_an_ejected_server_ejected() {
    let good = SwitchableUpstream::start(200).await;
    let bad = SwitchableUpstream::start(500).await;
    let body = app_config(&[good.server(), bad.server()], CHECK);
    let proxy = TestProxy::start(&body).await;
    assert!(eventually(WAIT, || !server_healthy(&proxy, "app", &bad.server())).await);

    // The same upstream, now with other settings: the server keeps its health.
    let replaced = proxy.config.replace(
        &body,
        &app_config(
            &[good.server(), bad.server()],
            &format!("balance = \"least_conn\"\n{CHECK}"),
        ),
    );
    let snapshot = rampart::config::load_str(&replaced, "reloaded.toml").unwrap();
    proxy.handle().reload(snapshot);
    assert!(
        !server_healthy(&proxy, "app", &bad.server()),
        "a reload resurrected a dead server"
    );
    let metrics = proxy.handle().metrics().render();
    assert!(
        metrics.contains(&gauge_line("app", &bad.server(), 0)),
        "{metrics}"
    );
    let client = proxy.client_h1();
    for i in 0..6 {
        assert_eq!(get_status(&proxy, &client, &format!("/r{i}")).await, 200);
    }
    assert_eq!((good.served(), bad.served()), (6, 0));

    // The new snapshot's checks bring it back.
    bad.set_health(200);
    assert!(eventually(WAIT, || server_healthy(&proxy, "app", &bad.server())).await);
}

#[test]
fn health_check_settings_are_validated_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
    rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n\
         [upstreams.app]\nservers = [\"http://127.0.0.1:9\"]\nbalance = \"least_conn\"\n\
         health_check = {{ path = \"health\", interval = \"1s\", timeout = \"2s\", healthy = 0, unhealthy = 0 }}\n\
         [upstreams.zero]\nservers = [\"http://127.0.0.1:9\"]\n\
         health_check = {{ path = \"/h\", interval = \"0s\", timeout = \"0s\" }}\n\
         [[routes]]\nupstream = \"app\"\n",
        cert.display().to_string(),
        key.display().to_string(),
    );
    let errors = rampart::config::load_str(&text, "bad.toml")
        .unwrap_err()
        .to_string();
    for expected in [
        "bad.toml:9:1: upstreams.app.health_check.path: ",
        "bad.toml:9:1: upstreams.app.health_check.timeout: must not be longer than interval",
        "bad.toml:9:1: upstreams.app.health_check.healthy: must be at least 1",
        "bad.toml:9:1: upstreams.app.health_check.unhealthy: must be at least 1",
        "bad.toml:12:1: upstreams.zero.health_check.interval: must be more than 0s",
        "bad.toml:12:1: upstreams.zero.health_check.timeout: must be more than 0s",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert_eq!(errors.lines().count(), 6, "{errors}");

    // A valid one loads, least_conn without a warning.
    let fixed = text
        .replace(
            "path = \"health\", interval = \"1s\", timeout = \"2s\", healthy = 0, unhealthy = 0",
            "path = \"/health\"",
        )
        .replace("interval = \"0s\", timeout = \"0s\"", "interval = \"5s\"");
    let snapshot = rampart::config::load_str(&fixed, "good.toml").unwrap();
    assert!(
        snapshot
            .warnings
            .iter()
            .all(|w| !w.contains("least_conn") && !w.contains("health_check")),
        "{:?}",
        snapshot.warnings
    );
}
