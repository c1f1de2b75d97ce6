//! CSP nonces and violation reports (DESIGN §5b): `{nonce}` filled per response and passed
//! upstream as `X-CSP-Nonce`; `csp_reports = true` and the report endpoint, with reqwest over
//! HTTP/1.1 and HTTP/2, with the real binary's log line, and with headless Chromium.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::*;

const POLICY: &str =
    "script-src 'nonce-{nonce}' 'strict-dynamic'; object-src 'none'; base-uri 'none'";

fn nonce_in(csp: &str) -> String {
    let start = csp.find("'nonce-").expect("a nonce source") + "'nonce-".len();
    let end = start + csp[start..].find('\'').expect("closing quote");
    csp[start..end].to_string()
}

#[tokio::test]
async fn every_response_gets_a_fresh_nonce_and_the_upstream_the_same_one() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .config(&format!(
            "[headers]\ncontent_security_policy = {POLICY:?}\n\
             content_security_policy_report_only = \"style-src 'nonce-{{nonce}}'\"\n\
             {}\n\
             [[routes]]\nname = \"plain\"\npath = \"/plain/\"\nupstream = \"app\"\n\
             headers = {{ content_security_policy = \"default-src 'self'\", content_security_policy_report_only = \"\" }}\n\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            upstream_toml("app", &[up.server()], "")
        ))
        .start()
        .await;

    let mut nonces = std::collections::HashSet::new();
    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        for _ in 0..3 {
            let resp = client
                .get(proxy.url("/page"))
                .header("x-csp-nonce", "attacker-chosen")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{label}");
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_string();
            let report_only = resp.headers()["content-security-policy-report-only"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(!csp.contains("{nonce}"), "{csp}");
            let nonce = nonce_in(&csp);
            assert_eq!(
                csp,
                POLICY.replace("{nonce}", &nonce),
                "{label}: the rest of the policy as written"
            );
            assert_eq!(report_only, format!("style-src 'nonce-{nonce}'"), "{label}");
            // At least 128 random bits, base64.
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(nonce.trim_end_matches('='))
                .unwrap_or_else(|e| panic!("{nonce} is not base64: {e}"));
            assert!(bytes.len() >= 16, "{nonce}");
            // The upstream got this response's nonce, never the client's.
            assert_eq!(
                up.last().header_all("x-csp-nonce"),
                vec![nonce.clone()],
                "{label}"
            );
            assert!(nonces.insert(nonce), "{label}: a nonce was used twice");
        }
    }

    // A route whose policy has no placeholder: no nonce upstream (the client's removed too).
    let resp = proxy
        .client_h1()
        .get(proxy.url("/plain/x"))
        .header("x-csp-nonce", "attacker-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-security-policy"],
        "default-src 'self'"
    );
    assert!(resp
        .headers()
        .get("content-security-policy-report-only")
        .is_none());
    assert_eq!(up.last().header("x-csp-nonce"), None);

    // The proxy's own answers (a 400 before any route) carry a filled policy too.
    let resp = one_response(
        &proxy
            .raw_h1(b"GET / HTTP/1.1\r\nHost: not a host\r\nConnection: close\r\n\r\n")
            .await,
    );
    assert_eq!(resp.status, 400);
    let csp = resp.header("content-security-policy").unwrap();
    assert!(!csp.contains("{nonce}") && csp.contains("'nonce-"), "{csp}");
}

fn report_config(up_server: &str) -> String {
    format!(
        "[headers]\ncontent_security_policy = {POLICY:?}\n\
         content_security_policy_report_only = \"img-src 'self'\"\ncsp_reports = true\n\
         {}\n\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\n\
         [[routes]]\nname = \"site\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up_server.to_string()], "")
    )
}

fn violations(proxy: &TestProxy, route: &str, directive: &str) -> u64 {
    proxy
        .handle()
        .metrics()
        .csp_violations
        .with_label_values(&[route, directive])
        .get()
}

const LEGACY_REPORT: &str = r#"{"csp-report":{"document-uri":"https://localhost/admin/users?token=secret","referrer":"","violated-directive":"script-src-elem","effective-directive":"script-src-elem","original-policy":"script-src 'nonce-x'","disposition":"enforce","blocked-uri":"https://evil.example:8443/x.js?q=1","status-code":200}}"#;

