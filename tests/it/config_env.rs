//! `${NAME}` and `${NAME:-default}` in config values (issue 15, DESIGN §5b), through the real
//! binary: an unset variable named with file, line and key; a default; a reload that reads the
//! file again and expands again; and a secret (a Redis password, used for real against a
//! `redis-server --requirepass`) that never appears in any output.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;

/// A config answering `/` itself, with `value` as the `X-Env` response header.
fn header_config(https: std::net::SocketAddr, admin: std::net::SocketAddr, value: &str) -> String {
    format!(
        "[listen]\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [headers]\nset = {{ \"X-Env\" = \"{value}\" }}\n\n\
         [[routes]]\nname = \"hello\"\npath = \"/\"\nrespond = {{ status = 200, body = \"hi\" }}\n"
    )
}

fn client(https: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .resolve("localhost", https)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn x_env(client: &reqwest::Client, https: std::net::SocketAddr) -> Option<String> {
    let resp = client
        .get(format!("https://localhost:{}/", https.port()))
        .send()
        .await
        .ok()?;
    Some(resp.headers().get("x-env")?.to_str().ok()?.to_string())
}

/// Polls the `X-Env` header until it is `want` (30 s).
async fn wait_header(
    running: &Running,
    client: &reqwest::Client,
    https: std::net::SocketAddr,
    want: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = x_env(client, https).await;
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "X-Env stayed {got:?}, expected {want:?}; stderr:\n{}",
            running.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rampart_config_reloads_total{result}` from the admin listener.
async fn reloads(admin: std::net::SocketAddr, result: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    let needle = format!("rampart_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn check_names_file_line_and_key_of_an_unset_variable_and_takes_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let text = header_config(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        "${RAMPART_TEST_UNSET_VAR}",
    );
    std::fs::write(dir.path().join("rampart.toml"), &text).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env_remove("RAMPART_TEST_UNSET_VAR")
        .args(["check", "rampart.toml"]);
    let out = run_to_end(cmd);
    let stderr = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = text.lines().position(|l| l.contains("X-Env")).unwrap() + 1;
    let column = text.lines().nth(line - 1).unwrap().find("\"${").unwrap() + 1;
    assert_eq!(
        stderr.trim(),
        format!(
            "rampart.toml:{line}:{column}: headers.set.X-Env: environment variable \
             `RAMPART_TEST_UNSET_VAR` is not set (write `${{RAMPART_TEST_UNSET_VAR:-default}}` to give a default)"
        )
    );

    // The same variable with a default passes; so does a literal `$$`.
    let text = text.replace(
        "${RAMPART_TEST_UNSET_VAR}",
        "${RAMPART_TEST_UNSET_VAR:-x} $${y}",
    );
    std::fs::write(dir.path().join("rampart.toml"), &text).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env_remove("RAMPART_TEST_UNSET_VAR")
        .args(["check", "rampart.toml"]);
    let out = run_to_end(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
}

fn text_of(bytes: &[u8]) -> String {
    common::binary::text(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reload_expands_again_a_default_applies_and_an_unset_variable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (https, admin) = (free_addr().await, free_addr().await);
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, header_config(https, admin, "${RAMPART_TEST_A}")).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_TEST_A", "alpha")
        .env("RAMPART_TEST_B", "beta")
        .env_remove("RAMPART_TEST_UNSET_VAR")
        .args(["run", "-c", "rampart.toml"]);
    let running = Running::spawn(cmd);
    let client = client(https);
    wait_header(&running, &client, https, "alpha").await;

    // The environment is fixed once the process runs: a reload reads the file again and
    // expands what it names now.
    replace_file(&path, &header_config(https, admin, "${RAMPART_TEST_B}"));
    wait_header(&running, &client, https, "beta").await;
    replace_file(
        &path,
        &header_config(https, admin, "${RAMPART_TEST_UNSET_VAR:-fallback}"),
    );
    wait_header(&running, &client, https, "fallback").await;
    // An empty value takes the default too (`:-`, as in the shell).
    replace_file(
        &path,
        &header_config(
            https,
            admin,
            "${RAMPART_TEST_UNSET_VAR:-} ${RAMPART_TEST_A:-z}",
        ),
    );
    wait_header(&running, &client, https, " alpha").await;

    // Unset without a default: the reload is refused, with file, line and key, and the
    // running config stays.
    let failures = reloads(admin, "failure").await;
    replace_file(
        &path,
        &header_config(https, admin, "${RAMPART_TEST_UNSET_VAR}"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads(admin, "failure").await <= failures {
        assert!(
            Instant::now() < deadline,
            "the reload was not refused; stderr:\n{}",
            running.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = running.stderr_text();
    assert!(
        logged.contains(
            "headers.set.X-Env: environment variable `RAMPART_TEST_UNSET_VAR` is not set"
        ),
        "{logged}"
    );
    let text = header_config(https, admin, "${RAMPART_TEST_UNSET_VAR}");
    let line = text.lines().position(|l| l.contains("X-Env")).unwrap() + 1;
    let column = text.lines().nth(line - 1).unwrap().find("\"${").unwrap() + 1;
    assert!(
        logged.contains(&format!("rampart.toml:{line}:{column}: ")),
        "{logged}"
    );
    assert_eq!(x_env(&client, https).await.as_deref(), Some(" alpha"));
}

/// A `redis-server` that requires a password, killed on drop.
struct PasswordRedis {
    child: Child,
    port: u16,
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PasswordRedis {
    fn start(password: &str) -> PasswordRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        PasswordRedis { child, port }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_from_the_environment_never_appears_in_any_output() {
    const SECRET: &str = "Zq8-secret-from-env-71";
    let redis = PasswordRedis::start(SECRET);
    let dir = tempfile::tempdir().unwrap();
    let (https, admin) = (free_addr().await, free_addr().await);
    let config = |extra: &str| {
        format!(
            "[listen]\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
             [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
             [rate_limit]\nstore = \"redis\"\non_store_error = \"deny\"\n\
             redis_url = \"redis://:${{RAMPART_TEST_REDIS_PASSWORD}}@127.0.0.1:{}/\"\n\n\
             [[routes]]\nname = \"limited\"\npath = \"/\"\nrate_limit = {{ rate = \"2/h\" }}\n\
             respond = {{ status = 200, body = \"hi\" }}\n{extra}",
            redis.port
        )
    };
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, config("")).unwrap();
    let mut outputs = Vec::new();

    // check: valid, then an error whose message would quote the value.
    let run_check = |file: &str| {
        let mut cmd = rampart(dir.path());
        cmd.env("RAMPART_TEST_REDIS_PASSWORD", SECRET)
            .args(["check", file]);
        run_to_end(cmd)
    };
    let out = run_check("rampart.toml");
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
    outputs.push(text_of(&out.stdout) + &text_of(&out.stderr));
    // Two routes named by the secret: the error quotes the name.
    let twice = "[[routes]]\nname = \"${RAMPART_TEST_REDIS_PASSWORD}\"\npath = \"/a\"\n\
                 respond = { status = 204 }\n";
    let bad = config(&format!("{twice}{twice}"));
    std::fs::write(dir.path().join("bad.toml"), &bad).unwrap();
    let out = run_check("bad.toml");
    let shown = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("routes[2].name") && shown.contains("${RAMPART_TEST_REDIS_PASSWORD}"),
        "the error names the key and shows the variable: {shown}"
    );
    outputs.push(text_of(&out.stdout) + &shown);
    // check --diff between two valid files that differ where the secret is used.
    std::fs::write(
        dir.path().join("next.toml"),
        config("").replace("redis://:", "redis://default:"),
    )
    .unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_TEST_REDIS_PASSWORD", SECRET).args([
        "check",
        "--diff",
        "rampart.toml",
        "next.toml",
    ]);
    let out = run_to_end(cmd);
    let diff = text_of(&out.stdout) + &text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{diff}");
    assert!(
        diff.contains("rate_limit.redis_url: \"redis://:${RAMPART_TEST_REDIS_PASSWORD}@"),
        "the diff shows the variable: {diff}"
    );
    outputs.push(diff);

    // run: the password works (Redis answers: the third request is refused with 429, where
    // `on_store_error = "deny"` would answer 503), through a valid and a refused reload.
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_TEST_REDIS_PASSWORD", SECRET)
        .env("RUST_LOG", "debug")
        .args(["run", "-c", "rampart.toml"]);
    let mut running = Running::spawn(cmd);
    running
        .wait_for_line("rampart is serving", Duration::from_secs(30))
        .await;
    let client = client(https);
    let url = format!("https://localhost:{}/", https.port());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = client.get(&url).send().await.expect("request");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "{}", running.stderr_text());
    replace_file(&path, &config("# edited\n"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads(admin, "success").await < 1 {
        assert!(Instant::now() < deadline, "{}", running.stderr_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replace_file(&path, &bad);
    while reloads(admin, "failure").await < 1 {
        assert!(Instant::now() < deadline, "{}", running.stderr_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outputs.push(running.stderr_text());
    outputs.push(running.stdout().join("\n"));
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    outputs.push(metrics);

    for (i, output) in outputs.iter().enumerate() {
        assert!(
            !output.contains(SECRET),
            "output {i} shows the secret:\n{output}"
        );
    }
    let logged = &outputs[3];
    assert!(
        logged.contains("${RAMPART_TEST_REDIS_PASSWORD}"),
        "the refused reload names the variable: {logged}"
    );
}
