//! The real `rampart` binary: `run` (dev certificate, https, http redirect, SIGTERM), `check`
//! (`$RAMPART_CONFIG`, errors with file:line:col, nothing written) and `cert`; and the allocator
//! it is linked with.
//!
//! Every test runs the binary in its own temporary folder as the working directory.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;

/// 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix:?} is not in the config"))
        + 1
}

/// A config with one upstream and a catch-all route, the certificate at `cert`/`key`.
fn config(server: &str, cert: &str, key: &str, self_signed: bool) -> String {
    format!(
        "[listen]\n\
         https = \"127.0.0.1:0\"\n\
         http = \"127.0.0.1:0\"\n\
         \n\
         [tls]\n\
         cert = {cert:?}\n\
         key = {key:?}\n\
         self_signed_if_missing = {self_signed}\n\
         \n\
         [upstreams.app]\n\
         servers = [{server:?}]\n\
         \n\
         [[routes]]\n\
         name = \"app\"\n\
         path = \"/\"\n\
         upstream = \"app\"\n"
    )
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_generates_a_dev_cert_serves_https_redirects_http_and_stops_on_sigterm() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cfg.toml"),
        config(&up.server(), "certs/dev.crt", "certs/dev.key", true),
    )
    .unwrap();

    let mut cmd = rampart(dir.path());
    cmd.args(["run", "-c", "cfg.toml"]);
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let https = logged_addr(&serving, "https");
    let http = logged_addr(&serving, "http");
    assert!(https.ip().is_loopback() && https.port() != 0, "{serving}");
    assert!(http.ip().is_loopback() && http.port() != 0, "{serving}");
    assert_ne!(https, http);

    // The development certificate was written into the working folder, the key private.
    let cert_path = dir.path().join("certs/dev.crt");
    let key_path = dir.path().join("certs/dev.key");
    assert!(cert_path.is_file(), "certs/dev.crt was not generated");
    assert!(key_path.is_file(), "certs/dev.key was not generated");
    #[cfg(unix)]
    assert_eq!(mode(&key_path), 0o600, "certs/dev.key must be owner-only");

    // …with a loud warning.
    let stderr = proc.stderr();
    let warning = stderr
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("self-signed"))
        .unwrap_or_else(|| {
            panic!(
                "no warning about the generated self-signed certificate; stderr:\n{}",
                stderr.join("\n")
            )
        });
    assert!(
        warning.contains("WARN"),
        "the self-signed notice is not a warning: {warning:?}"
    );
    assert!(
        warning.contains("certs/dev.crt"),
        "the warning does not name the certificate: {warning:?}"
    );

    // HTTPS with the generated certificate as the only trusted root.
    let pem = std::fs::read(&cert_path).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("dev.crt is PEM"))
        .resolve("localhost", https)
        .build()
        .unwrap();
    let resp = client
        .get(format!(
            "https://localhost:{}/from-binary?x=1",
            https.port()
        ))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "HTTPS request to the binary failed: {e:?}; stderr:\n{}",
                proc.stderr_text()
            )
        });
    assert_eq!(resp.status(), 200);
    assert_strict_headers(resp.headers(), "binary: proxied response");
    let body = resp.text().await.unwrap();
    assert!(body.contains("/from-binary"), "upstream echo: {body}");
    let got = up.last();
    assert_eq!(got.uri, "/from-binary?x=1");
    assert_eq!(got.header_all("x-forwarded-proto"), vec!["https"]);

    // Plain http is a 308 to https.
    let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &get_close("/from-binary?x=1", "localhost"))
        .await
        .unwrap();
    let resp = one_response(&read_until_close(&mut tcp, Duration::from_secs(5)).await);
    assert_eq!(resp.status, 308, "http listener: {resp:?}");
    assert_eq!(
        resp.header("location"),
        Some("https://localhost/from-binary?x=1"),
        "http listener Location"
    );
    assert_eq!(up.count(), 1, "the http listener must not proxy");

    // SIGTERM: a clean exit with status 0.
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(proc.pid().to_string())
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM failed: {killed}");
    let started = Instant::now();
    let status = proc.wait_exit(Duration::from_secs(5)).await;
    let Some(status) = status else {
        panic!(
            "rampart still runs 5 s after SIGTERM; stderr:\n{}",
            proc.stderr_text()
        );
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM ({status}, after {:?}); stderr:\n{}",
        started.elapsed(),
        proc.stderr_text()
    );
}

