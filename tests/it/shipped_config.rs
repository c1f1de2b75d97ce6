//! Every shipped file in `config/` passes `rampart check`; a broken config fails with
//! `file:line` and the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(config: &Path, cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("check")
        .arg("-c")
        .arg(config)
        .current_dir(cwd)
        .env_remove("RAMPART_CONFIG")
        .output()
        .expect("run rampart check")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_config_passes_check() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("config"))
        .expect("a config/ folder ships with the crate")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|e| e == "toml").unwrap_or(false))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|p| p.ends_with("config/rampart.toml")),
        "config/rampart.toml must ship (cargo run uses it): {files:?}"
    );
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        let output = check(&relative, &root);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "rampart check -c {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            relative.display()
        );
    }
}

/// A valid config around a generated certificate, with `lines` appended.
fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let cert = dir.join("t.crt");
    let key = dir.join("t.key");
    if !cert.exists() {
        rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    }
    let text = body
        .replace("@CERT@", &format!("{:?}", cert.display().to_string()))
        .replace("@KEY@", &format!("{:?}", key.display().to_string()));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const VALID: &str = "[listen]\n\
https = \"127.0.0.1:0\"\n\
\n\
[tls]\n\
cert = @CERT@\n\
key = @KEY@\n\
\n\
[upstreams.app]\n\
servers = [\"http://127.0.0.1:8000\"]\n\
\n\
[[routes]]\n\
name = \"app\"\n\
path = \"/\"\n\
upstream = \"app\"\n";

#[test]
fn a_valid_config_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "valid.toml", VALID);
    let output = check(&path, dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{VALID}\n[client]\nmax_bodyy = \"1MiB\"\n");
    let line = body
        .lines()
        .position(|l| l.starts_with("max_bodyy"))
        .unwrap()
        + 1;
    let path = write_config(dir.path(), "bad.toml", &body);
    let output = check(&path, dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let located = format!("bad.toml:{line}:");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&located) && l.contains("max_bodyy")),
        "expected a line with {located:?} naming max_bodyy in stderr:\n{stderr}"
    );
}

#[test]
fn every_semantic_error_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let body = VALID
        .replace(
            "https = \"127.0.0.1:0\"\n",
            "https = \"127.0.0.1:0\"\nhttp_redirect_status = 302\n",
        )
        .replace("key = @KEY@\n", "key = @KEY@\nmin_version = \"1.1\"\n");
    let status_line = body
        .lines()
        .position(|l| l.starts_with("http_redirect_status"))
        .unwrap()
        + 1;
    let version_line = body
        .lines()
        .position(|l| l.starts_with("min_version"))
        .unwrap()
        + 1;
    let path = write_config(dir.path(), "semantic.toml", &body);
    let output = check(&path, dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for (line, key) in [
        (status_line, "http_redirect_status"),
        (version_line, "min_version"),
    ] {
        let located = format!("semantic.toml:{line}:");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&located) && l.contains(key)),
            "expected a line with {located:?} naming {key} in stderr:\n{stderr}"
        );
    }
}

#[test]
fn a_missing_certificate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let body = VALID.replace(
        "cert = @CERT@\n",
        "cert = \"/nonexistent/rampart-test/missing.crt\"\nself_signed_if_missing = false\n",
    );
    let line = body.lines().position(|l| l.starts_with("cert =")).unwrap() + 1;
    let path = write_config(dir.path(), "nocert.toml", &body);
    let output = check(&path, dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let located = format!("nocert.toml:{line}:");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&located) && l.contains("cert")),
        "expected a line with {located:?} naming tls.cert in stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_toml_syntax_error_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{VALID}\n[client\nmax_body = \"1MiB\"\n");
    let line = body.lines().position(|l| l.starts_with("[client")).unwrap() + 1;
    let path = write_config(dir.path(), "syntax.toml", &body);
    let output = check(&path, dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("syntax.toml:{line}:")),
        "expected syntax.toml:{line}: in stderr:\n{stderr}"
    );
}
