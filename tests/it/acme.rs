//! ACME (DESIGN §5b): what is tested without a CA. `rampart check`-style validation of
//! `[acme]`, and the start-up behaviour while the CA cannot be reached: the other hosts are
//! served, `/readyz` names the waiting host, and the HTTP-01 path of an unknown token is
//! redirected like any other path. Tests against pebble are not written yet (see README).

use std::time::Duration;

fn errors_of(text: &str) -> String {
    match rampart::config::load_str(text, "acme.toml") {
        Ok(_) => String::new(),
        Err(errors) => errors.to_string(),
    }
}

fn base(dir: &std::path::Path, acme: &str, hosts: &str) -> String {
    let cert = dir.join("dev.crt");
    let key = dir.join("dev.key");
    if !cert.exists() {
        rampart::certgen::write_self_signed(&["static.test".to_string()], &cert, &key).unwrap();
    }
    format!(
        r#"[listen]
https = "127.0.0.1:0"
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[tls]
cert = "{cert}"
key = "{key}"

[[tls.certificates]]
hosts = [{hosts}]
acme = true

{acme}

[upstreams.app]
servers = ["http://127.0.0.1:9"]

[[routes]]
path = "/"
respond = {{ status = 200, body = "hello" }}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

#[test]
fn acme_config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    let good_acme = format!(
        "[acme]\ndirectory = \"https://ca.test/dir\"\nstorage = \"{}\"\n",
        storage.display()
    );
    let good = base(dir.path(), &good_acme, "\"app.example.org\"");
    assert_eq!(errors_of(&good), "", "a good [acme] config loads");

    // A plain-http directory.
    let text = good.replace("https://ca.test/dir", "http://ca.test/dir");
    let errors = errors_of(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("directory"))
        .unwrap()
        + 1;
    assert!(
        errors.contains(&format!("acme.toml:{line}:")) && errors.contains("acme.directory"),
        "{errors}"
    );

    // A wildcard needs DNS-01, which is not built.
    let errors = errors_of(&base(dir.path(), &good_acme, "\"*.example.org\""));
    assert!(
        errors.contains("tls.certificates[0].hosts") && errors.contains("DNS-01"),
        "{errors}"
    );

    // An IP address cannot be proven.
    let errors = errors_of(&base(dir.path(), &good_acme, "\"192.0.2.1\""));
    assert!(errors.contains("IP address"), "{errors}");

    // Storage whose parent does not exist.
    let text = good.replace(&storage.display().to_string(), "/nonexistent/deeper/acme");
    let errors = errors_of(&text);
    assert!(errors.contains("acme.storage"), "{errors}");

    // Redis storage without a Redis URL.
    let text = good.replace(&format!("\"{}\"", storage.display()), "\"redis\"");
    let errors = errors_of(&text);
    assert!(
        errors.contains("acme.storage") && errors.contains("redis_url"),
        "{errors}"
    );

    // acme = true without [acme].
    let errors = errors_of(&base(dir.path(), "", "\"app.example.org\""));
    assert!(errors.contains("[acme]"), "{errors}");
}

#[tokio::test]
async fn ca_down_at_start_other_hosts_served_and_readyz_names_the_waiting_host() {
    let dir = tempfile::tempdir().unwrap();
    // A port with nothing listening: the CA is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let acme = format!(
        "[acme]\ndirectory = \"https://127.0.0.1:{port}/dir\"\nstorage = \"{}\"\nretry_min = \"1s\"\nretry_max = \"2s\"\n",
        dir.path().join("acme").display()
    );
    let snapshot =
        rampart::config::load_str(&base(dir.path(), &acme, "\"app.example.org\""), "acme.toml")
            .unwrap();
    let server = rampart::Server::start(snapshot).await.unwrap();
    let admin = server.admin_addr().unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("static.test", server.https_addr())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let ready = client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("app.example.org"), "{body}");

    // The static certificate's host is served meanwhile.
    let port = server.https_addr().port();
    let answer = client
        .get(format!("https://static.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // An HTTP-01 path that no pending order has is redirected like everything else.
    let http = server.http_addr().unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = plain
        .get(format!(
            "http://{http}/.well-known/acme-challenge/unknownToken"
        ))
        .header("host", "app.example.org")
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_redirection(), "{}", answer.status());

    // The failed attempts are counted and remembered in storage (back-off survives restarts).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let failed = server
            .metrics()
            .acme_orders
            .with_label_values(&["failed"])
            .get();
        let state = dir.path().join("acme/certs/app.example.org/state.json");
        if failed >= 1 && state.exists() {
            let text = std::fs::read_to_string(state).unwrap();
            assert!(text.contains("\"failures\""), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still serving after the failures.
    let answer = client
        .get(format!("https://static.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    server.shutdown().await;
}

/// A child process killed when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts rampart with one ACME certificate (`challenge`) and pebble validating against its
/// listeners; waits for the certificate, checks it verifies to pebble's root, then starts a
/// second rampart on the same storage (a restart) and checks it serves without a new order.
async fn pebble_issues_and_a_restart_reuses(challenge: &str) {
    if std::process::Command::new("pebble")
        .arg("-h")
        .output()
        .is_err()
    {
        panic!("pebble is not installed (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let (pebble_port, management, dns) = (free_port(), free_port(), free_port());
    let tls_cert = dir.path().join("pebble.crt");
    let tls_key = dir.path().join("pebble.key");
    rampart::certgen::write_self_signed(&["localhost".to_string()], &tls_cert, &tls_key).unwrap();
    let acme = format!(
        "[acme]\ndirectory = \"https://localhost:{pebble_port}/dir\"\nstorage = \"{}\"\nca_certificates = \"{}\"\nretry_min = \"1s\"\nretry_max = \"2s\"\nchallenge = \"{challenge}\"\n",
        dir.path().join("acme").display(),
        tls_cert.display()
    );
    let snapshot =
        rampart::config::load_str(&base(dir.path(), &acme, "\"app.example.org\""), "acme.toml")
            .unwrap();
    let server = rampart::Server::start(snapshot).await.unwrap();

    // The test DNS: every name is 127.0.0.1 (no AAAA).
    let _dns = Child(
        std::process::Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv6",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{pebble_port}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": tls_cert,
        "privateKey": tls_key,
        "httpPort": server.http_addr().unwrap().port(),
        "tlsPort": server.https_addr().port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let _pebble = Child(
        std::process::Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );

    assert!(
        ready_within(&server, Duration::from_secs(180)).await,
        "no certificate from pebble; orders failed: {}",
        orders(&server, "failed")
    );
    assert!(orders(&server, "valid") >= 1);

    // Pebble's root, from its management endpoint; the served chain must verify to it.
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let root = insecure
        .get(format!("https://localhost:{management}/roots/0"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(verified_status(&root, &server).await, 200);
    assert!(dir
        .path()
        .join("acme/certs/app.example.org/chain.pem")
        .exists());
    server.shutdown().await;

    // A restart: the stored certificate is served at once, and no order is placed.
    let snapshot =
        rampart::config::load_str(&base(dir.path(), &acme, "\"app.example.org\""), "acme.toml")
            .unwrap();
    let again = rampart::Server::start(snapshot).await.unwrap();
    assert!(
        ready_within(&again, Duration::from_secs(30)).await,
        "stored certificate not used"
    );
    assert_eq!(verified_status(&root, &again).await, 200);
    // Counted by the restarted process (pebble's own order count is not read).
    let placed = orders(&again, "valid") + orders(&again, "failed");
    assert_eq!(placed, 0, "a restart placed an order");
    again.shutdown().await;
}

/// Orders of this process with `result`.
fn orders(server: &rampart::ServerHandle, result: &str) -> u64 {
    server
        .metrics()
        .acme_orders
        .with_label_values(&[result])
        .get()
}

/// Whether `/readyz` answers 200 (every certificate present) within `limit`.
async fn ready_within(server: &rampart::ServerHandle, limit: Duration) -> bool {
    let admin = server.admin_addr().unwrap();
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://{admin}/readyz")).send().await {
            if r.status() == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The status of `GET https://app.example.org/` from a client that trusts only `root`.
async fn verified_status(root: &[u8], server: &rampart::ServerHandle) -> u16 {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).unwrap())
        .resolve("app.example.org", server.https_addr())
        .build()
        .unwrap();
    let port = server.https_addr().port();
    let response = client
        .get(format!("https://app.example.org:{port}/"))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn http01_certificate_from_pebble_verifies_to_its_root_and_survives_a_restart() {
    pebble_issues_and_a_restart_reuses("http-01").await;
}

#[tokio::test]
async fn tls_alpn01_certificate_from_pebble_verifies_to_its_root_and_survives_a_restart() {
    pebble_issues_and_a_restart_reuses("tls-alpn-01").await;
}

/// The Django compose example's variant without certbot: its rampart.acme.toml passes `rampart
/// check` (storage pointed at a temporary directory; the app's static roots exist only in the
/// containers, hence `--skip-missing-paths`).
#[test]
fn the_compose_example_without_certbot_passes_check() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/compose/django/rampart.acme.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    assert!(text.contains("\"/var/lib/rampart/acme\""));
    let text = text.replace("/var/lib/rampart/acme", &storage.display().to_string());
    std::fs::write(dir.path().join("rampart.toml"), text).unwrap();
    let out = super::common::binary::rampart(dir.path())
        .args(["check", "--skip-missing-paths", "-c", "rampart.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