#[tokio::test]
async fn reports_are_counted_by_route_and_directive_and_never_forwarded() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .config(&report_config(&up.server()))
        .start()
        .await;

    // The policies point at the endpoint, which the Reporting-Endpoints header names.
    let resp = proxy.client_h1().get(proxy.url("/")).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.ends_with("; report-uri /.well-known/rampart/csp-report; report-to rampart-csp"),
        "{csp}"
    );
    assert!(csp.contains("'nonce-") && !csp.contains("{nonce}"), "{csp}");
    assert_eq!(
        resp.headers()["content-security-policy-report-only"],
        "img-src 'self'; report-uri /.well-known/rampart/csp-report; report-to rampart-csp"
    );
    assert_eq!(
        resp.headers()["reporting-endpoints"],
        "rampart-csp=\"/.well-known/rampart/csp-report\""
    );
    let forwarded = up.count();

    let url = proxy.url("/.well-known/rampart/csp-report");
    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        // CSP2's report-uri format, for a page of the admin route.
        let resp = client
            .post(&url)
            .header("content-type", "application/csp-report")
            .body(LEGACY_REPORT)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{label}");
        // The Reporting API's format: two violations and a report of another type.
        let body = r#"[
            {"type":"csp-violation","age":10,"url":"https://localhost/","user_agent":"x","body":{"documentURL":"https://localhost/","effectiveDirective":"img-src","blockedURL":"https://cdn.example/a.png","disposition":"report","statusCode":200}},
            {"type":"csp-violation","age":10,"url":"https://localhost/","user_agent":"x","body":{"documentURL":"https://localhost/","effectiveDirective":"made-up-directive","blockedURL":"inline","disposition":"enforce"}},
            {"type":"deprecation","age":10,"url":"https://localhost/","body":{"id":"x"}}
        ]"#;
        let resp = client
            .post(&url)
            .header("content-type", "application/reports+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{label}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY", "{label}");
        assert!(
            resp.headers().contains_key("content-security-policy"),
            "{label}"
        );

        // Refused: another method, another type, not a report, too big.
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 405, "{label}");
        assert_eq!(resp.headers()["allow"], "POST");
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(LEGACY_REPORT)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{label}");
        let resp = client
            .post(&url)
            .header("content-type", "application/csp-report")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{label}");
    }
    // Too big: refused on its declared length, before a byte of it is read.
    let resp = one_response(
        &proxy
            .raw_h1(
                b"POST /.well-known/rampart/csp-report HTTP/1.1\r\nHost: localhost\r\n\
                  Content-Type: application/reports+json\r\nContent-Length: 100000\r\n\r\n[",
            )
            .await,
    );
    assert_eq!(resp.status, 413);
    assert_eq!(violations(&proxy, "admin", "script-src-elem"), 2);
    assert_eq!(violations(&proxy, "site", "img-src"), 2);
    assert_eq!(violations(&proxy, "site", "other"), 2);
    assert_eq!(up.count(), forwarded, "no report reached the upstream");

    // A flood of reports: past the burst, 429 without reading them.
    // (300 at once over one HTTP/2 connection: far more than 100 plus 50 a second however
    // slowly the machine serves them.)
    let client = proxy.client_h2();
    // The connection first, so that the flood shares it rather than opening 300.
    let resp = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut flood = Vec::new();
    for _ in 0..300 {
        let request = client
            .post(&url)
            .header("content-type", "application/csp-report")
            .body(LEGACY_REPORT)
            .send();
        flood.push(tokio::spawn(request));
    }
    let mut statuses = Vec::new();
    for request in flood {
        statuses.push(request.await.unwrap().unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        up.count(),
        forwarded + 1,
        "only the first GET was forwarded"
    );
}

#[tokio::test]
async fn without_csp_reports_the_path_is_an_ordinary_one() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let resp = proxy
        .client_h1()
        .post(proxy.url("/.well-known/rampart/csp-report"))
        .header("content-type", "application/csp-report")
        .body(LEGACY_REPORT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().path, "/.well-known/rampart/csp-report");
    assert!(resp.headers().get("reporting-endpoints").is_none());
}

