//! The real binary's access log (one JSON object per line on stdout, never a secret) and
//! `rampart healthcheck`.
//!
//! Each test runs `rampart run` in its own temporary folder with a real upstream, sends real
//! requests, then parses every stdout line with serde_json.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use serde_json::Value;

/// Secrets the client and the upstream send: none may reach stdout or stderr.
const QUERY_TOKEN: &str = "QUERYTOKEN0a1b2c";
const AUTHORIZATION: &str = "Bearer AUTHSECRET9f8e7d";
const COOKIE: &str = "session=COOKIESECRET5544";
/// From the upstream's `/set-cookie` ([`UPSTREAM_SET_COOKIES`]).
const SET_COOKIE_SECRETS: [&str; 2] = ["s3cr3t-session", "tok3n"];

/// The fields of an access-log line, in order.
const FIELDS: [&str; 11] = [
    "time",
    "request_id",
    "client_ip",
    "method",
    "host",
    "path",
    "status",
    "bytes",
    "duration",
    "route",
    "upstream",
];

/// A config in `dir`: a development certificate generated there, routes `api` (to the
/// upstream), `cookies` (to the upstream's `/set-cookie`) and nothing else (404).
fn write_config(dir: &Path, server: &str, listen: &str, log: &str) -> std::path::PathBuf {
    let text = format!(
        "[listen]\n{listen}\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\
         [log]\n{log}\n\
         [upstreams.app]\nservers = [{server:?}]\n\
         [[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"app\"\n\
         [[routes]]\nname = \"cookies\"\npath = \"/set-cookie\"\nupstream = \"app\"\n"
    );
    let path = dir.join("rampart.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A client that trusts the generated development certificate and reaches `localhost` at
/// `https`.
fn client(dir: &Path, https: SocketAddr) -> reqwest::Client {
    let pem = std::fs::read(dir.join("certs/dev.crt")).expect("the dev certificate was written");
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", https)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Starts `rampart run` (RUST_LOG as given, or the config's `[log] level` when `None`) and
/// returns it with the https address (from the "rampart is serving" line).
async fn start(dir: &Path, rust_log: Option<&str>) -> Running {
    let mut cmd = rampart(dir);
    cmd.args(["run", "-c", "rampart.toml", "--no-watch"]);
    match rust_log {
        Some(level) => cmd.env("RUST_LOG", level),
        None => cmd.env_remove("RUST_LOG"),
    };
    Running::spawn(cmd)
}

/// The stdout lines once there are at least `count` (or after 10 s).
async fn access_lines(running: &Running, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = running.stdout();
        if lines.len() >= count || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every line parsed as a JSON object with exactly [`FIELDS`], in that order.
fn parse_lines(lines: &[String]) -> Vec<serde_json::Map<String, Value>> {
    lines
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            let Value::Object(object) = value else {
                panic!("stdout line is not a JSON object: {line:?}")
            };
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            let mut sorted_fields = FIELDS.to_vec();
            sorted_fields.sort();
            let mut sorted_keys = keys.clone();
            sorted_keys.sort();
            assert_eq!(sorted_keys, sorted_fields, "fields of {line:?}");
            assert!(
                line.starts_with("{\"time\":\""),
                "time comes first: {line:?}"
            );
            object
        })
        .collect()
}

fn by_request_id<'a>(
    entries: &'a [serde_json::Map<String, Value>],
    id: &str,
) -> &'a serde_json::Map<String, Value> {
    let found: Vec<_> = entries.iter().filter(|e| e["request_id"] == id).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one line for request {id}: {entries:?}"
    );
    found[0]
}

