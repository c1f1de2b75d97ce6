//! The real binary's life: SIGTERM and SIGINT finish in-flight requests (HTTP/1.1 and HTTP/2)
//! and exit 0, SIGHUP reloads, and `rampart proxy --to` serves without a config file.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;

fn config(server: &str, version: &str) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [upstreams.app]\nservers = [{server:?}]\n\n\
         [[routes]]\nname = \"version\"\npath = \"/version\"\n\
         respond = {{ status = 200, body = {version:?} }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n"
    )
}

/// Starts `rampart ARGS…` in `dir` and waits for it to serve.
async fn start(dir: &Path, args: &[&str]) -> (Running, SocketAddr) {
    let mut cmd = rampart(dir);
    cmd.args(args);
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    (proc, logged_addr(&serving, "https"))
}

/// A client trusting the development certificate the binary wrote into `dir`.
fn client(dir: &Path, https: SocketAddr, h2: bool) -> reqwest::Client {
    let pem = std::fs::read(dir.join("certs/dev.crt")).unwrap();
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", https);
    if h2 { builder } else { builder.http1_only() }
        .build()
        .unwrap()
}

fn signal(proc: &Running, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(proc.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

async fn in_flight_requests_finish_on(signal_name: &str) {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cfg.toml"), config(&up.server(), "v0")).unwrap();
    let (mut proc, https) = start(dir.path(), &["run", "-c", "cfg.toml"]).await;
    let url = format!("https://localhost:{}/slow/1500", https.port());

    // Four HTTP/1.1 connections and four streams of one HTTP/2 connection, all in flight.
    let h2 = client(dir.path(), https, true);
    let mut requests = Vec::new();
    for i in 0..8 {
        let client = if i < 4 {
            client(dir.path(), https, false)
        } else {
            h2.clone()
        };
        let url = url.clone();
        requests.push(tokio::spawn(async move {
            let resp = client.get(url).send().await?;
            let status = resp.status();
            let version = resp.version();
            Ok::<_, reqwest::Error>((status, version, resp.text().await?))
        }));
    }
    assert!(
        up.wait_for(Duration::from_secs(10), |r| r.len() == 8).await,
        "8 requests reach the upstream"
    );

    signal(&proc, signal_name);
    // The listener closes: new connections are refused (give the signal a moment to land).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::net::TcpStream::connect(https).await {
            Err(_) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(_) => panic!("still accepting connections 3 s after {signal_name}"),
        }
    }
    // The HTTP/2 connection got GOAWAY: a new stream on it is not served.
    let late = h2
        .get(format!("https://localhost:{}/late", https.port()))
        .send()
        .await;
    assert!(
        late.is_err(),
        "a request after {signal_name} was served: {late:?}"
    );

    for request in requests {
        let (status, version, body) = request
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("an in-flight request failed on {signal_name}: {e:?}"));
        assert_eq!(status, 200);
        assert_eq!(body, "slow\n");
        assert!(version == reqwest::Version::HTTP_11 || version == reqwest::Version::HTTP_2);
    }
    assert_eq!(
        up.count(),
        8,
        "nothing after the signal reached the upstream"
    );
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("still running after {signal_name}"));
    assert_eq!(status.code(), Some(0), "{}", proc.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    in_flight_requests_finish_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_finishes_in_flight_requests_and_exits_0() {
    in_flight_requests_finish_on("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_edit_keeps_the_running_config() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(&cfg, config(&up.server(), "v0")).unwrap();
    // --no-watch: only the signal can cause the reload seen below.
    let (mut proc, https) = start(dir.path(), &["run", "-c", "cfg.toml", "--no-watch"]).await;
    let client = client(dir.path(), https, false);
    let version = || async {
        let url = format!("https://localhost:{}/version", https.port());
        client.get(url).send().await.unwrap().text().await.unwrap()
    };
    assert_eq!(version().await, "v0");

    std::fs::write(&cfg, config(&up.server(), "v1")).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        version().await,
        "v0",
        "--no-watch does not reload by itself"
    );
    signal(&proc, "HUP");
    proc.wait_for_line("config reloaded", Duration::from_secs(5))
        .await;
    assert_eq!(version().await, "v1");

    // An invalid edit: refused with file, line and key; v1 keeps serving.
    let bad =
        config(&up.server(), "v2").replace("[listen]", "[listen]\nhttp_redirect_status = 302");
    std::fs::write(&cfg, &bad).unwrap();
    signal(&proc, "HUP");
    let error = proc
        .wait_for_line("listen.http_redirect_status", Duration::from_secs(5))
        .await;
    assert!(
        error.contains("cfg.toml:2:"),
        "the error names file and line: {error}"
    );
    proc.wait_for_line("config reload refused", Duration::from_secs(5))
        .await;
    assert_eq!(version().await, "v1");
    assert!(
        proc.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still running"
    );

    // A new listen address cannot be applied by a reload: the rest is, and the log says so.
    let moved = config(&up.server(), "v3").replace("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(&cfg, &moved).unwrap();
    signal(&proc, "HUP");
    let warning = proc
        .wait_for_line("listen address changed", Duration::from_secs(5))
        .await;
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("listen.https"), "{warning}");
    assert!(warning.contains("restart"), "{warning}");
    assert_eq!(
        version().await,
        "v3",
        "served on the old address, new config"
    );

    // The next reload compares with what is bound, not with the last config: still reported.
    let changed = |proc: &Running| proc.stderr_text().matches("listen address changed").count();
    let moved_again = config(&up.server(), "v4").replace("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(&cfg, &moved_again).unwrap();
    signal(&proc, "HUP");
    assert!(
        eventually(Duration::from_secs(5), || changed(&proc) == 2).await,
        "the second reload did not report the unapplied address:\n{}",
        proc.stderr_text()
    );
    assert_eq!(version().await, "v4");
    // Back to the bound address: nothing to report.
    std::fs::write(&cfg, config(&up.server(), "v5")).unwrap();
    signal(&proc, "HUP");
    assert!(
        eventually(Duration::from_secs(5), || proc
            .stderr_text()
            .matches("config reloaded")
            .count()
            == 4)
        .await
    );
    assert_eq!(version().await, "v5");
    assert_eq!(changed(&proc), 2, "{}", proc.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_serves_one_upstream_with_strict_headers_and_writes_nothing() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, https) = start(
        dir.path(),
        &["proxy", "--to", &up.server(), "--https", "127.0.0.1:0"],
    )
    .await;
    assert!(
        proc.stderr_text().contains("SELF-SIGNED"),
        "a loud warning about the development certificate:\n{}",
        proc.stderr_text()
    );
    // The certificate lives in memory: trust whatever is presented, check the rest.
    let resp = get_any_cert(https, "/hello?x=1").await;
    assert_eq!(resp.status(), 200);
    assert_strict_headers(resp.headers(), "rampart proxy");
    assert_eq!(up.last().uri, "/hello?x=1");
    assert_eq!(
        up.last().header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(written.is_empty(), "proxy mode wrote files: {written:?}");

    signal(&proc, "TERM");
    let status = proc.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn proxy_mode_refuses_a_bad_upstream_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["proxy", "--to", "https://app:8000"]);
    let out = run_to_end(cmd);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("--to: "), "{stderr}");
    assert!(
        stderr.contains("TLS to upstreams is not supported"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_the_wait_for_a_slow_request() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&up.server(), "v0").replace(
        "https = \"127.0.0.1:0\"",
        "https = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"",
    );
    std::fs::write(dir.path().join("cfg.toml"), text).unwrap();
    let (mut proc, https) = start(dir.path(), &["run", "-c", "cfg.toml"]).await;
    let client = client(dir.path(), https, false);
    let slow = tokio::spawn(
        client
            .get(format!("https://localhost:{}/slow/20000", https.port()))
            .send(),
    );
    assert!(up.wait_for(Duration::from_secs(10), |r| r.len() == 1).await);
    let signalled = Instant::now();
    signal(&proc, "TERM");
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("rampart exits once the grace has passed");
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        waited >= Duration::from_millis(900),
        "it waited for the grace period: {waited:?}"
    );
    proc.wait_for_line("shutdown grace elapsed", Duration::from_secs(1))
        .await;
    assert!(slow.await.unwrap().is_err(), "the slow request was cut off");
}