/// The real binary writes one JSON line per violation on stdout, beside the access log: the
/// document without its query, the directive, the blocked origin without path or query.
#[tokio::test]
async fn the_binary_logs_one_json_line_per_violation() {
    use common::binary::{rampart, Running};
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let https = free_addr().await;
    std::fs::write(
        dir.path().join("rampart.toml"),
        format!(
            "[listen]\nhttps = \"{https}\"\n\
             [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n{}",
            report_config(&up.server())
        ),
    )
    .unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "-c", "rampart.toml", "--no-watch"]);
    let mut running = Running::spawn(cmd);
    running
        .wait_for_line("rampart is serving", Duration::from_secs(30))
        .await;
    let pem = std::fs::read(dir.path().join("certs/dev.crt")).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", https)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let resp = client
        .post(format!(
            "https://localhost:{}/.well-known/rampart/csp-report",
            https.port()
        ))
        .header("content-type", "application/csp-report")
        .body(LEGACY_REPORT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let line = loop {
        if let Some(line) = running
            .stdout()
            .into_iter()
            .find(|l| l.contains("csp_violation"))
        {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no violation line: {:?}",
            running.stdout()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let value: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    assert_eq!(value["event"], "csp_violation");
    assert_eq!(value["route"], "admin");
    assert_eq!(value["document"], "https://localhost/admin/users");
    assert_eq!(value["directive"], "script-src-elem");
    assert_eq!(value["blocked"], "https://evil.example:8443");
    assert_eq!(value["disposition"], "enforce");
    assert!(!line.contains("secret") && !line.contains("x.js"), "{line}");
    assert_eq!(
        running
            .stdout()
            .iter()
            .filter(|l| l.contains("csp_violation"))
            .count(),
        1
    );
}

/// The page the browser test's upstream serves: the request's `X-CSP-Nonce` on the first
/// inline script, none on the second.
async fn nonce_page_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let nonce = request
                            .headers()
                            .get("x-csp-nonce")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let page = format!(
                        "<!doctype html><html><head><title>nonce test</title></head><body>\n\
                         <p id=\"with\">waiting</p><p id=\"without\">waiting</p>\n\
                         <script nonce=\"{nonce}\">document.getElementById('with').textContent = 'NONCED-SCRIPT-RAN';</script>\n\
                         <script>document.getElementById('without').textContent = 'INJECTED-SCRIPT-RAN';</script>\n\
                         </body></html>\n"
                    );
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .body(Full::new(Bytes::from(page)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// Headless Chromium (Debian's `chromium`) loads a page through rampart: the script carrying
/// the nonce runs, the one without is blocked, and Chromium's own violation report reaches
/// the endpoint and is counted.
#[tokio::test]
async fn chromium_runs_the_nonced_script_blocks_the_other_and_reports_it() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .unwrap_or_else(|| panic!("chromium is not installed (.ci/run installs it)"));
    let (upstream, _task) = nonce_page_upstream().await;
    let proxy = TestProxy::builder()
        .config(&report_config(&format!("http://{upstream}")))
        .start()
        .await;
    let profile = tempfile::tempdir().unwrap();
    let url = proxy.url("/page");
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--ignore-certificate-errors",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // `localhost` resolves to the proxy's own listener without DNS.
        .arg(format!(
            "--host-resolver-rules=MAP localhost:{} 127.0.0.1:{}",
            proxy.https.port(),
            proxy.https.port()
        ))
        .arg(&url)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    // Chromium's sandbox needs user namespaces, which a root container does not have.
    if std::env::var("USER").as_deref() == Ok("root")
        || std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
    {
        command.arg("--no-sandbox");
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finished within 120 s")
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    // (The scripts' own text is in the DOM too: what they wrote is read from the <p>s.)
    assert!(
        dom.contains("<p id=\"with\">NONCED-SCRIPT-RAN</p>"),
        "the script with the nonce did not run; DOM:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dom.contains("<p id=\"without\">waiting</p>"),
        "the script without the nonce ran; DOM:\n{dom}"
    );

    // The report: Chromium sends it as the page runs; poll the counter (a loaded machine may
    // be slow to deliver it).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while violations(&proxy, "site", "script-src-elem") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no violation report from Chromium reached the endpoint; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(violations(&proxy, "site", "script-src-elem"), 1);
}
