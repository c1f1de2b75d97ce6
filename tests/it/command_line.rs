//! The command line as a newcomer types it (issue 17): `rampart -c FILE` and `rampart check
//! FILE`, a hint for `rampart FILE`, `check --skip-missing-paths` in CI without the volumes,
//! one error for an invalid upstream, nginx's durations, `cert --name`, the start-up line, and
//! `rampart proxy` outside a container (redirect port, header preset, CSP, body limit).

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::binary::*;
use common::*;

/// A config for `check`: one upstream, two routes using it, `extra` appended.
fn check_config(servers: &str, extra: &str) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [upstreams.backend]\nservers = [{servers}]\n\n\
         [[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"backend\"\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"backend\"\n\
         {extra}"
    )
}

/// Runs `rampart ARGS…` in `dir` to its end: (exit code, stdout, stderr).
fn run_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = rampart(dir);
    cmd.args(args);
    let out = run_to_end(cmd);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the config"))
        + 1
}

#[test]
fn check_takes_the_file_as_an_argument_and_rampart_file_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.toml"),
        check_config("\"http://127.0.0.1:8000\"", ""),
    )
    .unwrap();

    let (code, stdout, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(0), "check f.toml:\n{stderr}");
    assert_eq!(stdout.trim(), "f.toml: ok");
    // The same with -c, and `run` takes the positional file too (refused with -c).
    let (code, _, stderr) = run_in(dir.path(), &["check", "-c", "f.toml"]);
    assert_eq!(code, Some(0), "check -c f.toml:\n{stderr}");
    let (code, _, stderr) = run_in(dir.path(), &["check", "-c", "f.toml", "f.toml"]);
    assert_eq!(code, Some(2), "-c and FILE together:\n{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");

    // `rampart f.toml` is no command: clap's error, then how to run or check it.
    let (code, _, stderr) = run_in(dir.path(), &["f.toml"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unrecognized subcommand 'f.toml'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tip: to run this config: rampart -c f.toml"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tip: to validate it: rampart check f.toml"),
        "{stderr}"
    );
    // A word that is no file and no .toml gets clap's plain error.
    let (code, _, stderr) = run_in(dir.path(), &["chek"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("to run this config"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rampart_dash_c_runs_and_the_start_up_line_prints_plain_addresses() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [upstreams.app]\nservers = [{:?}]\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"app\"\n",
        up.server()
    );
    std::fs::write(dir.path().join("f.toml"), config).unwrap();

    // No `run`: `-c` alone runs the proxy.
    let mut cmd = rampart(dir.path());
    cmd.args(["-c", "f.toml", "--no-watch"]);
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    assert!(!serving.contains("Some("), "{serving}");
    assert!(!serving.contains("None"), "{serving}");
    assert!(serving.contains(" admin=off"), "{serving}");
    let https = logged_addr(&serving, "https");
    let http = logged_addr(&serving, "http");
    assert!(serving.contains(&format!(" http={http}")), "{serving}");

    let resp = get_any_cert(https, "/via-dash-c").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().uri, "/via-dash-c");
}

