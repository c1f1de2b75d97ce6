//! Bans (`[ban]`, a route's `ban`) end to end: strikes from the statuses clients get (the
//! limiter's 429, an upstream's 401), the 403 of a banned client with the security headers, a
//! banned address closed at accept on both listeners, expiry, `allow`, unbanning through the
//! admin listener and the CLI, bans kept across a reload, and the config checks.
//!
//! Each test's clients connect from their own loopback address (127.0.0.x), so a ban of one
//! leaves the others (and the harness on 127.0.0.1) alone.

use crate::common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::binary::{rampart, run_to_end, text};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const ADMIN: &str = "admin = \"127.0.0.1:0\"";

/// reqwest over HTTP/1.1 from `source` (a loopback address of its own).
fn client_from(proxy: &TestProxy, source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .http1_only()
        .local_address(source)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .add_root_certificate(reqwest::Certificate::from_der(&proxy.cert_der).unwrap())
        .resolve("localhost", proxy.https)
        .build()
        .unwrap()
}

/// One GET from `client`: the status, or `None` when the connection was refused or closed.
async fn status(client: &reqwest::Client, proxy: &TestProxy, path: &str) -> Option<u16> {
    match client.get(proxy.url(path)).send().await {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(_) => None,
    }
}

/// The value of one metric sample (`name{labels}` as rendered), 0 when absent.
fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let text = proxy.handle().metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// `GET /bans` on the admin listener, parsed.
async fn ban_list(proxy: &TestProxy) -> Vec<serde_json::Value> {
    let resp = reqwest::get(proxy.admin_url("/bans")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().one("content-type").as_deref(),
        Some("application/json")
    );
    let list: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    list.as_array().expect("a JSON array").clone()
}

/// Plain http from `source`: the bytes answered before the connection closed (none when it
/// was closed at accept; a redirect otherwise).
async fn http_from(proxy: &TestProxy, source: &str) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let Ok(mut stream) = socket.connect(proxy.http_addr()).await else {
        return Vec::new();
    };
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

