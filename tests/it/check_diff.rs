//! `rampart check --diff OLD FILE` (issue 15): pairs of configs, one kind of change each,
//! through the real binary. The output is compared whole: it must be stable.

use crate::common;

use std::path::Path;

use common::binary::*;

/// A certificate for `hosts` valid until January 1st of `year`, written to `DIR/NAME.crt|key`.
fn write_cert(dir: &Path, name: &str, hosts: &[&str], year: i32) {
    let mut params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

const BASE: &str = r#"[listen]
https = "127.0.0.1:8443"
admin = "127.0.0.1:9090"

[tls]
cert = "a.crt"
key = "a.key"

[client]
max_body = "10MiB"

[headers]
content_security_policy = "default-src 'self'"

[rate_limit]
max_keys = 1000

[upstreams.app]
servers = ["http://127.0.0.1:8000"]
response_timeout = "30s"

[upstreams.old]
servers = ["http://127.0.0.1:8001"]

[[routes]]
name = "api"
path = "/api/"
upstream = "app"
rate_limit = { rate = "5/min" }

[[routes]]
name = "legacy"
path = "/legacy/"
upstream = "old"

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#;

/// `check --diff old.toml new.toml` in `dir`: (exit code, stdout, stderr).
fn diff(dir: &Path, old: &str, new: &str) -> (Option<i32>, String, String) {
    std::fs::write(dir.join("old.toml"), old).unwrap();
    std::fs::write(dir.join("new.toml"), new).unwrap();
    let mut cmd = rampart(dir);
    cmd.env("RAMPART_TEST_DIFF_SECRET", "diff-secret-value-93")
        .args(["check", "--diff", "old.toml", "new.toml"]);
    let out = run_to_end(cmd);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The change lines (after `changes from old.toml:`), unindented.
fn changes(dir: &Path, old: &str, new: &str) -> Vec<String> {
    let (code, stdout, stderr) = diff(dir, old, new);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("new.toml: ok"), "{stdout}");
    assert_eq!(lines.next(), Some("changes from old.toml:"), "{stdout}");
    lines
        .map(|l| {
            l.strip_prefix("  ")
                .unwrap_or_else(|| panic!("{l:?} not indented"))
                .to_string()
        })
        .collect()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a", &["example.com"], 2030);
    write_cert(dir.path(), "b", &["example.com", "www.example.com"], 2031);
    dir
}

#[test]
fn an_unchanged_config_says_so() {
    let dir = setup();
    assert_eq!(changes(dir.path(), BASE, BASE), ["no changes"]);
}

#[test]
fn routes_added_removed_reordered_and_changed() {
    let dir = setup();
    let new = BASE
        .replace(
            "rate_limit = { rate = \"5/min\" }",
            "rate_limit = { rate = \"10/min\", burst = 20 }\nmax_body = \"1MiB\"",
        )
        .replace(
            "[[routes]]\nname = \"legacy\"\npath = \"/legacy/\"\nupstream = \"old\"\n\n",
            "",
        )
        .replace(
            "[[routes]]\nname = \"app\"",
            "[[routes]]\nname = \"health\"\npath = \"/health\"\nrespond = { status = 200, body = \"ok\" }\n\n[[routes]]\nname = \"app\"",
        );
    assert_eq!(
        changes(dir.path(), BASE, &new),
        [
            "route \"api\": max_body: (default) → \"1MiB\"",
            "route \"api\": rate_limit.burst: (default) → 20",
            "route \"api\": rate_limit.rate: \"5/min\" → \"10/min\"",
            "route \"health\": added (position 2, path \"/health\", respond)",
            "route \"legacy\": removed",
        ]
    );
    // The same routes in another order.
    let swapped = BASE.replace(
        "[[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"app\"\nrate_limit = { rate = \"5/min\" }\n\n[[routes]]\nname = \"legacy\"\npath = \"/legacy/\"\nupstream = \"old\"\n",
        "[[routes]]\nname = \"legacy\"\npath = \"/legacy/\"\nupstream = \"old\"\n\n[[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"app\"\nrate_limit = { rate = \"5/min\" }\n",
    );
    assert_ne!(swapped, BASE);
    assert_eq!(
        changes(dir.path(), BASE, &swapped),
        ["routes: reordered (routes are tried in file order)"]
    );
}

#[test]
fn upstreams_servers_and_timeouts() {
    let dir = setup();
    let new = BASE
        .replace(
            "servers = [\"http://127.0.0.1:8000\"]\nresponse_timeout = \"30s\"",
            "servers = [\"http://127.0.0.1:8000\", \"http://127.0.0.1:8002\"]\nresponse_timeout = \"60s\"\nconnect_timeout = \"2s\"",
        )
        .replace("[upstreams.old]", "[upstreams.next]")
        .replace("upstream = \"old\"", "upstream = \"next\"");
    assert_eq!(
        changes(dir.path(), BASE, &new),
        [
            "upstream \"app\": connect_timeout: (default) → \"2s\"",
            "upstream \"app\": response_timeout: \"30s\" → \"60s\"",
            "upstream \"app\": servers: [\"http://127.0.0.1:8000\"] → [\"http://127.0.0.1:8000\", \"http://127.0.0.1:8002\"]",
            "upstream \"next\": added with servers [\"http://127.0.0.1:8001\"]",
            "upstream \"old\": removed",
            "route \"legacy\": upstream: \"old\" → \"next\"",
        ]
    );
}

#[test]
fn headers_limits_and_listen_changes_needing_a_restart() {
    let dir = setup();
    let new = BASE
        .replace(
            "https = \"127.0.0.1:8443\"",
            "https = \"127.0.0.1:9443\"\nshutdown_grace = \"5s\"",
        )
        .replace(
            "max_body = \"10MiB\"",
            "max_body = \"20MiB\"\nmax_connections = 100",
        )
        .replace(
            "content_security_policy = \"default-src 'self'\"",
            "content_security_policy = \"default-src 'none'\"\nset = { \"X-Team\" = \"ops\" }",
        )
        .replace("max_keys = 1000", "max_keys = 2000");
    assert_eq!(
        changes(dir.path(), BASE, &new),
        [
            "listen.https: \"127.0.0.1:8443\" → \"127.0.0.1:9443\" (needs restart)",
            "listen.shutdown_grace: (default) → \"5s\"",
            "client.max_body: \"10MiB\" → \"20MiB\"",
            "client.max_connections: (default) → 100",
            "headers.content_security_policy: \"default-src 'self'\" → \"default-src 'none'\"",
            "headers.set.X-Team: (default) → \"ops\"",
            "rate_limit.max_keys: 1000 → 2000",
        ]
    );
}

#[test]
fn certificates_names_and_expiry() {
    let dir = setup();
    let new = BASE.replace(
        "cert = \"a.crt\"\nkey = \"a.key\"",
        "cert = \"b.crt\"\nkey = \"b.key\"",
    );
    let mut with_more = new.clone();
    with_more.push_str(
        "\n[[tls.certificates]]\nhosts = [\"api.example.org\"]\ncert = \"c.crt\"\nkey = \"c.key\"\n",
    );
    write_cert(dir.path(), "c", &["api.example.org"], 2029);
    assert_eq!(
        changes(dir.path(), BASE, &with_more),
        [
            "tls.cert: \"a.crt\" → \"b.crt\"",
            "tls.key: \"a.key\" → \"b.key\"",
            "certificate \"api.example.org\": added (names api.example.org; expires 2029-01-01T00:00:00Z)",
            "certificate \"default\": file \"a.crt\" → \"b.crt\"; names example.com → example.com, www.example.com; expires 2030-01-01T00:00:00Z → 2031-01-01T00:00:00Z",
        ]
    );
    // The same file name, renewed in place: only the expiry.
    std::fs::write(dir.path().join("old.toml"), BASE).unwrap();
    let old = BASE.to_string();
    let before = dir.path().join("a.crt");
    std::fs::copy(&before, dir.path().join("a-old.crt")).unwrap();
    std::fs::copy(dir.path().join("a.key"), dir.path().join("a-old.key")).unwrap();
    write_cert(dir.path(), "a", &["example.com"], 2032);
    let old = old.replace(
        "cert = \"a.crt\"\nkey = \"a.key\"",
        "cert = \"a-old.crt\"\nkey = \"a-old.key\"",
    );
    assert_eq!(
        changes(dir.path(), &old, BASE),
        [
            "tls.cert: \"a-old.crt\" → \"a.crt\"",
            "tls.key: \"a-old.key\" → \"a.key\"",
            "certificate \"default\": file \"a-old.crt\" → \"a.crt\"; expires 2030-01-01T00:00:00Z → 2032-01-01T00:00:00Z",
        ]
    );
}

#[test]
fn environment_values_are_shown_by_name_and_an_invalid_file_fails_as_check_does() {
    let dir = setup();
    let new = BASE.replace(
        "servers = [\"http://127.0.0.1:8001\"]",
        "servers = [\"http://127.0.0.1:8001\"]\n[upstreams.old.health_check]\npath = \"/${RAMPART_TEST_DIFF_SECRET}\"",
    );
    let (code, stdout, stderr) = diff(dir.path(), BASE, &new);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "upstream \"old\": health_check.path: (default) → \"/${RAMPART_TEST_DIFF_SECRET}\""
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("diff-secret-value-93") && !stderr.contains("diff-secret-value-93"));

    // FILE invalid: the usual errors and exit 1, no diff.
    let broken = BASE.replace("upstream = \"old\"", "upstream = \"missing\"");
    let (code, stdout, stderr) = diff(dir.path(), BASE, &broken);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("new.toml:") && stderr.contains("routes[1].upstream"),
        "{stderr}"
    );
    assert!(!stdout.contains("changes from"), "{stdout}");

    // OLD need only be TOML (it may be a config this version refuses); not TOML: exit 1.
    let (code, stdout, _) = diff(
        dir.path(),
        &BASE.replace("upstream = \"old\"", "upstream = \"missing\""),
        BASE,
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("route \"legacy\": upstream: \"missing\" → \"old\""),
        "{stdout}"
    );
    let (code, stdout, stderr) = diff(dir.path(), "[listen\n", BASE);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.starts_with("--diff: old.toml:1:"), "{stderr}");
}