#[test]
fn check_reports_an_invalid_upstream_once_not_once_per_route() {
    let dir = tempfile::tempdir().unwrap();
    // The natural transcription of nginx's `server backend:8000;`.
    let config = check_config("\"backend:8000\"", "");
    std::fs::write(dir.path().join("f.toml"), &config).unwrap();
    let (code, _, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error, the root one:\n{stderr}");
    let line = line_of(&config, "backend:8000");
    assert!(
        lines[0].starts_with(&format!("f.toml:{line}:"))
            && lines[0].contains("upstreams.backend.servers"),
        "{stderr}"
    );
    assert!(!stderr.contains("is defined"), "{stderr}");

    // An upstream that is really missing is still named by each route using it.
    let config = check_config(
        "\"http://127.0.0.1:8000\"",
        "\n[[routes]]\npath = \"/x/\"\nupstream = \"nowhere\"\n",
    );
    std::fs::write(dir.path().join("f.toml"), &config).unwrap();
    let (code, _, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("routes[2].upstream: no [upstreams.nowhere] is defined"),
        "{stderr}"
    );
}

#[test]
fn check_accepts_nginx_durations_and_its_message_lists_the_units() {
    let dir = tempfile::tempdir().unwrap();
    // nginx's spellings: compound, fractional, with a space, long unit names.
    let upstream_keys = "response_timeout = \"1m30s\"\nconnect_timeout = \"1.5s\"\n\n\
                         [[routes]]\nname = \"api\"";
    let config = check_config("\"http://127.0.0.1:8000\"", "")
        .replacen("[[routes]]\nname = \"api\"", upstream_keys, 1)
        .replacen(
            "[upstreams.backend]",
            "[client]\nidle_timeout = \"2m 30s\"\nbody_timeout = \"1 min\"\nheader_timeout = \"500ms\"\n\n[upstreams.backend]",
            1,
        );
    std::fs::write(dir.path().join("f.toml"), &config).unwrap();
    let (code, _, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(0), "{stderr}\n{config}");

    let config = check_config("\"http://127.0.0.1:8000\"", "").replacen(
        "[[routes]]\nname = \"api\"",
        "response_timeout = \"90 parsecs\"\n\n[[routes]]\nname = \"api\"",
        1,
    );
    std::fs::write(dir.path().join("f.toml"), &config).unwrap();
    let (code, _, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    let line = line_of(&config, "parsecs");
    assert!(
        stderr.starts_with(&format!("f.toml:{line}:")),
        "file:line first: {stderr}"
    );
    for needle in [
        "unknown unit \"parsecs\"",
        "\"1m30s\"",
        "\"1.5s\"",
        "ms, s, m, h, d, w",
        "min, hours",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
}

#[test]
fn check_skip_missing_paths_names_what_it_could_not_see_and_checks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("volumes");
    let config = |upstream: &str| {
        format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n\n\
             [tls]\ncert = \"{m}/certs/tls.crt\"\nkey = \"{m}/certs/tls.key\"\n\n\
             [upstreams.app]\nservers = [\"{upstream}\"]\n\n\
             [[routes]]\nname = \"static\"\npath = \"/static/\"\nstatic = {{ root = \"{m}/staticfiles\" }}\n\n\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            m = missing.display()
        )
    };
    let good = config("http://127.0.0.1:8000");
    std::fs::write(dir.path().join("f.toml"), &good).unwrap();

    // Without the flag: the three paths are errors.
    let (code, _, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    for key in ["tls.cert", "tls.key", "routes[0].static.root"] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }

    // With it: one warning per unseen path with its file:line, exit 0.
    let (code, stdout, stderr) = run_in(dir.path(), &["check", "--skip-missing-paths", "f.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "f.toml: ok");
    for (key, path) in [
        ("tls.cert", "certs/tls.crt"),
        ("tls.key", "certs/tls.key"),
        ("routes[0].static.root", "staticfiles"),
    ] {
        let line = line_of(&good, path);
        let warning = stderr
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no warning for {path}:\n{stderr}"));
        assert!(
            warning.starts_with(&format!("warning: f.toml:{line}:"))
                && warning.contains(key)
                && warning.contains("does not exist here; not checked (--skip-missing-paths)"),
            "{warning}"
        );
    }
    assert!(!missing.exists(), "check created {}", missing.display());

    // Everything else is still checked.
    std::fs::write(dir.path().join("f.toml"), config("backend:8000")).unwrap();
    let (code, _, stderr) = run_in(dir.path(), &["check", "--skip-missing-paths", "f.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("upstreams.app.servers"), "{stderr}");
}

#[test]
fn cert_name_writes_the_files_the_compose_examples_read() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_in(
        dir.path(),
        &[
            "cert",
            "--host",
            "localhost",
            "--out",
            "certs",
            "--name",
            "tls",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("certs/tls.crt"), "{stdout}");
    assert!(dir.path().join("certs/tls.crt").is_file());
    assert!(dir.path().join("certs/tls.key").is_file());
    assert!(!dir.path().join("certs/dev.crt").exists());

    // A config reading them (nothing generated) passes check.
    std::fs::write(
        dir.path().join("f.toml"),
        check_config("\"http://127.0.0.1:8000\"", "")
            .replace("certs/dev.", "certs/tls.")
            .replace(
                "self_signed_if_missing = true",
                "self_signed_if_missing = false",
            ),
    )
    .unwrap();
    let (code, _, stderr) = run_in(dir.path(), &["check", "f.toml"]);
    assert_eq!(code, Some(0), "{stderr}");

    // The name is a name, not a path.
    for bad in ["../tls", "a/b", ""] {
        let (code, _, stderr) = run_in(dir.path(), &["cert", "--host", "localhost", "--name", bad]);
        assert_eq!(code, Some(2), "--name {bad:?}: {stderr}");
        assert!(stderr.contains("use --out for the folder"), "{stderr}");
    }
}

/// Starts `rampart proxy ARGS…`; returns it with its https and http addresses.
async fn start_proxy(
    dir: &Path,
    args: &[&str],
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    let mut cmd = rampart(dir);
    cmd.arg("proxy").args(args);
    let mut proc = Running::spawn(cmd);
    let serving = proc
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    (
        proc,
        logged_addr(&serving, "https"),
        logged_addr(&serving, "http"),
    )
}

fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn location_of(http: std::net::SocketAddr) -> String {
    let resp = insecure_client()
        .get(format!("http://{http}/docs?x=1"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    resp.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_outside_a_container_redirects_to_its_port_and_takes_header_and_body_flags() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = up.server();
    let (_proc, https, http) = start_proxy(
        dir.path(),
        &[
            "--to",
            &server,
            "--https",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--headers",
            "basic",
            "--max-body",
            "1KiB",
        ],
    )
    .await;
    // The redirect goes to the port the https listener really has.
    assert_eq!(
        location_of(http).await,
        format!("https://localhost:{}/docs?x=1", https.port())
    );

    let client = insecure_client();
    let resp = client
        .get(format!("https://127.0.0.1:{}/docs", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers();
    assert!(
        headers.get("content-security-policy").is_none(),
        "basic has no CSP: {headers:?}"
    );
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("strict-transport-security"));

    // --max-body: 1 KiB passes, one byte more is 413 before the app sees it.
    let resp = client
        .post(format!("https://127.0.0.1:{}/upload", https.port()))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let before = up.count();
    let resp = client
        .post(format!("https://127.0.0.1:{}/upload", https.port()))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.count(), before, "an over-limit body reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_takes_a_public_https_port_and_a_csp_of_its_own() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = up.server();
    // Taken as it is: the sidecar's config is a model value, never TOML text, so quotes,
    // `${…}` and `$$` are not read as TOML or expanded from the environment.
    let csp = "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net/${HOME}/$$ \"x\"";
    let (_proc, https, http) = start_proxy(
        dir.path(),
        &[
            "--to",
            &server,
            "--https",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--https-port-public",
            "443",
            "--csp",
            csp,
        ],
    )
    .await;
    // Behind a port map (443 → the listener): no port in the redirect.
    assert_eq!(location_of(http).await, "https://localhost/docs?x=1");

    let resp = insecure_client()
        .get(format!("https://127.0.0.1:{}/docs", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers();
    assert_eq!(headers["content-security-policy"], csp);
    // The rest of the strict preset stays.
    assert_eq!(headers["x-frame-options"], "DENY");
}

#[test]
fn proxy_mode_refuses_bad_flag_values_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["--max-body", "10 parsecs"][..], "--max-body"),
        (&["--headers", "loose"][..], "--headers"),
        (&["--https-port-public", "0"][..], "--https-port-public"),
    ] {
        let mut all = vec!["proxy", "--to", "http://127.0.0.1:8000"];
        all.extend_from_slice(args);
        let (code, _, stderr) = run_in(dir.path(), &all);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
