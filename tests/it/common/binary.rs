//! Running the real `rampart` binary: a clean environment, its stderr collected line by line,
//! killed when the test ends.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// The binary with a clean environment for what matters here: no inherited config path, plain
/// log lines at info level.
pub fn rampart(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("RAMPART_CONFIG")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs a short command (check, cert) to completion, with a time limit.
pub fn run_to_end(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rampart");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "rampart did not finish within 30 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

pub fn text(bytes: &[u8]) -> String {
    strip_ansi(&String::from_utf8_lossy(bytes))
}

/// A running `rampart run`: its stderr is collected line by line (ANSI stripped), and its
/// stdout (the access log) line by line; the process is killed when the test ends, also on a
/// failed assertion.
pub struct Running {
    pub child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rampart run");
        let stderr = collect_lines(child.stderr.take().unwrap());
        let stdout = collect_lines(child.stdout.take().unwrap());
        Running {
            child: Some(child),
            stderr,
            stdout,
        }
    }

    /// The stdout lines so far (access-log lines).
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr().join("\n")
    }

    /// The first stderr line containing `needle`; panics (with the log) when the process exits
    /// or `limit` passes first.
    pub async fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.stderr().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // give the reader thread a moment to drain the pipe
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "rampart exited ({status}) before logging {needle:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "no stderr line with {needle:?} within {limit:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit; `None` when it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads a child's pipe line by line (ANSI stripped) on a thread, so the pipe never fills.
fn collect_lines(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(strip_ansi(&line));
        }
    });
    lines
}

/// The address after `key=` (`https=127.0.0.1:1234`, `http=Some(127.0.0.1:1234)`).
pub fn logged_addr(line: &str, key: &str) -> std::net::SocketAddr {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + key.len()
        + 2;
    let value = line[start..].split_whitespace().next().unwrap();
    let value = value
        .strip_prefix("Some(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(value);
    value
        .parse()
        .unwrap_or_else(|e| panic!("{key}={value:?} in {line:?} is not an address: {e}"))
}

/// `GET https://127.0.0.1:PORT{path}` on a spawned binary's https listener (the address its
/// "rampart is serving" line logs), trusting whatever certificate it presents: a development
/// one, on disk or in memory.
pub async fn get_any_cert(https: std::net::SocketAddr, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("https://127.0.0.1:{}{path}", https.port()))
        .send()
        .await
        .unwrap()
}