/// `2025-03-01T12:34:56.789Z`.
fn is_rfc3339_utc_millis(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_line_per_request_on_stdout_and_no_secret_anywhere() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &up.server(),
        "https = \"127.0.0.1:0\"",
        "access = true",
    );
    // TRACE: every log line there is, and still no secret.
    let mut running = start(dir.path(), Some("trace")).await;
    let serving = running
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let https = logged_addr(&serving, "https");
    let client = client(dir.path(), https);
    let url = |path: &str| format!("https://localhost:{}{path}", https.port());

    let api = client
        .get(url(&format!("/api/items?token={QUERY_TOKEN}&page=2")))
        .header("authorization", AUTHORIZATION)
        .header("cookie", COOKIE)
        .header("x-request-id", "log-test-api")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    let api_body = api.bytes().await.unwrap();
    // The upstream echoes the request headers: the secrets did go through.
    assert!(String::from_utf8_lossy(&api_body).contains(QUERY_TOKEN));

    let cookies = client
        .get(url("/set-cookie"))
        .header("x-request-id", "log-test-cookies")
        .send()
        .await
        .unwrap();
    assert_eq!(cookies.headers().get_all("set-cookie").iter().count(), 4);
    let cookies_body = cookies.bytes().await.unwrap();

    let missing = client
        .post(url("/nowhere?token=x"))
        .header("x-request-id", "log-test-404")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.bytes().await.unwrap(), "404 Not Found\n");

    let head = client
        .head(url("/api/head"))
        .header("x-request-id", "log-test-head")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    let lines = access_lines(&running, 4).await;
    assert_eq!(lines.len(), 4, "one line per request: {lines:#?}");
    let entries = parse_lines(&lines);

    let api = by_request_id(&entries, "log-test-api");
    assert!(
        is_rfc3339_utc_millis(api["time"].as_str().unwrap()),
        "{api:?}"
    );
    assert_eq!(api["client_ip"], "127.0.0.1");
    assert_eq!(api["method"], "GET");
    assert_eq!(api["host"], "localhost");
    assert_eq!(api["path"], "/api/items", "the query is dropped");
    assert_eq!(api["status"], 200);
    assert_eq!(api["bytes"], api_body.len() as u64);
    let duration = api["duration"].as_f64().expect("duration is a number");
    assert!(
        duration > 0.0 && duration < 10.0,
        "duration in seconds: {duration}"
    );
    assert_eq!(api["route"], "api");
    assert_eq!(api["upstream"], "app");

    let cookies = by_request_id(&entries, "log-test-cookies");
    assert_eq!(cookies["path"], "/set-cookie");
    assert_eq!(cookies["bytes"], cookies_body.len() as u64);
    assert_eq!(
        (&cookies["route"], &cookies["upstream"]),
        (&Value::from("cookies"), &Value::from("app"))
    );

    let missing = by_request_id(&entries, "log-test-404");
    assert_eq!(missing["method"], "POST");
    assert_eq!(missing["path"], "/nowhere");
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["bytes"], "404 Not Found\n".len() as u64);
    assert_eq!(
        (&missing["route"], &missing["upstream"]),
        (&Value::from("-"), &Value::from("-"))
    );

    let head = by_request_id(&entries, "log-test-head");
    assert_eq!(
        (&head["method"], &head["bytes"]),
        (&Value::from("HEAD"), &Value::from(0))
    );

    let stdout = running.stdout().join("\n");
    let stderr = running.stderr_text();
    let mut secrets = vec![
        QUERY_TOKEN,
        AUTHORIZATION,
        "AUTHSECRET9f8e7d",
        COOKIE,
        "COOKIESECRET5544",
    ];
    secrets.extend(SET_COOKIE_SECRETS);
    for secret in secrets {
        assert!(!stdout.contains(secret), "stdout contains {secret:?}");
        assert!(!stderr.contains(secret), "stderr contains {secret:?}");
    }
    // Access lines go to stdout only.
    assert!(
        !stderr.contains("log-test-api\""),
        "an access line on stderr"
    );
    assert!(stderr.contains("TRACE"), "the run logged at trace level");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_query_keeps_the_query_and_a_warn_level_keeps_the_access_log() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // At level "warn" the "rampart is serving" line is not printed, so the addresses are
    // chosen here: ports that were free a moment ago.
    let (https, admin) = (free_addr().await, free_addr().await);
    let config = write_config(
        dir.path(),
        &up.server(),
        &format!("https = \"{https}\"\nadmin = \"{admin}\""),
        "log_query = true\nlevel = \"warn\"",
    );
    let running = start(dir.path(), None).await;
    wait_healthy(dir.path(), &config).await;

    let r = client(dir.path(), https)
        .get(format!(
            "https://localhost:{}/api/search?q=rust&page=2",
            https.port()
        ))
        .header("x-request-id", "log-query")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lines = access_lines(&running, 1).await;
    let entries = parse_lines(&lines);
    assert_eq!(entries.len(), 1, "{lines:?}");
    let entry = by_request_id(&entries, "log-query");
    assert_eq!(entry["path"], "/api/search?q=rust&page=2");
    // `level = "warn"` applies to the text log: no INFO line after the config was read.
    let stderr = running.stderr_text();
    assert!(!stderr.contains("rampart is serving"), "{stderr}");
}