#[test]
fn check_reads_the_config_path_from_rampart_config() {
    let dir = tempfile::tempdir().unwrap();
    rampart::certgen::write_self_signed(
        &["localhost".to_string()],
        &dir.path().join("certs/dev.crt"),
        &dir.path().join("certs/dev.key"),
    )
    .unwrap();
    let good = config(
        "http://127.0.0.1:8000",
        "certs/dev.crt",
        "certs/dev.key",
        false,
    );
    std::fs::write(dir.path().join("cfg.toml"), &good).unwrap();
    let bad = good.replace("[listen]\n", "[listen]\nbogus_key = 1\n");
    std::fs::write(dir.path().join("bad.toml"), &bad).unwrap();

    // A good file: exit 0 (there is no config/rampart.toml here, so the env var was used).
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_CONFIG", "cfg.toml").arg("check");
    let out = run_to_end(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check of a good file via RAMPART_CONFIG; stderr:\n{}",
        text(&out.stderr)
    );

    // A bad file: exit 1, the error names the file, line and key.
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_CONFIG", "bad.toml").arg("check");
    let out = run_to_end(cmd);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check of a bad file via RAMPART_CONFIG; stderr:\n{stderr}"
    );
    let line = line_of(&bad, "bogus_key");
    assert!(
        stderr.contains(&format!("bad.toml:{line}:")),
        "the error must name bad.toml:{line}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("bogus_key"),
        "the error must name the key; stderr:\n{stderr}"
    );

    // -c wins over the env var.
    let mut cmd = rampart(dir.path());
    cmd.env("RAMPART_CONFIG", "bad.toml")
        .args(["check", "-c", "cfg.toml"]);
    let out = run_to_end(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "-c cfg.toml must win over RAMPART_CONFIG=bad.toml; stderr:\n{}",
        text(&out.stderr)
    );
}

#[test]
fn check_accepts_a_missing_dev_cert_with_a_warning_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cfg.toml"),
        config(
            "http://127.0.0.1:8000",
            "certs/dev.crt",
            "certs/dev.key",
            true,
        ),
    )
    .unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["check", "-c", "cfg.toml"]);
    let out = run_to_end(cmd);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check with a missing cert and self_signed_if_missing = true; stderr:\n{stderr}"
    );
    let lower = stderr.to_ascii_lowercase();
    assert!(
        lower.contains("warn") && stderr.contains("certs/dev.crt"),
        "expected a warning naming certs/dev.crt on stderr, got:\n{stderr}"
    );
    assert!(
        !dir.path().join("certs").exists(),
        "rampart check created certs/ (check must not write files)"
    );
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["cfg.toml".to_string()], "files after check");
}

#[test]
fn cert_writes_a_parseable_certificate_and_key_that_check_accepts() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args([
        "cert",
        "--host",
        "example.test",
        "--host",
        "127.0.0.1",
        "--out",
        "out/dev-certs",
    ]);
    let out = run_to_end(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rampart cert; stderr:\n{}",
        text(&out.stderr)
    );
    let cert_path = dir.path().join("out/dev-certs/dev.crt");
    let key_path = dir.path().join("out/dev-certs/dev.key");
    assert!(cert_path.is_file(), "dev.crt not written");
    assert!(key_path.is_file(), "dev.key not written");
    #[cfg(unix)]
    assert_eq!(mode(&key_path), 0o600, "dev.key must be owner-only");

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .expect("open dev.crt")
        .collect::<Result<_, _>>()
        .expect("dev.crt is valid PEM");
    assert_eq!(certs.len(), 1, "dev.crt holds one certificate");
    let der = certs[0].as_ref();
    // The subjectAltName entries: dNSName "example.test" and iPAddress 127.0.0.1 ([7] len 4).
    assert!(
        find(der, b"example.test").is_some(),
        "the certificate does not name example.test"
    );
    assert!(
        find(der, &[0x87, 0x04, 127, 0, 0, 1]).is_some(),
        "the certificate has no iPAddress 127.0.0.1 entry"
    );
    PrivateKeyDer::from_pem_file(&key_path).expect("dev.key is a PEM private key");

    // A config using them (no generation allowed) passes check.
    std::fs::write(
        dir.path().join("cfg.toml"),
        config(
            "http://127.0.0.1:8000",
            "out/dev-certs/dev.crt",
            "out/dev-certs/dev.key",
            false,
        ),
    )
    .unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["check", "-c", "cfg.toml"]);
    let out = run_to_end(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check with the generated cert; stderr:\n{}",
        text(&out.stderr)
    );
}

