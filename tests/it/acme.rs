//! ACME (DESIGN §5b). Without a CA: `rampart check`-style validation of `[acme]`, and the
//! start-up behaviour while the CA cannot be reached (the other hosts are served, `/readyz`
//! names the waiting host, the HTTP-01 path of an unknown token is redirected like any other
//! path). Against Debian's pebble (the CA) and pebble-challtestsrv (its DNS): issuing over
//! HTTP-01 and TLS-ALPN-01, a restart without a new order, the CA down then up, bad nonces and
//! a failed validation, renewal of a short-lived certificate under requests, and two replicas
//! sharing Redis storage.

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

fn pebble_installed() {
    if std::process::Command::new("pebble")
        .arg("-h")
        .output()
        .is_err()
    {
        panic!("pebble is not installed (.ci/run installs it)");
    }
}

/// What a test changes in pebble's behaviour.
#[derive(Default)]
struct PebbleOptions {
    /// Seconds a certificate is valid (pebble's default: 5 years).
    validity: Option<u64>,
    /// Percentage of nonces pebble rejects with `badNonce`.
    nonce_reject: Option<u8>,
    /// What every name resolves to at first (127.0.0.1 unless set).
    default_ipv4: Option<&'static str>,
}

/// Debian's pebble (the CA) and pebble-challtestsrv (its DNS: every name is `default_ipv4`,
/// no AAAA), on free ports; pebble's output goes to a file, where its orders are counted.
struct Pebble {
    management: u16,
    dns_management: u16,
    log: std::path::PathBuf,
    _pebble: Child,
    _dns: Child,
}

/// The `[acme]` section for a pebble on `port` (its TLS certificate made in `dir`), storage
/// in `dir/acme`, fast retries.
fn pebble_acme(dir: &std::path::Path, port: u16, challenge: &str) -> String {
    let tls_cert = dir.join("pebble.crt");
    let tls_key = dir.join("pebble.key");
    if !tls_cert.exists() {
        rampart::certgen::write_self_signed(&["localhost".to_string()], &tls_cert, &tls_key)
            .unwrap();
    }
    format!(
        "[acme]\ndirectory = \"https://localhost:{port}/dir\"\nstorage = \"{}\"\nca_certificates = \"{}\"\nretry_min = \"1s\"\nretry_max = \"2s\"\nchallenge = \"{challenge}\"\n",
        dir.join("acme").display(),
        tls_cert.display()
    )
}

