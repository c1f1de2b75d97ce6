//! The README's first demo, followed as written: the fenced block after the
//! `readme-quickstart` marker is read from README.md and its commands are run — the demo
//! upstream (python3's http.server on an empty directory), the proxy as `cargo run --release`
//! runs it (this test's own `rampart` binary with no arguments, in a copy of the clone's
//! `config/`, instead of compiling a release build), and the two curl commands — and what the
//! block's comments promise is checked. Ports and the demo directory are substituted (each
//! substitution must match exactly once), so an edit of the README that this test no longer
//! matches fails here.

use crate::common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::*;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rampart.toml");
const MARKER: &str = "<!-- readme-quickstart:";

/// The commands of the fenced block after the marker.
fn quickstart_block() -> Vec<String> {
    let readme = std::fs::read_to_string(README).unwrap();
    let at = readme
        .find(MARKER)
        .expect("README.md lost its readme-quickstart marker");
    let rest = &readme[at..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let end = start + rest[start..].find("```").expect("the block's end");
    rest[start..end].lines().map(str::to_string).collect()
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur once in {text:?} (README or config changed: update this test)"
    );
    text.replace(from, to)
}

/// A shell command in its own process group, killed with it.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_demo_works_as_written() {
    let block = quickstart_block();
    assert_eq!(block.len(), 4, "the demo block: {block:?}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // 1. The demo upstream, exactly as written, on an empty directory of ours and a free port.
    let upstream_line = block[0].trim_end();
    assert!(
        upstream_line.starts_with("mkdir -p /tmp/rampart-demo && python3 -m http.server 8000"),
        "{upstream_line}"
    );
    assert!(
        upstream_line.ends_with(" &"),
        "runs in the background: {upstream_line}"
    );
    let demo = dir.join("rampart-demo");
    let command = upstream_line
        .trim_end_matches('&')
        .replace("/tmp/rampart-demo", demo.to_str().unwrap());
    let command = replace_once(&command, "http.server 8000", "http.server 0");
    let log = dir.join("upstream.log");
    let upstream = Group(
        Command::new("sh")
            .args(["-c", &format!("{command} > {} 2>&1", log.display())])
            .env("PYTHONUNBUFFERED", "1")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let port: u16 = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(port) = text
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
        {
            break port;
        }
        assert!(
            Instant::now() < deadline,
            "http.server did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(demo.is_dir(), "the demo directory was created");

    // 2. `cargo run --release`: the binary with no arguments reads config/rampart.toml.
    assert_eq!(block[1].trim(), "cargo run --release");
    let shipped = std::fs::read_to_string(SHIPPED).unwrap();
    assert!(
        shipped.contains("https = \"127.0.0.1:8443\""),
        "loopback by default"
    );
    assert!(
        shipped.contains("http = \"127.0.0.1:8080\""),
        "loopback by default"
    );
    let config = replace_once(
        &shipped,
        "https = \"127.0.0.1:8443\"",
        "https = \"127.0.0.1:0\"",
    );
    let config = replace_once(
        &config,
        "http = \"127.0.0.1:8080\"",
        "http = \"127.0.0.1:0\"",
    );
    let config = replace_once(
        &config,
        "admin = \"127.0.0.1:9090\"",
        "admin = \"127.0.0.1:0\"",
    );
    let config = replace_once(
        &config,
        "\"http://127.0.0.1:8000\"",
        &format!("\"http://127.0.0.1:{port}\""),
    );
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/rampart.toml"), config).unwrap();
    let mut proxy = Running::spawn(rampart(dir));
    let serving = proxy
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    let https = logged_addr(&serving, "https");
    let http = logged_addr(&serving, "http");
    assert!(
        dir.join("certs/dev.crt").is_file(),
        "first run writes a development certificate"
    );

    // 3. The curl commands as written (ports substituted), and what their comments promise.
    let curl = |line: &str, from: &str, port: u16| {
        let (command, comment) = line.split_once(" #").expect("a comment saying what to see");
        let command = replace_once(command.trim(), from, &format!("localhost:{port}/"));
        let out = Command::new("sh")
            .args(["-c", &format!("{command} --max-time 20 -sS")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        (text(&out.stdout), comment.trim().to_string())
    };
    let (page, promise) = curl(&block[2], "localhost:8443/", https.port());
    assert!(block[2].starts_with("curl -k -i https://localhost:8443/ "));
    assert!(promise.starts_with("200, HTTP/2, strict security headers, X-Request-Id"));
    let lower = page.to_ascii_lowercase();
    assert!(lower.starts_with("http/2 200"), "{page}");
    assert!(
        lower.contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "{page}"
    );
    assert!(lower.contains("content-security-policy: "), "{page}");
    assert!(lower.contains("x-request-id: "), "{page}");
    // The empty directory: nothing of the clone is listed.
    assert!(page.contains("Directory listing for /"), "{page}");
    assert!(!page.contains("certs/") && !page.contains(".git"), "{page}");

    let (redirect, promise) = curl(&block[3], "localhost:8080/", http.port());
    assert!(block[3].starts_with("curl -i http://localhost:8080/x?y=1 "));
    let location = promise
        .strip_prefix("308 → ")
        .expect("the comment promises a 308");
    let lower = redirect.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 308"), "{redirect}");
    assert!(
        lower.contains(&format!("location: {location}\r\n")),
        "{redirect}"
    );
    drop(upstream);
}