/// An upstream `app` with a route `login` (`/login/`, limited to one request a minute) and a
/// catch-all route `app`, plus `extra` (the `[ban]` section).
async fn limited_proxy(up: &TestUpstream, extra: &str) -> TestProxy {
    TestProxy::builder()
        .listen(ADMIN)
        .config(&format!(
            "{extra}\n{}\n[[routes]]\nname = \"login\"\npath = \"/login/\"\nupstream = \"app\"\nrate_limit = {{ rate = \"1/min\", burst = 1 }}\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            upstream_toml("app", &[up.server()], "")
        ))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_429s_in_a_minute_ban_then_403_then_closed_at_accept() {
    let up = TestUpstream::start().await;
    let proxy = limited_proxy(
        &up,
        "[ban]\nstrikes = [429]\nafter = 10\nwithin = \"60s\"\nfor = \"1h\"\n",
    )
    .await;
    let abuser = client_from(&proxy, "127.0.0.2");
    assert_eq!(status(&abuser, &proxy, "/login/").await, Some(200));
    for i in 0..9 {
        assert_eq!(status(&abuser, &proxy, "/login/").await, Some(429), "{i}");
    }
    assert!(ban_list(&proxy).await.is_empty(), "nine strikes: not yet");
    // A connection opened before the ban.
    let mut open = tls_connect_from(proxy.https, "127.0.0.2".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(status(&abuser, &proxy, "/login/").await, Some(429));

    // Banned: the next request on a connection still open is 403 with the security headers,
    // on any route, and the connection is closed after it.
    open.write_all(b"GET /anything HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let responses = parse_responses(&read_until_close(&mut open, RAW_READ_LIMIT).await);
    assert_eq!(responses.len(), 1);
    let resp = &responses[0];
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_proxy_error(
        resp,
        403,
        &resp.body_str(),
        "403 Forbidden\n",
        "a banned client",
    );

    // A new connection from the address is closed at accept: no TLS, no answer, on either
    // listener.
    let fresh = client_from(&proxy, "127.0.0.2");
    assert_eq!(status(&fresh, &proxy, "/").await, None);
    assert!(http_from(&proxy, "127.0.0.2").await.is_empty());
    // Others are served.
    let other = client_from(&proxy, "127.0.0.3");
    assert_eq!(status(&other, &proxy, "/").await, Some(200));
    assert!(http_from(&proxy, "127.0.0.3")
        .await
        .starts_with(b"HTTP/1.1 30"));

    let list = ban_list(&proxy).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let ban = &list[0];
    assert_eq!(ban["address"], "127.0.0.2");
    assert_eq!(ban["route"], "login");
    assert_eq!(ban["reason"], "10 strikes (429) within 1m");
    let left = ban["expires_in"].as_u64().unwrap();
    assert!((3500..=3600).contains(&left), "expires_in {left}");
    assert!(ban["expires"].as_u64().unwrap() > 1_700_000_000);

    assert_eq!(metric(&proxy, "rampart_bans_total{route=\"login\"}"), 1.0);
    assert_eq!(
        metric(&proxy, "rampart_banned_refused_total{stage=\"request\"}"),
        1.0
    );
    assert_eq!(
        metric(&proxy, "rampart_banned_refused_total{stage=\"accept\"}"),
        2.0
    );
    let scrape = reqwest::get(proxy.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.lines().any(|l| l == "rampart_bans_active 1"),
        "{scrape}"
    );

    // A reload keeps the jail: still banned, still listed.
    let snapshot = rampart::config::load_str(&proxy.config, "test.toml").unwrap();
    proxy.handle().reload(snapshot);
    assert_eq!(status(&fresh, &proxy, "/").await, None);
    assert_eq!(ban_list(&proxy).await.len(), 1);
    assert_eq!(status(&other, &proxy, "/").await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_ends_after_its_time() {
    let up = TestUpstream::start().await;
    let proxy = limited_proxy(&up, "[ban]\nafter = 2\nfor = \"5s\"\n").await;
    let client = client_from(&proxy, "127.0.0.4");
    assert_eq!(status(&client, &proxy, "/login/").await, Some(200));
    assert_eq!(status(&client, &proxy, "/login/").await, Some(429));
    assert_eq!(status(&client, &proxy, "/login/").await, Some(429));
    let fresh = client_from(&proxy, "127.0.0.4");
    assert_eq!(status(&fresh, &proxy, "/").await, None);
    let ban = ban_list(&proxy).await;
    assert_eq!(ban.len(), 1);
    assert!(ban[0]["expires_in"].as_u64().unwrap() <= 5);

    // Served again once the ban ends (polled: the machine may be slow, never fast).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fresh = client_from(&proxy, "127.0.0.4");
        if status(&fresh, &proxy, "/").await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the ban never ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ban_list(&proxy).await.is_empty());
    assert!(http_from(&proxy, "127.0.0.4")
        .await
        .starts_with(b"HTTP/1.1 30"));
}

/// One upstream answering 429 on `/status/429`, `[ban] after = 1`: one such answer bans.
async fn one_strike_proxy(up: &TestUpstream, extra: &str) -> TestProxy {
    TestProxy::builder()
        .listen(ADMIN)
        .config(&simple_config(up))
        .config(&format!("[ban]\nafter = 1\n{extra}"))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_lifted_through_the_admin_listener_and_the_cli() {
    let up = TestUpstream::start().await;
    let proxy = one_strike_proxy(&up, "").await;
    let client = || client_from(&proxy, "127.0.0.5");

    // The upstream's own 429 is a strike: whoever made the status, it counts.
    assert_eq!(status(&client(), &proxy, "/status/429").await, Some(429));
    assert_eq!(status(&client(), &proxy, "/").await, None);

    let admin = reqwest::Client::new();
    let lifted = admin
        .delete(proxy.admin_url("/bans/127.0.0.5"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    assert_eq!(status(&client(), &proxy, "/").await, Some(200));
    let again = admin
        .delete(proxy.admin_url("/bans/127.0.0.5"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "not banned any more");
    let bad = admin
        .delete(proxy.admin_url("/bans/not-an-ip"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let wrong_method = admin.post(proxy.admin_url("/bans")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    // Banned again, then listed and lifted with the CLI.
    assert_eq!(status(&client(), &proxy, "/status/429").await, Some(429));
    assert_eq!(status(&client(), &proxy, "/").await, None);
    let url = format!("http://{}", proxy.admin_addr());
    let dir = tempfile::tempdir().unwrap();
    let mut list = rampart(dir.path());
    list.args(["bans", "list", "--url", &url]);
    let listed = run_to_end(list);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json[0]["address"], "127.0.0.5");
    assert_eq!(json[0]["route"], "app");

    let mut remove = rampart(dir.path());
    remove.args(["bans", "remove", "127.0.0.5", "--url", &url]);
    let removed = run_to_end(remove);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert_eq!(status(&client(), &proxy, "/").await, Some(200));

    // Lifting a ban that is not there fails (exit 1), saying why.
    let mut remove = rampart(dir.path());
    remove.args(["bans", "remove", "127.0.0.5", "--url", &url]);
    let missing = run_to_end(remove);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("not banned"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_networks_are_never_banned() {
    let up = TestUpstream::start().await;
    let proxy = one_strike_proxy(&up, "allow = [\"127.0.0.6/32\"]\n").await;
    let allowed = client_from(&proxy, "127.0.0.6");
    for _ in 0..5 {
        assert_eq!(status(&allowed, &proxy, "/status/429").await, Some(429));
    }
    assert_eq!(status(&allowed, &proxy, "/").await, Some(200));
    assert!(ban_list(&proxy).await.is_empty());

    let other = client_from(&proxy, "127.0.0.7");
    assert_eq!(status(&other, &proxy, "/status/429").await, Some(429));
    let fresh = client_from(&proxy, "127.0.0.7");
    assert_eq!(status(&fresh, &proxy, "/").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_route_bans_on_its_own_401s_after_its_own_count() {
    let up = TestUpstream::start().await;
    // `[ban]` counts 429s only, two of them; the login route counts 401s (and 429s), three.
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&format!(
            "[ban]\nafter = 2\n\n{}\n[[routes]]\nname = \"login\"\npath = \"/status/401\"\nupstream = \"app\"\nban = {{ strikes = [401, 429], after = 3 }}\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n\n[[routes]]\nname = \"open\"\npath = \"/status/429\"\nupstream = \"app\"\nban = false\n",
            upstream_toml("app", &[up.server()], "")
        ))
        .start()
        .await;
    let client = client_from(&proxy, "127.0.0.8");
    // Statuses the rules do not list are no strikes.
    for _ in 0..5 {
        assert_eq!(status(&client, &proxy, "/status/403").await, Some(403));
    }
    let mut last = None;
    for _ in 0..3 {
        last = status(&client, &proxy, "/status/401").await;
    }
    assert_eq!(last, Some(401));
    let fresh = client_from(&proxy, "127.0.0.8");
    assert_eq!(status(&fresh, &proxy, "/").await, None);
    let list = ban_list(&proxy).await;
    assert_eq!(list[0]["route"], "login");
    assert_eq!(list[0]["reason"], "3 strikes (401, 429) within 1m");
    assert_eq!(metric(&proxy, "rampart_bans_total{route=\"login\"}"), 1.0);

    // On a route with `ban = false`, 429s are no strikes ([ban] would ban at the second).
    let other = client_from(&proxy, "127.0.0.9");
    for _ in 0..5 {
        assert_eq!(status(&other, &proxy, "/status/429").await, Some(429));
    }
    assert_eq!(status(&other, &proxy, "/").await, Some(200));
}

#[test]
fn bad_ban_settings_are_refused_with_their_line() {
    let errors = load_config_body(
        "[ban]\nstrikes = [200, 429]\nafter = 0\nwithin = \"0s\"\nstore = \"memcached\"\n\n[[routes]]\nupstream = \"app\"\nban = { after = 0, strikes = [302] }\n",
    )
    .unwrap_err();
    for expected in [
        "test.toml:13:",
        "ban.strikes",
        "ban.after",
        "ban.within",
        "ban.store",
        "routes[0].ban.after",
        "routes[0].ban.strikes",
    ] {
        assert!(errors.contains(expected), "{expected}: {errors}");
    }
    let errors = load_config_body("[ban]\nstore = \"redis\"\n").unwrap_err();
    assert!(errors.contains("[rate_limit].redis_url"), "{errors}");
    let errors =
        load_config_body("[[routes]]\nupstream = \"app\"\nban = { after = 3, strikez = [401] }\n")
            .unwrap_err();
    assert!(errors.contains("routes"), "{errors}");
    assert!(load_config_body("[[routes]]\nupstream = \"app\"\nban = false\n").is_ok());
    assert!(load_config_body("[ban]\nallow = [\"10.0.0.0/8\"]\nstore = \"local\"\n").is_ok());
}

/// Heads hyper refuses before the pipeline runs (its own 400, rewritten by rampart) are strikes
/// too: whoever made the status, the client got it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_refused_before_routing_are_strikes_too() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .listen(ADMIN)
        .config(&simple_config(&up))
        .config("[ban]\nstrikes = [400]\nafter = 2\n")
        .start()
        .await;
    let source: IpAddr = "127.0.0.11".parse().unwrap();
    for _ in 0..2 {
        let mut tls = tls_connect_from(proxy.https, source).await.unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nNo Colon Here\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_close(&mut tls, RAW_READ_LIMIT).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The strike is counted in a task of its own: wait for the ban.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ban_list(&proxy).await.is_empty() {
        assert!(Instant::now() < deadline, "two refused heads ban");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ban_list(&proxy).await[0]["route"], "-");
    assert!(tls_connect_from(proxy.https, source).await.is_err());
    assert_eq!(
        status(&client_from(&proxy, "127.0.0.12"), &proxy, "/").await,
        Some(200)
    );
}