impl Pebble {
    /// Starts pebble on `port` (after [`pebble_acme`] made its certificate in `dir`),
    /// validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
    fn start(
        dir: &std::path::Path,
        port: u16,
        http_port: u16,
        tls_port: u16,
        options: PebbleOptions,
    ) -> Pebble {
        pebble_installed();
        let (management, dns, dns_management) = (free_port(), free_port(), free_port());
        let dns_child = Child(
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
                    &format!("127.0.0.1:{dns_management}"),
                    "-defaultIPv4",
                    options.default_ipv4.unwrap_or("127.0.0.1"),
                    "-defaultIPv6",
                    "",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble.crt"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        });
        if let Some(seconds) = options.validity {
            pebble["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.join(format!("pebble-{port}.json"));
        std::fs::write(
            &config_path,
            serde_json::json!({ "pebble": pebble }).to_string(),
        )
        .unwrap();
        let log = dir.join(format!("pebble-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = std::process::Command::new("pebble");
        command
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(percent) = options.nonce_reject {
            command.env("PEBBLE_WFE_NONCEREJECT", percent.to_string());
        }
        Pebble {
            management,
            dns_management,
            log,
            _pebble: Child(command.spawn().unwrap()),
            _dns: dns_child,
        }
    }

    /// Orders pebble accepted ("Added order … to the db"; a `POST /order-plz` refused for a bad
    /// nonce and retried by instant-acme is one order, not two).
    fn orders_received(&self) -> usize {
        self.log_lines("Added order").len()
    }

    /// Pebble's log lines holding `text` (shown when an order count is wrong).
    fn log_lines(&self, text: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_string)
            .collect()
    }

    /// Pebble's root, from its management endpoint (retried while pebble starts).
    async fn root(&self) -> Vec<u8> {
        let insecure = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        for _ in 0..100 {
            if let Ok(response) = insecure
                .get(format!("https://localhost:{}/roots/0", self.management))
                .send()
                .await
            {
                if response.status() == 200 {
                    return response.bytes().await.unwrap().to_vec();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("pebble's management endpoint did not answer");
    }

    /// From now on every name resolves to `ip`.
    async fn resolve_everything_to(&self, ip: &str) {
        let response = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/set-default-ipv4",
                self.dns_management
            ))
            .body(serde_json::json!({ "ip": ip }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

fn load(dir: &std::path::Path, acme: &str) -> rampart::Snapshot {
    rampart::config::load_str(&base(dir, acme, "\"app.example.org\""), "acme.toml").unwrap()
}

/// rampart with one ACME certificate (`challenge`, storage in a fresh directory), then pebble
/// validating against its listeners: the directory, the `[acme]` text, the server, pebble.
async fn serve_with_pebble(
    challenge: &str,
    options: PebbleOptions,
) -> (tempfile::TempDir, String, rampart::ServerHandle, Pebble) {
    let dir = tempfile::tempdir().unwrap();
    let pebble_port = free_port();
    let acme = pebble_acme(dir.path(), pebble_port, challenge);
    let server = rampart::Server::start(load(dir.path(), &acme))
        .await
        .unwrap();
    let pebble = Pebble::start(
        dir.path(),
        pebble_port,
        server.http_addr().unwrap().port(),
        server.https_addr().port(),
        options,
    );
    (dir, acme, server, pebble)
}

/// Starts rampart with one ACME certificate (`challenge`) and pebble validating against its
/// listeners; waits for the certificate, checks it verifies to pebble's root, then starts a
/// second rampart on the same storage (a restart) and checks it serves without a new order.
async fn pebble_issues_and_a_restart_reuses(challenge: &str) {
    let (dir, acme, server, pebble) = serve_with_pebble(challenge, PebbleOptions::default()).await;

    assert_issued(&server, "from pebble").await;
    assert!(orders(&server, "valid") >= 1);
    let root = pebble.root().await;
    assert_eq!(verified_status(&root, &server).await, 200);
    assert!(dir
        .path()
        .join("acme/certs/app.example.org/chain.pem")
        .exists());
    server.shutdown().await;
    let received = pebble.orders_received();
    assert!(received >= 1, "pebble's log counts no order");

    // A restart: the stored certificate is served at once, and pebble receives no order.
    let again = rampart::Server::start(load(dir.path(), &acme))
        .await
        .unwrap();
    assert!(
        ready_within(&again, Duration::from_secs(30)).await,
        "stored certificate not used"
    );
    assert_eq!(verified_status(&root, &again).await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pebble.orders_received(),
        received,
        "a restart placed an order"
    );
    assert_eq!(orders(&again, "valid") + orders(&again, "failed"), 0);
    again.shutdown().await;
}

/// Waits until the stored back-off state's last error contains `text`.
async fn wait_for_failure(dir: &std::path::Path, server: &rampart::ServerHandle, text: &str) {
    let state = dir.join("acme/certs/app.example.org/state.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stored = std::fs::read_to_string(&state).unwrap_or_default();
        if orders(server, "failed") >= 1 && stored.contains(text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failure with {text:?} recorded; state: {stored}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The CA is down at start: rampart serves the other hosts, `/readyz` names the waiting host,
/// and once the CA is up the certificate is issued without a restart.
#[tokio::test]
async fn pebble_down_at_start_then_up_issues_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pebble_port = free_port();
    let acme = pebble_acme(dir.path(), pebble_port, "http-01");
    let server = rampart::Server::start(load(dir.path(), &acme))
        .await
        .unwrap();
    wait_for_failure(dir.path(), &server, "error").await;
    let admin = server.admin_addr().unwrap();
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("app.example.org"));

    let pebble = Pebble::start(
        dir.path(),
        pebble_port,
        server.http_addr().unwrap().port(),
        server.https_addr().port(),
        PebbleOptions::default(),
    );
    assert_issued(&server, "after the CA came up").await;
    assert_eq!(verified_status(&pebble.root().await, &server).await, 200);
    server.shutdown().await;
}

/// A CA that rejects 30% of nonces (pebble's `PEBBLE_WFE_NONCEREJECT`; instant-acme retries a
/// `badNonce` twice, an order whose retries run out fails and is tried again) and a validation
/// that fails (the name first resolves to 127.0.0.2, where nothing listens): both are
/// survived, and the certificate arrives once the name resolves to rampart.
#[tokio::test]
async fn bad_nonces_and_a_failed_validation_are_survived() {
    let (dir, _, server, pebble) = serve_with_pebble(
        "http-01",
        PebbleOptions {
            nonce_reject: Some(30),
            default_ipv4: Some("127.0.0.2"),
            ..PebbleOptions::default()
        },
    )
    .await;
    // Pebble's answer names the address it could not reach.
    wait_for_failure(dir.path(), &server, "127.0.0.2").await;
    assert_eq!(orders(&server, "valid"), 0);
    pebble.resolve_everything_to("127.0.0.1").await;
    assert_issued(&server, "after validation could succeed").await;
    assert_eq!(verified_status(&pebble.root().await, &server).await, 200);
    server.shutdown().await;
}

/// A certificate valid for 30 s is renewed when a third of its lifetime is left, while clients
/// keep sending requests: none fails (new connections and a keep-alive one), and new
/// handshakes get the new certificate.
#[tokio::test]
async fn a_short_lived_certificate_is_renewed_under_load() {
    let (_dir, _, server, pebble) = serve_with_pebble(
        "tls-alpn-01",
        PebbleOptions {
            validity: Some(30),
            ..PebbleOptions::default()
        },
    )
    .await;
    assert!(
        ready_within(&server, Duration::from_secs(180)).await,
        "no certificate from pebble"
    );
    let root = pebble.root().await;
    let client = |keep_alive: bool| {
        let builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .resolve("app.example.org", server.https_addr())
            .tls_info(true)
            .timeout(Duration::from_secs(10));
        let builder = if keep_alive {
            builder
        } else {
            builder.pool_max_idle_per_host(0)
        };
        builder.build().unwrap()
    };
    let url = format!("https://app.example.org:{}/", server.https_addr().port());
    let leaf = |response: &reqwest::Response| {
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(<[u8]>::to_vec)
            .unwrap()
    };
    let kept = client(true);
    let first = kept.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first_leaf = leaf(&first);
    first.text().await.unwrap();

    // A new client per request (a fresh handshake: a resumed TLS session shows the
    // certificate of the session it resumes), and a keep-alive client sending throughout,
    // until the new certificate has been seen a few times.
    let (mut requests, mut renewed_seen) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while renewed_seen < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no renewed certificate served after {requests} requests; orders: {} valid, {} failed",
            orders(&server, "valid"),
            orders(&server, "failed")
        );
        let response = client(false)
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("request {requests} failed: {err}"));
        assert_eq!(response.status(), 200, "request {requests}");
        if leaf(&response) != first_leaf {
            renewed_seen += 1;
        }
        response.text().await.unwrap();
        let response = kept
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("keep-alive request {requests} failed: {err}"));
        assert_eq!(response.status(), 200, "keep-alive request {requests}");
        response.text().await.unwrap();
        requests += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(orders(&server, "valid") >= 2, "renewed without an order?");
    server.shutdown().await;
}

/// Two replicas on one real redis-server: one valid order (pebble counts no order that no
/// replica accounts for) and both serve the certificate. Pebble validates HTTP-01 against the second replica's port; which
/// replica takes the lock and orders is a race, so the test also places a token in Redis itself
/// (as a third replica would) and checks that both replicas answer it: any replica answers any
/// challenge, whoever ordered.
#[tokio::test]
async fn two_replicas_on_redis_place_one_order_and_both_serve() {
    let redis = crate::ratelimit_redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pebble_port = free_port();
    let storage = dir.path().join("acme").display().to_string();
    let acme = pebble_acme(dir.path(), pebble_port, "http-01")
        .replace(&format!("storage = \"{storage}\""), "storage = \"redis\"")
        + &format!("\n[rate_limit]\nredis_url = \"{}\"\n", redis.url());
    assert!(acme.contains("storage = \"redis\""));
    let second_http = free_port();
    let pebble = Pebble::start(
        dir.path(),
        pebble_port,
        second_http,
        1,
        PebbleOptions::default(),
    );
    pebble.root().await;
    // The replica pebble validates against listens before anyone can order: a validation that
    // found no listener would fail the first order and make a second one.
    let second_config = base(dir.path(), &acme, "\"app.example.org\"").replace(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:{second_http}\""),
    );
    let second =
        rampart::Server::start(rampart::config::load_str(&second_config, "acme.toml").unwrap())
            .await
            .unwrap();
    let first = rampart::Server::start(load(dir.path(), &acme))
        .await
        .unwrap();
    for server in [&first, &second] {
        assert!(
            ready_within(server, Duration::from_secs(180)).await,
            "a replica has no certificate; orders: {} and {} valid, {} and {} failed",
            orders(&first, "valid"),
            orders(&second, "valid"),
            orders(&first, "failed"),
            orders(&second, "failed")
        );
    }
    let root = pebble.root().await;
    assert_eq!(verified_status(&root, &first).await, 200);
    assert_eq!(verified_status(&root, &second).await, 200);
    // One certificate, one valid order. A failed attempt (seen once in a fresh-clone CI run on a
    // loaded machine, cause not captured) is retried after the back-off and would be a second
    // order at pebble: allowed only with its failure recorded, never two orders in parallel.
    let (first_valid, second_valid) = (orders(&first, "valid"), orders(&second, "valid"));
    let failed = orders(&first, "failed") + orders(&second, "failed");
    assert_eq!(first_valid + second_valid, 1);
    assert_eq!(
        pebble.orders_received() as u64,
        1 + failed,
        "pebble accepted orders that no replica accounts for: {:#?}",
        pebble.log_lines("order")
    );
    if failed > 0 {
        eprintln!(
            "retried after {failed} failed order(s): {:#?}",
            pebble.log_lines("order")
        );
    }
    eprintln!(
        "ordered by the {} replica",
        if first_valid == 1 { "first" } else { "second" }
    );
    assert!(
        !dir.path().join("acme").exists(),
        "the directory storage was used"
    );

    // A token another replica placed in Redis is answered by both.
    let reply = redis.command("SET rampart:acme:challenges/placed-elsewhere key-authorization.x");
    assert_eq!(reply, "+OK");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for server in [&first, &second] {
        let http = server.http_addr().unwrap();
        let answer = plain
            .get(format!(
                "http://{http}/.well-known/acme-challenge/placed-elsewhere"
            ))
            .header("host", "app.example.org")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "replica on {http}");
        assert_eq!(answer.text().await.unwrap(), "key-authorization.x");
    }
    first.shutdown().await;
    second.shutdown().await;
}

/// A back-off stored by an earlier process (a container in a crash loop) holds: with the CA up,
/// no order is placed before it ends, and the host keeps waiting.
#[tokio::test]
async fn a_stored_back_off_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pebble_port = free_port();
    let acme = pebble_acme(dir.path(), pebble_port, "http-01");
    let state_dir = dir.path().join("acme/certs/app.example.org");
    std::fs::create_dir_all(&state_dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        state_dir.join("state.json"),
        serde_json::json!({"failures": 5, "next_attempt": now + 3600, "last_error": "earlier"})
            .to_string(),
    )
    .unwrap();
    let server = rampart::Server::start(load(dir.path(), &acme))
        .await
        .unwrap();
    let pebble = Pebble::start(
        dir.path(),
        pebble_port,
        server.http_addr().unwrap().port(),
        server.https_addr().port(),
        PebbleOptions::default(),
    );
    pebble.root().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        pebble.orders_received(),
        0,
        "an order during the stored back-off"
    );
    assert!(!ready_within(&server, Duration::from_secs(1)).await);
    server.shutdown().await;
}

/// HTTP-01 is exempt from the jail: with 127.0.0.1 banned (one 404 is enough here), the
/// plain-http listener still lets pebble's validator, which connects from 127.0.0.1, reach its
/// token, and the certificate arrives; the same address gets 403 for anything else.
#[tokio::test]
async fn a_banned_address_still_reaches_its_http01_token() {
    let dir = tempfile::tempdir().unwrap();
    let pebble_port = free_port();
    let acme = pebble_acme(dir.path(), pebble_port, "http-01")
        + "\n[ban]\nstrikes = [404]\nafter = 1\nfor = \"1h\"\n\n[[routes]]\npath = \"/missing/\"\nrespond = { status = 404 }\n";
    let server = rampart::Server::start(load(dir.path(), &acme))
        .await
        .unwrap();
    let https = server.https_addr();
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("static.test", https)
        .build()
        .unwrap();
    let url = format!("https://static.test:{}/", https.port());
    let missing = format!("https://static.test:{}/missing/", https.port());
    assert_eq!(insecure.get(&missing).send().await.unwrap().status(), 404);
    let refused = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("static.test", https)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await;
    assert!(
        refused.is_err() || refused.is_ok_and(|r| r.status() == 403),
        "127.0.0.1 is not banned"
    );
    let http = server.http_addr().unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = plain.get(format!("http://{http}/")).send().await.unwrap();
    assert_eq!(answer.status(), 403, "a banned client got a redirect");

    let pebble = Pebble::start(
        dir.path(),
        pebble_port,
        http.port(),
        https.port(),
        PebbleOptions::default(),
    );
    assert_issued(&server, "while 127.0.0.1 is banned").await;
    assert_eq!(pebble.orders_received(), 1);
    server.shutdown().await;
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
/// A certificate within 180 s; otherwise a failure saying `when` and how many orders failed.
async fn assert_issued(server: &rampart::ServerHandle, when: &str) {
    assert!(
        ready_within(server, Duration::from_secs(180)).await,
        "no certificate {when}; orders failed: {}",
        orders(server, "failed")
    );
}

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