#[test]
fn check_prints_every_error_with_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    rampart::certgen::write_self_signed(
        &["localhost".to_string()],
        &dir.path().join("certs/dev.crt"),
        &dir.path().join("certs/dev.key"),
    )
    .unwrap();
    let cfg = "\
[listen]
https = \"127.0.0.1:0\"
http = \"127.0.0.1:0\"
http_redirect_status = 302

[tls]
cert = \"certs/dev.crt\"
key = \"certs/dev.key\"

[upstreams.app]
servers = [\"http://127.0.0.1:8000\"]

[[routes]]
name = \"app\"
path = \"/\"
upstream = \"missing\"
";
    std::fs::write(dir.path().join("cfg.toml"), cfg).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["check", "-c", "cfg.toml"]);
    let out = run_to_end(cmd);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");

    // file:line:col: key: message
    struct Reported {
        line: usize,
        col: usize,
        key: String,
        message: String,
    }
    let reported: Vec<Reported> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cfg.toml:")?;
            let mut parts = rest.splitn(4, ':');
            let line = parts.next()?.parse().ok()?;
            let col = parts.next()?.parse().ok()?;
            let rest = parts.next()?.strip_prefix(' ')?.to_string() + ":" + parts.next()?;
            let (key, message) = rest.split_once(": ")?;
            Some(Reported {
                line,
                col,
                key: key.to_string(),
                message: message.to_string(),
            })
        })
        .collect();

    let redirect_line = line_of(cfg, "http_redirect_status");
    let upstream_line = line_of(cfg, "upstream = \"missing\"");
    let value_col = |prefix: &str| {
        let l = cfg.lines().nth(line_of(cfg, prefix) - 1).unwrap();
        l.find("= ").unwrap() + 3
    };

    let redirect = reported
        .iter()
        .find(|r| r.key == "listen.http_redirect_status")
        .unwrap_or_else(|| {
            panic!("no `cfg.toml:L:C: listen.http_redirect_status: …` error; stderr:\n{stderr}")
        });
    assert_eq!(redirect.line, redirect_line, "stderr:\n{stderr}");
    assert!(
        redirect.col == 1 || redirect.col == value_col("http_redirect_status"),
        "column {} points at neither the key nor the value; stderr:\n{stderr}",
        redirect.col
    );
    assert!(
        redirect.message.contains("301") && redirect.message.contains("308"),
        "the message should say what is allowed: {:?}",
        redirect.message
    );

    let route = reported
        .iter()
        .find(|r| r.key.starts_with("routes") && r.key.ends_with("upstream"))
        .unwrap_or_else(|| {
            panic!("no `cfg.toml:L:C: routes…upstream: …` error; stderr:\n{stderr}")
        });
    assert_eq!(route.line, upstream_line, "stderr:\n{stderr}");
    assert!(
        route.col == 1 || route.col == value_col("upstream = \"missing\""),
        "column {} points at neither the key nor the value; stderr:\n{stderr}",
        route.col
    );
    assert!(
        route.message.contains("missing"),
        "the message should name the missing upstream: {:?}",
        route.message
    );
}

