//! The operators' kit in `deploy/monitoring/` (issue 15): the Prometheus rules pass `promtool
//! check rules` and their unit tests (`promtool test rules`, a test for every alert), the
//! dashboard's queries are valid PromQL, and every metric name the rules and the dashboard use
//! exists in a real scrape of the binary after traffic that moves the counters: no dead panel,
//! no dead alert.
//!
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs it). Without it these
//! tests fail in CI (`CI=true`) and are skipped with a loud message elsewhere.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;

const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/monitoring");

fn rules_dir() -> PathBuf {
    Path::new(MONITORING).join("prometheus")
}

fn dashboard_path() -> PathBuf {
    Path::new(MONITORING).join("grafana/dashboards/rampart.json")
}

/// `promtool`, or `None` (after a loud message) outside CI when it is not installed.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("promtool is missing: CI must have it (.ci/run installs Debian's `prometheus`)");
    }
    eprintln!(
        "\n\n*** SKIPPED: promtool is not installed, so the Prometheus rules were NOT checked. \
         Install it (`apt-get install prometheus`, or run .ci/run). ***\n\n"
    );
    None
}

/// Runs promtool; panics with its output unless it succeeds.
fn run_promtool(promtool: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The alert names of the rules file (`- alert: Name`).
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_string())
        .collect()
}

/// Every `rampart_…` metric name in `text`, comment lines left out. Recording rules are
/// `rampart:…` and alerts `Rampart…`: neither matches.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("rampart_") {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            // `xrampart_…` is no metric name of ours.
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                names.insert(tail[..len].to_string());
            }
            rest = &tail[len..];
        }
    }
    names
}

/// The PromQL of every panel of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(dashboard_path()).expect("the dashboard JSON");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    let panels = json["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push(expr.to_string());
            }
        }
    }
    // Template variables query metrics too.
    for variable in json["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = variable["definition"].as_str() {
            queries.push(query.to_string());
        }
    }
    queries
}