/// Runs `rampart healthcheck -c config` until it exits 0 (10 s at most).
async fn wait_healthy(dir: &Path, config: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut cmd = rampart(dir);
        cmd.arg("healthcheck").arg("-c").arg(config);
        let out = run_to_end(cmd);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rampart did not become healthy: {}",
            text(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_false_prints_nothing_on_stdout() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &up.server(),
        "https = \"127.0.0.1:0\"",
        "access = false",
    );
    let mut running = start(dir.path(), Some("info")).await;
    let serving = running
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let https = logged_addr(&serving, "https");
    let client = client(dir.path(), https);
    for path in ["/api/a", "/set-cookie", "/nowhere"] {
        let r = client
            .get(format!("https://localhost:{}{path}", https.port()))
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    assert_eq!(up.count(), 2);
    // SIGTERM and wait for the exit: everything the process wrote has been read.
    let pid = running.pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = running.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(running.stdout(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_while_admin_answers_and_1_otherwise() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &up.server(),
        "https = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"",
        "",
    );
    let mut running = start(dir.path(), Some("info")).await;
    let serving = running
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let admin = logged_addr(&serving, "admin");
    let healthcheck = |args: &[String]| {
        let mut cmd = rampart(dir.path());
        cmd.arg("healthcheck").args(args);
        run_to_end(cmd)
    };

    let ok = healthcheck(&["--url".into(), format!("http://{admin}/healthz")]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stderr), "");

    let not_200 = healthcheck(&["--url".into(), format!("http://{admin}/nope")]);
    assert_eq!(not_200.status.code(), Some(1));
    assert_eq!(
        text(&not_200.stderr),
        format!("rampart healthcheck: http://{admin}/nope answered 404 Not Found\n")
    );

    let dead = dead_addr().await;
    let refused = healthcheck(&["--url".into(), format!("http://{dead}/healthz")]);
    assert_eq!(refused.status.code(), Some(1));
    let reason = text(&refused.stderr);
    assert!(
        reason.starts_with(&format!(
            "rampart healthcheck: http://{dead}/healthz: cannot connect:"
        )) && reason.lines().count() == 1,
        "{reason:?}"
    );

    let https_only = healthcheck(&["--url".into(), format!("https://{admin}/healthz")]);
    assert_eq!(https_only.status.code(), Some(1));
}

#[test]
fn log_level_must_be_a_level_or_a_filter() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.crt");
    let key = dir.path().join("c.key");
    rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let config = |level: &str| {
        format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [log]\nlevel = {level:?}\n[[routes]]\nrespond = {{ status = 204 }}\n"
        )
    };
    for good in [
        "info",
        "WARN",
        "off",
        "warn,rampart=debug",
        "rampart::proxy=trace",
    ] {
        let snapshot = rampart::config::load_str(&config(good), "t.toml")
            .unwrap_or_else(|e| panic!("{good:?} refused: {e}"));
        assert_eq!(snapshot.log.level, good);
    }
    for bad in ["verbose", "inf", ""] {
        let errors = rampart::config::load_str(&config(bad), "t.toml")
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"))
            .to_string();
        assert!(errors.contains("log.level"), "{bad:?}: {errors}");
    }
}

/// A head hyper refuses before the pipeline runs still gets one line (method, host and path
/// `-`, route `-`) and a count in `rampart_requests_total`; a path with dot segments is logged
/// as the normalized path the route matched and the upstream received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_heads_and_normalized_paths_are_logged() {
    use tokio::io::AsyncWriteExt;
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (https, admin) = (free_addr().await, free_addr().await);
    let config = write_config(
        dir.path(),
        &up.server(),
        &format!("https = \"{https}\"\nadmin = \"{admin}\""),
        "level = \"warn\"",
    );
    let running = start(dir.path(), None).await;
    wait_healthy(dir.path(), &config).await;

    let mut tls = tls_connect(https, Some("localhost"), &[b"http/1.1"], None)
        .await
        .unwrap();
    tls.write_all(b"GET /api/x HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n")
        .await
        .unwrap();
    let refused = one_response(&read_until_close(&mut tls, Duration::from_secs(3)).await);
    assert_eq!(refused.status, 400);
    let refused_id = refused.header("x-request-id").unwrap().to_string();

    // Sent raw: reqwest would resolve the dot segments itself.
    let mut tls = tls_connect(https, Some("localhost"), &[b"http/1.1"], None)
        .await
        .unwrap();
    tls.write_all(
        b"GET /api/a/./b/../c HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: normalized-path\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let normalized = one_response(&read_until_close(&mut tls, Duration::from_secs(3)).await);
    assert_eq!(normalized.status, 200);
    assert_eq!(up.last().uri, "/api/a/c");

    let lines = access_lines(&running, 2).await;
    let entries = parse_lines(&lines);
    let line = by_request_id(&entries, &refused_id);
    assert_eq!(line["status"], 400, "{line:?}");
    assert_eq!(line["route"], "-");
    assert_eq!(line["method"], "-");
    assert_eq!(line["path"], "-");
    let normalized = by_request_id(&entries, "normalized-path");
    assert_eq!(normalized["path"], "/api/a/c");

    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rampart_requests_total{method=\"OTHER\",route=\"-\",status=\"400\"} 1"),
        "{metrics}"
    );
}