/// `listen.workers = 3`: three https worker threads, each serving connections on the one
/// address (SO_REUSEPORT); over 256 is refused by `check`, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_threads_that_share_the_https_address() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&up.server(), "certs/dev.crt", "certs/dev.key", true)
        .replace("[tls]", "workers = 3\n\n[tls]");
    std::fs::write(dir.path().join("cfg.toml"), &text).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "--no-watch", "-c", "cfg.toml"]);
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let https = logged_addr(&serving, "https");
    let pid = proc.child.as_ref().unwrap().id();
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("rampart-w"))
        .collect();
    names.sort();
    assert_eq!(names, ["rampart-w0", "rampart-w1", "rampart-w2"]);
    // Many fresh connections: every one is served, whichever worker the kernel gives it to.
    let client = || {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .resolve("localhost", https)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    for i in 0..30 {
        let resp = client()
            .get(format!("https://localhost:{}/w/{i}", https.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(up.count(), 30);

    let too_many = text.replace("workers = 3", "workers = 1000");
    std::fs::write(dir.path().join("bad.toml"), &too_many).unwrap();
    let mut check = rampart(dir.path());
    check.args(["check", "-c", "bad.toml"]);
    let out = run_to_end(check);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen.workers"), "{stderr}");
}

/// mimalloc serves the binary's allocations through `malloc` and `free` themselves (its
/// `override` feature; src/main.rs says why): the binary defines and exports them. If nothing
/// in `main` used mimalloc, the linker would leave it out and glibc's malloc would serve,
/// silently.
#[test]
fn the_binary_defines_malloc_and_free_from_mimalloc() {
    let out = Command::new("nm")
        .args(["--dynamic", "--defined-only", BIN])
        .output()
        .expect("nm (binutils) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let symbols = String::from_utf8_lossy(&out.stdout);
    for name in ["malloc", "free", "calloc", "realloc", "posix_memalign"] {
        let defined = symbols.lines().any(|line| {
            let mut fields = line.split_whitespace().rev();
            fields.next() == Some(name) && fields.next() == Some("T")
        });
        assert!(defined, "the binary does not define {name}:\n{symbols}");
    }
}

/// Whether this machine's CPU is one rampart sets glibc's copy tunable for (src/copy_tuning.rs).
fn cpu_wants_copy_tunable() -> bool {
    rampart::copy_tuning::is_amd_zen3_or_later(
        &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
    )
}

/// Starts `cmd`, waits until it serves, checks a GET over HTTPS is answered 200, and returns the
/// process with its environment as `/proc/PID/environ` shows it (NUL-separated). glibc 2.36
/// writes a NUL over each ':' of `GLIBC_TUNABLES` as it parses it, in the process's own copy, so
/// a list of tunables reads as its items NUL-separated.
async fn serving_environ(cmd: Command) -> (Running, String) {
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let resp = get_any_cert(logged_addr(&serving, "https"), "/").await;
    assert_eq!(resp.status(), 200);
    let environ = std::fs::read(format!("/proc/{}/environ", proc.pid())).unwrap();
    (proc, String::from_utf8_lossy(&environ).into_owned())
}

/// On an AMD Zen 3 or later CPU, `run` executes itself again at once with glibc's copy tunable
/// added (src/copy_tuning.rs): the same process, serving, the variable appended to what was
/// there, the choice logged. A value the user gave the tunable is kept. On other CPUs nothing
/// changes; this test checks whichever this machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_adds_glibcs_copy_tunable_on_amd_zen_and_keeps_a_users_own() {
    use rampart::copy_tuning::SETTING;
    let zen = cpu_wants_copy_tunable();
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&up.server(), "certs/dev.crt", "certs/dev.key", true);
    std::fs::write(dir.path().join("cfg.toml"), &text).unwrap();
    let users_own = "glibc.cpu.x86_rep_movsb_threshold=2112";
    // What /proc/PID/environ must hold (`serving_environ` says why NUL-separated).
    let added = format!("GLIBC_TUNABLES={SETTING}\0");
    let appended = format!("GLIBC_TUNABLES=glibc.malloc.check=0\0{SETTING}\0");
    let kept = "GLIBC_TUNABLES=glibc.malloc.check=0\0".to_string();
    let users = format!("GLIBC_TUNABLES={users_own}\0");
    let cases = [
        (None, zen.then_some(&added)),
        (
            Some("glibc.malloc.check=0"),
            Some(if zen { &appended } else { &kept }),
        ),
        (Some(users_own), Some(&users)),
    ];
    for (given, expected) in cases {
        let mut cmd = rampart(dir.path());
        cmd.args(["run", "--no-watch", "-c", "cfg.toml"]);
        match given {
            Some(value) => cmd.env("GLIBC_TUNABLES", value),
            None => cmd.env_remove("GLIBC_TUNABLES"),
        };
        let (proc, environ) = serving_environ(cmd).await;
        match expected {
            Some(expected) => assert!(
                environ.contains(expected.as_str()),
                "given {given:?}: {environ:?}"
            ),
            None => assert!(!environ.contains("GLIBC_TUNABLES"), "{environ:?}"),
        }
        // Never added twice, nor on another CPU.
        assert_eq!(
            environ.matches("4194304").count(),
            usize::from(zen && given != Some(users_own)),
            "given {given:?}: {environ:?}"
        );
        let logged = proc
            .stderr_text()
            .contains("glibc's rep movsb threshold as GLIBC_TUNABLES sets it");
        assert_eq!(logged, zen, "given {given:?}: {}", proc.stderr_text());
    }
}

/// A start that finds the setting missing although its environment says it was already
/// executed again for it (`RAMPART_EXECUTED_FOR_TUNABLES`, set on that second execution) does
/// not execute a third time, whatever removed the variable: it serves and warns (on AMD Zen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_already_executed_again_never_executes_a_third_time() {
    let zen = cpu_wants_copy_tunable();
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&up.server(), "certs/dev.crt", "certs/dev.key", true);
    std::fs::write(dir.path().join("cfg.toml"), &text).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "--no-watch", "-c", "cfg.toml"])
        .env_remove("GLIBC_TUNABLES")
        .env("RAMPART_EXECUTED_FOR_TUNABLES", "1");
    let (proc, environ) = serving_environ(cmd).await;
    assert!(!environ.contains("GLIBC_TUNABLES"), "{environ:?}");
    let warned = proc
        .stderr_text()
        .contains("GLIBC_TUNABLES did not survive it");
    assert_eq!(warned, zen, "{}", proc.stderr_text());
}