#[test]
fn the_rules_pass_promtool_and_every_alert_has_a_unit_test() {
    let rules = std::fs::read_to_string(rules_dir().join("rampart-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(rules_dir().join("rampart-rules.test.yml")).unwrap();
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels:"
            )),
            "alert {alert} has no unit test that expects it to fire"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts: []")),
            "alert {alert} has no unit test that expects it silent"
        );
    }
    let Some(promtool) = promtool() else { return };
    let checked = run_promtool(
        promtool,
        &["check", "rules", "rampart-rules.yml"],
        &rules_dir(),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_promtool(
        promtool,
        &["test", "rules", "rampart-rules.test.yml"],
        &rules_dir(),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The shipped prometheus.yml, with its rules path pointed at this checkout.
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(rules_dir().join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/rampart-rules.yml",
            &rules_dir().join("rampart-rules.yml").display().to_string(),
        );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    run_promtool(promtool, &["check", "config", "prometheus.yml"], dir.path());
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    // Grafana's variables as a Prometheus would see them once substituted.
    let rules: String = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let q = q
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            let q = if let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
            {
                // label_values(metric{…}, label) is Grafana's, not PromQL: its selector is.
                inner
                    .rsplit_once(',')
                    .map_or(inner.to_string(), |(m, _)| m.to_string())
            } else {
                q
            };
            format!(
                "      - record: dashboard:query{i}\n        expr: {}\n",
                serde_json::to_string(&q).unwrap()
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dashboard-queries.yml"),
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let Some(promtool) = promtool() else { return };
    run_promtool(
        promtool,
        &["check", "rules", "dashboard-queries.yml"],
        dir.path(),
    );
}

/// One admin-listener sample's value (`name{labels}` as written in the scrape), 0 if absent.
fn sample(scrape: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(admin: std::net::SocketAddr) -> Option<String> {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_rules_and_the_dashboard_is_in_a_real_scrape() {
    let up = TestUpstream::start().await;
    let dead = format!("http://{}", dead_addr().await);
    let dead2 = format!("http://{}", dead_addr().await);
    let dir = tempfile::tempdir().unwrap();
    // A users file for basic_auth, hashed by the binary itself.
    let hashed = {
        use std::io::Write;
        let mut child = rampart(dir.path())
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    std::fs::write(dir.path().join("admin.users"), format!("ops:{hashed}\n")).unwrap();
    let (https, admin) = (free_addr().await, free_addr().await);
    let config = format!(
        "[listen]\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [headers]\ncsp_reports = true\n\n\
         [log]\naccess = false\n\n\
         [upstreams.app]\nservers = [\"{}\"]\n\n\
         [upstreams.gone]\nservers = [\"{dead}\", \"{dead2}\"]\nretries = 1\npassive_failures = 1\n\n\
         [[routes]]\nname = \"limited\"\npath = \"/limited\"\nrate_limit = {{ rate = \"1/h\", burst = 1 }}\nban = {{ after = 2 }}\n\
         respond = {{ status = 200, body = \"ok\" }}\n\n\
         [[routes]]\nname = \"gone\"\npath = \"/gone/\"\nupstream = \"gone\"\n\n\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\nbasic_auth = {{ realm = \"admin\", users = \"admin.users\" }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        up.server()
    );
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, &config).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "-c", "rampart.toml"]);
    let mut running = Running::spawn(cmd);
    running
        .wait_for_line("rampart is serving", Duration::from_secs(30))
        .await;

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .resolve("localhost", https)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = |p: &str| format!("https://localhost:{}{p}", https.port());
    let status = |p: &'static str| {
        let (client, url) = (client.clone(), url(p));
        async move { client.get(url).send().await.expect(p).status().as_u16() }
    };
    // 200 through the upstream (request and upstream histograms), 429, 502 then 503.
    assert_eq!(status("/").await, 200);
    assert_eq!(status("/limited").await, 200);
    assert_eq!(status("/limited").await, 429);
    assert_eq!(status("/gone/x").await, 502);
    assert_eq!(status("/gone/x").await, 503);
    // A refused login (basic_auth's 401) and a browser's CSP violation report.
    assert_eq!(status("/admin/").await, 401);
    let report = r#"{"csp-report":{"document-uri":"https://localhost/","violated-directive":"script-src-elem","effective-directive":"script-src-elem","blocked-uri":"https://evil.example/x.js","disposition":"enforce"}}"#;
    let reported = client
        .post(url("/.well-known/rampart/csp-report"))
        .header("content-type", "application/csp-report")
        .body(report)
        .send()
        .await
        .unwrap();
    assert!(reported.status().is_success(), "{}", reported.status());
    // A failed TLS handshake: bytes that are no ClientHello.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(https).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut sink)).await;
    }
    // A second 429 on `limited` bans the client (its route's `ban`): last, since every request
    // from this address is refused after it.
    assert_eq!(status("/limited").await, 429);
    // A refused reload, then the good config back.
    std::fs::write(&path, config.replace("burst = 1", "burst = 0")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(admin).await.unwrap_or_default();
        if sample(&text, "rampart_config_reloads_total{result=\"failure\"}") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bad config was not refused:\n{}",
            running.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let text = scrape(admin).await.expect("scrape");
    assert!(
        text.lines()
            .any(|l| l.starts_with("rampart_csp_violations_total{") && !l.ends_with(" 0")),
        "the CSP report was not counted:\n{text}"
    );
    // The counters the traffic moved.
    for (series, at_least) in [
        (
            "rampart_requests_total{method=\"GET\",route=\"app\",status=\"200\"}",
            1.0,
        ),
        ("rampart_rate_limited_total{route=\"limited\"}", 1.0),
        ("rampart_bans_total{route=\"limited\"}", 1.0),
        (
            "rampart_auth_requests_total{kind=\"basic\",outcome=\"denied\",route=\"admin\"}",
            1.0,
        ),
        (
            "rampart_upstream_errors_total{kind=\"connect\",upstream=\"gone\"}",
            1.0,
        ),
        (
            "rampart_upstream_errors_total{kind=\"no_healthy_server\",upstream=\"gone\"}",
            1.0,
        ),
        (
            "rampart_tls_handshake_failures_total{reason=\"error\"}",
            1.0,
        ),
        ("rampart_config_reloads_total{result=\"failure\"}", 1.0),
        (
            "rampart_upstream_duration_seconds_count{upstream=\"app\"}",
            1.0,
        ),
        ("rampart_request_duration_seconds_count{route=\"app\"}", 1.0),
    ] {
        assert!(
            sample(&text, series) >= at_least,
            "{series} did not move:\n{text}"
        );
    }
    // The dead server is ejected: its health gauge is 0.
    assert!(
        text.lines()
            .any(|l| l.starts_with("rampart_upstream_server_healthy{")
                && l.contains("upstream=\"gone\"")
                && l.ends_with(" 0")),
        "{text}"
    );

    // Every metric the rules and the dashboard name is in the scrape.
    let scraped: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let rules = std::fs::read_to_string(rules_dir().join("rampart-rules.yml")).unwrap();
    let mut used = metric_names(&rules);
    let from_rules = used.len();
    used.extend(metric_names(&dashboard_queries().join("\n")));
    assert!(from_rules >= 10, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !scraped.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "used by the rules or the dashboard but not in the scrape: {missing:?}\nscrape:\n{text}"
    );
    // And the other way round: every metric rampart exports is on the dashboard.
    let dashboard = metric_names(&dashboard_queries().join("\n"));
    let base = |name: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name)
            .to_string()
    };
    let shown: BTreeSet<String> = dashboard.iter().map(|m| base(m)).collect();
    let unshown: Vec<String> = scraped
        .iter()
        .filter(|m| m.starts_with("rampart_"))
        .map(|m| base(m))
        .filter(|m| !shown.contains(m))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        unshown.is_empty(),
        "exported but on no dashboard panel: {unshown:?}"
    );
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        "sum by (route) (rate(rampart_requests_total{x=\"1\"}[5m])) / rampart:ratio\n\
         # rampart_commented_out\n  - alert: RampartX\nhistogram_quantile(0.9, rampart_a_bucket)",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["rampart_a_bucket", "rampart_requests_total"]
    );
}

/// The compose examples' Prometheus and Grafana services mount files of this repository: each
/// host path exists, the FastAPI example's own prometheus.yml passes `promtool check config`,
/// and both datasources point at their Prometheus.
#[test]
fn the_compose_examples_wire_prometheus_and_grafana_to_the_shipped_files() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose");
    for example in ["django", "fastapi"] {
        let dir = examples.join(example);
        let compose = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
        for service in ["  prometheus:\n", "  grafana:\n"] {
            assert!(compose.contains(service), "{example}: no {service:?}");
        }
        let mounts: Vec<&str> = compose
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .filter(|m| m.starts_with("../../../deploy/") || m.starts_with("./prometheus"))
            .filter_map(|m| m.split(':').next())
            .collect();
        assert!(mounts.len() >= 4, "{example}: {mounts:?}");
        for mount in &mounts {
            assert!(
                dir.join(mount).exists(),
                "{example}: {mount} does not exist"
            );
        }
        assert!(
            compose.contains("PROMETHEUS_URL: http://"),
            "{example}: the datasource URL"
        );
    }
    let Some(promtool) = promtool() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(examples.join("fastapi/prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/rampart-rules.yml",
            &rules_dir().join("rampart-rules.yml").display().to_string(),
        );
    std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
    run_promtool(promtool, &["check", "config", "prometheus.yml"], tmp.path());
}