/// A binary given file capabilities (`setcap cap_net_bind_service=+ep`, to bind port 443 without
/// root) starts in secure-execution mode, where glibc ignores `GLIBC_TUNABLES` and takes it out
/// of the environment. rampart must not execute itself again then (each start would drop the
/// variable again, forever): it serves, started once, and on an AMD Zen host says why the
/// setting is not in effect. Runs as root (CI does): `setcap`, and `setpriv` to start it as
/// nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_file_capabilities_it_serves_without_executing_again() {
    use std::os::unix::fs::PermissionsExt;
    let zen = cpu_wants_copy_tunable();
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("rampart");
    std::fs::copy(BIN, &bin).unwrap();
    let setcap = Command::new("setcap")
        .arg("cap_net_bind_service=+ep")
        .arg(&bin)
        .output()
        .expect("setcap (libcap2-bin) runs");
    assert!(setcap.status.success(), "{}", text(&setcap.stderr));

    let mut cmd = Command::new("setpriv");
    cmd.current_dir(dir.path())
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["proxy", "--to", &up.server()])
        .args(["--https", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0"])
        .env_remove("GLIBC_TUNABLES")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    // setpriv executes rampart in its own process; rampart must not execute itself after that.
    let (proc, environ) = serving_environ(cmd).await;
    assert!(
        !environ.contains("RAMPART_EXECUTED_FOR_TUNABLES"),
        "{environ:?}"
    );
    assert!(!environ.contains("GLIBC_TUNABLES"), "{environ:?}");
    let said = proc
        .stderr_text()
        .contains("started setuid or with file capabilities");
    assert_eq!(said, zen, "{}", proc.stderr_text());
}
