//! The compose examples end to end, without Docker: each example's topology run natively with
//! real app servers. Gunicorn serves a WSGI stand-in for Django (`tests/e2e/wsgi_app.py`) on a
//! unix socket, Uvicorn serves the FastAPI example's own app on TCP, and the real `rampart`
//! binary runs the example's own `rampart.toml` after a short, explicit list of substitutions
//! (listen addresses, certificate, socket and directory paths), each of which must match once.
//!
//! The Django example's own project (`examples/compose/django/app`) also runs under Gunicorn,
//! on SQLite, for a browser-like login with CSRF through the proxy.
//!
//! Needs python3 with gunicorn, uvicorn, fastapi and django (`.ci/run` installs them); the tests
//! fail without them.

use crate::common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use prometheus_parse::{Scrape, Value};
use reqwest::header::{HeaderMap, ACCEPT_ENCODING};
use reqwest::{StatusCode, Version};
use tokio::io::AsyncReadExt;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/compose");
const E2E_APPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

/// Client addresses on the loopback /8, one per concern, so each has its own rate-limit quota.
const DEFAULT_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The "office" address the Django test adds to the `/admin/` allow list.
const OFFICE_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LOGIN_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const API_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Fails (never skips) when the app servers are missing: the point of this file is running them.
fn require_python_deps() {
    let found = Command::new("python3")
        .args(["-c", "import gunicorn, uvicorn, fastapi"])
        .output();
    let reason = match found {
        Ok(out) if out.status.success() => return,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(err) => format!("python3: {err}"),
    };
    panic!(
        "tests/e2e_compose.rs needs python3 with gunicorn, uvicorn and fastapi: run `bash .ci/run` \
         or `python3 -m pip install gunicorn uvicorn fastapi` ({reason})"
    );
}

/// A python app server in its own process group (Gunicorn's master and workers), its stdout
/// and stderr collected line by line, the whole group killed when the test ends.
struct AppServer {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl AppServer {
    fn spawn(name: &'static str, mut cmd: Command) -> AppServer {
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), lines.clone());
        collect(child.stderr.take().unwrap(), lines.clone());
        AppServer { name, child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the output so far; panics with the output otherwise.
    async fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.lines()) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "{} exited ({status}) before {what}; output:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: no {what} within {limit:?}; output:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first output line containing `needle`.
    async fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_for(needle, limit, |lines| {
            lines.iter().any(|l| l.contains(needle))
        })
        .await;
        self.lines()
            .into_iter()
            .find(|l| l.contains(needle))
            .unwrap()
    }

    /// Output lines containing every one of `needles`.
    fn count(&self, needles: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        // The negative pid names the group: Gunicorn's workers go with their master.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn collect(pipe: impl std::io::Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
}

/// The example's `rampart.toml` with each `(from, to)` applied. Every `from` must occur exactly
/// once, so an edit of the example that this list no longer matches fails here, loudly.
fn example_config(example: &str, substitutions: &[(&str, String)]) -> String {
    let path = format!("{EXAMPLES}/{example}/rampart.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in substitutions {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{path}: {from:?} must occur exactly once (the test's substitution list is stale)"
        );
        text = text.replace(from, to);
    }
    text
}

/// The substitutions both examples need: the public listeners on loopback ports of the OS's
/// choice, and the certificate `rampart cert` writes into `dir/certs`.
/// The Django example's paths (the Gunicorn socket, static and media roots) and its admin
/// listener moved to the test's, on top of [`common_substitutions`].
fn django_substitutions(
    dir: &Path,
    socket: &Path,
    staticfiles: &Path,
    media: &Path,
) -> Vec<(&'static str, String)> {
    let mut substitutions = common_substitutions(dir);
    substitutions.extend([
        ("admin = \"0.0.0.0:9090\"", "admin = \"127.0.0.1:0\"".into()),
        (
            "\"unix:/run/gunicorn/gunicorn.sock\"",
            format!("\"unix:{}\"", socket.display()),
        ),
        (
            "\"/app/staticfiles\"",
            format!("\"{}\"", staticfiles.display()),
        ),
        ("\"/app/media\"", format!("\"{}\"", media.display())),
    ]);
    substitutions
}

fn common_substitutions(dir: &Path) -> Vec<(&'static str, String)> {
    let certs = dir.join("certs");
    vec![
        ("https = \"0.0.0.0:8443\"", "https = \"127.0.0.1:0\"".into()),
        ("http = \"0.0.0.0:8080\"", "http = \"127.0.0.1:0\"".into()),
        (
            "\"/etc/rampart/certs/tls.crt\"",
            format!("\"{}\"", certs.join("dev.crt").display()),
        ),
        (
            "\"/etc/rampart/certs/tls.key\"",
            format!("\"{}\"", certs.join("dev.key").display()),
        ),
    ]
}

/// rampart running a config, with its three listeners.
struct Proxy {
    process: Running,
    https: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
}

/// Writes a certificate for `localhost` with `rampart cert`, checks the config with `rampart
/// check`, then runs it (as the image does: `run`, with the file watcher).
async fn start_rampart(dir: &Path, config: &str) -> Proxy {
    let mut cert = rampart(dir);
    cert.args(["cert", "--host", "localhost", "--out", "certs"]);
    let out = run_to_end(cert);
    assert!(out.status.success(), "rampart cert: {}", text(&out.stderr));

    std::fs::write(dir.join("rampart.toml"), config).unwrap();
    let mut check = rampart(dir);
    check.args(["check", "-c", "rampart.toml"]);
    let out = run_to_end(check);
    assert!(
        out.status.success(),
        "rampart check of the example:\n{}\n{config}",
        text(&out.stderr)
    );

    let mut run = rampart(dir);
    run.args(["run", "-c", "rampart.toml"]);
    let mut process = Running::spawn(run);
    let serving = process
        .wait_for_line("rampart is serving", Duration::from_secs(20))
        .await;
    Proxy {
        https: logged_addr(&serving, "https"),
        http: logged_addr(&serving, "http"),
        admin: logged_addr(&serving, "admin"),
        process,
    }
}

// ---------------------------------------------------------------------------------------------
// Clients and answers
// ---------------------------------------------------------------------------------------------

/// A client trusting the test certificate, resolving `localhost` to the proxy, connecting from
/// `from`, following no redirects.
fn client(dir: &Path, proxy: &Proxy, h2: bool, from: Ipv4Addr) -> reqwest::Client {
    let pem = std::fs::read(dir.join("certs/dev.crt")).unwrap();
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", proxy.https)
        .local_address(IpAddr::V4(from));
    if h2 { builder } else { builder.http1_only() }
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.one(name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body, decoded per its Content-Encoding.
    async fn decoded(&self) -> String {
        let mut out = Vec::new();
        match self.header("content-encoding").as_deref() {
            None => out.extend_from_slice(&self.body),
            Some("gzip") => {
                async_compression::tokio::bufread::GzipDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .await
                    .expect("valid gzip");
            }
            Some("br") => {
                async_compression::tokio::bufread::BrotliDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .await
                    .expect("valid brotli");
            }
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
        String::from_utf8(out).unwrap()
    }

    fn int(&self, name: &str) -> u64 {
        let value = self
            .header(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {value:?}"))
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        version: response.version(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

fn url(proxy: &Proxy, path: &str) -> String {
    format!("https://localhost:{}{path}", proxy.https.port())
}

/// The JSON object the apps echo in `<pre id="seen">…</pre>`.
fn seen(page: &str) -> HashMap<String, serde_json::Value> {
    let start = page
        .find("<pre id=\"seen\">")
        .unwrap_or_else(|| panic!("no echo in {page}"))
        + "<pre id=\"seen\">".len();
    let end = start + page[start..].find("</pre>").unwrap();
    serde_json::from_str(&page[start..end]).unwrap()
}

fn seen_str(seen: &HashMap<String, serde_json::Value>, key: &str) -> String {
    match seen.get(key) {
        Some(serde_json::Value::String(value)) => value.clone(),
        other => panic!("the app saw {key} = {other:?}; everything it saw: {seen:?}"),
    }
}

async fn admin_get(proxy: &Proxy, path: &str) -> (StatusCode, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}{path}", proxy.admin))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn scrape(proxy: &Proxy) -> Scrape {
    let (status, body) = admin_get(proxy, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// A counter or gauge with exactly these labels; 0 when the series does not exist.
fn metric(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a counter or gauge"),
        })
        .sum()
}

fn requests_total(scrape: &Scrape, route: &str, method: &str, status: &str) -> f64 {
    metric(
        scrape,
        "rampart_requests_total",
        &[("route", route), ("method", method), ("status", status)],
    )
}

/// `rampart healthcheck` as the image's HEALTHCHECK runs it, against this proxy's admin port.
fn healthcheck(dir: &Path, proxy: &Proxy) {
    let mut cmd = rampart(dir);
    cmd.args([
        "healthcheck",
        "--url",
        &format!("http://{}/healthz", proxy.admin),
    ]);
    let out = run_to_end(cmd);
    assert!(
        out.status.success(),
        "rampart healthcheck: {}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Django + Gunicorn (unix socket)
// ---------------------------------------------------------------------------------------------

/// examples/compose/django: Gunicorn on a unix socket, rampart with the example's rampart.toml.
#[tokio::test(flavor = "multi_thread")]
async fn django_example_with_gunicorn_on_a_unix_socket() {
    require_python_deps();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The shared volumes: collectstatic's output and the uploads.
    let staticfiles = dir.join("staticfiles");
    let media = dir.join("media");
    std::fs::create_dir_all(staticfiles.join("css")).unwrap();
    std::fs::create_dir_all(media.join("uploads")).unwrap();
    let css = "body { color: #222; }\n";
    std::fs::write(staticfiles.join("css/site.css"), css).unwrap();
    std::fs::write(media.join("uploads/report.txt"), "quarterly report\n").unwrap();
    std::fs::write(media.join("uploads/shell.php"), "<?php system($_GET['c']);").unwrap();

    // Gunicorn as in examples/compose/django/app/Dockerfile: a unix socket, --umask 0o007.
    let socket = dir.join("gunicorn.sock");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "gunicorn", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .args([
            "--umask",
            "0o007",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ])
        .args(["--chdir", E2E_APPS, "wsgi_app:application"]);
    let mut gunicorn = AppServer::spawn("gunicorn", cmd);
    gunicorn
        .wait_for_line("Booting worker", Duration::from_secs(20))
        .await;
    // What the compose comment promises: srwxrwx---, the app's user and group only.
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o770, "socket mode");

    let mut substitutions = django_substitutions(dir, &socket, &staticfiles, &media);
    substitutions.extend([
        // The test's "office": an address of the loopback /8 that the client binds to. Every
        // other test client (127.0.0.1 included) is outside the allow list, as the Internet is.
        (
            "allow = [\"10.0.0.0/8\", \"192.168.0.0/16\"]",
            format!("allow = [\"10.0.0.0/8\", \"192.168.0.0/16\", \"{OFFICE_CLIENT}/32\"]"),
        ),
    ]);
    let config = example_config("django", &substitutions);
    let proxy = start_rampart(dir, &config).await;
    let h1 = client(dir, &proxy, false, DEFAULT_CLIENT);
    let h2 = client(dir, &proxy, true, DEFAULT_CLIENT);

    // /static/: served by rampart from STATIC_ROOT, cached for a year, revalidated by ETag.
    let mut static_etag = None;
    for (client, version) in [(&h1, Version::HTTP_11), (&h2, Version::HTTP_2)] {
        let got = send(client.get(url(&proxy, "/static/css/site.css"))).await;
        assert_eq!(got.status, StatusCode::OK, "static over {version:?}");
        assert_eq!(got.version, version);
        assert_eq!(got.text(), css);
        assert_eq!(
            got.header("content-type").as_deref(),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(
            got.header("cache-control").as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert!(got.header("last-modified").is_some());
        assert_strict_headers(&got.headers, "static file");
        let etag = got.header("etag").expect("static files carry an ETag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert_eq!(static_etag.get_or_insert(etag.clone()), &etag);
    }
    let etag = static_etag.unwrap();
    let got = send(
        h1.get(url(&proxy, "/static/css/site.css"))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(got.status, StatusCode::NOT_MODIFIED);
    assert_eq!(got.body, b"");
    assert_eq!(got.header("etag"), Some(etag));
    assert_eq!(
        got.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert_strict_headers(&got.headers, "304");

    // /media/: uploads served an hour, in a CSP sandbox; a script upload is never served.
    let got = send(h1.get(url(&proxy, "/media/uploads/report.txt"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.text(), "quarterly report\n");
    assert_eq!(
        got.header("cache-control").as_deref(),
        Some("public, max-age=3600")
    );
    assert_eq!(
        got.headers.all("content-security-policy"),
        vec!["default-src 'none'; sandbox".to_string()]
    );
    assert_eq!(
        got.header("strict-transport-security").as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(got.header("x-frame-options").as_deref(), Some("DENY"));
    let got = send(h1.get(url(&proxy, "/media/uploads/shell.php"))).await;
    // The proxy's own 404, under the route's headers (its sandbox CSP).
    assert_eq!(got.status, StatusCode::NOT_FOUND, "uploaded .php");
    assert_eq!(got.text(), "404 Not Found\n");
    assert_eq!(
        got.headers.all("content-security-policy"),
        vec!["default-src 'none'; sandbox".to_string()]
    );
    assert_eq!(got.header("x-frame-options").as_deref(), Some("DENY"));

    // /api/auth/login/: POST 5/min, burst 4 (nginx's `burst=3 nodelay`), per client IP. With 4
    // at once, the bucket's refill times are 12, 24, 36 and 48 s (less what elapsed between the
    // requests, under 1 s); the 5th is refused.
    let login = client(dir, &proxy, false, LOGIN_CLIENT);
    for n in 1..=4u64 {
        let got = send(
            login
                .post(url(&proxy, "/api/auth/login/"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=alice&password=x"),
        )
        .await;
        assert_eq!(got.status, StatusCode::OK, "login {n}");
        assert_eq!(got.text(), r#"{"login": "ok", "received": 25}"#);
        assert_eq!(got.int("ratelimit-limit"), 4);
        assert_eq!(got.int("ratelimit-remaining"), 4 - n);
        let reset = got.int("ratelimit-reset");
        assert!(
            (12 * n - 1..=12 * n).contains(&reset),
            "login {n}: RateLimit-Reset {reset}"
        );
        assert_strict_headers(&got.headers, "login");
    }
    let got = send(
        login
            .post(url(&proxy, "/api/auth/login/"))
            .body("username=alice&password=y"),
    )
    .await;
    assert_proxy_error(
        &got.headers,
        got.status.as_u16(),
        &got.text(),
        "429 Too Many Requests\n",
        "5th login",
    );
    let retry_after = got.int("retry-after");
    assert!(
        (11..=12).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(got.int("ratelimit-remaining"), 0);

    // /api/: 10/s, burst 20. A GET of the login path falls through to this route (the login
    // route takes POST only) and reaches the app, which has no GET there.
    let api = client(dir, &proxy, false, API_CLIENT);
    let got = send(api.get(url(&proxy, "/api/items/"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.text(),
        r#"{"items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}]}"#
    );
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(got.int("ratelimit-limit"), 20);
    assert_eq!(got.int("ratelimit-remaining"), 19);
    assert_eq!(got.int("ratelimit-reset"), 1);
    assert_strict_headers(&got.headers, "api");
    let got = send(api.get(url(&proxy, "/api/auth/login/"))).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.text(), "not found");
    assert_eq!(got.int("ratelimit-limit"), 20);

    // /admin/: 403 outside the allow list, whatever the spelling of the path; the office
    // address gets Django's page.
    for path in ["/admin/", "/%61dmin/", "//admin/"] {
        let got = send(h1.get(url(&proxy, path))).await;
        assert_proxy_error(
            &got.headers,
            got.status.as_u16(),
            &got.text(),
            "403 Forbidden\n",
            path,
        );
    }
    let office = client(dir, &proxy, true, OFFICE_CLIENT);
    let got = send(office.get(url(&proxy, "/admin/"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.text().contains("<h1>Django administration</h1>"));
    assert_strict_headers(&got.headers, "admin page");

    // /: the app's page. Strict headers replace the app's X-Frame-Options and remove Server
    // (gunicorn) and X-Powered-By; the cookie gets Secure and SameSite; a spoofed
    // X-Forwarded-For is replaced by the real peer.
    let got = send(
        h1.get(url(&proxy, "/"))
            .header("x-forwarded-for", "203.0.113.66")
            .header("x-request-id", "e2e-compose-h1"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_strict_headers(&got.headers, "app page");
    assert_eq!(
        got.headers.all("set-cookie"),
        vec!["sessionid=e2e-session; Path=/; Secure; SameSite=Lax".to_string()]
    );
    assert_eq!(
        got.header("x-request-id").as_deref(),
        Some("e2e-compose-h1")
    );
    assert_eq!(got.header("content-encoding"), None);
    let host = format!("localhost:{}", proxy.https.port());
    let app_saw = seen(&got.text());
    assert_eq!(seen_str(&app_saw, "x_forwarded_for"), "127.0.0.1");
    assert_eq!(seen_str(&app_saw, "x_real_ip"), "127.0.0.1");
    assert_eq!(seen_str(&app_saw, "x_forwarded_proto"), "https");
    assert_eq!(seen_str(&app_saw, "scheme"), "https", "request.is_secure()");
    assert_eq!(seen_str(&app_saw, "host"), host);
    assert_eq!(seen_str(&app_saw, "x_forwarded_host"), host);
    assert_eq!(seen_str(&app_saw, "x_request_id"), "e2e-compose-h1");
    assert_eq!(app_saw["accept_encoding"], serde_json::Value::Null);

    // Compressed when accepted: gzip over HTTP/1.1, brotli over HTTP/2.
    for (client, version, coding) in [
        (&h1, Version::HTTP_11, "gzip"),
        (&h2, Version::HTTP_2, "br"),
    ] {
        let got = send(client.get(url(&proxy, "/")).header(ACCEPT_ENCODING, coding)).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.version, version);
        assert_eq!(got.header("content-encoding").as_deref(), Some(coding));
        assert_eq!(got.header("vary").as_deref(), Some("Accept-Encoding"));
        assert_strict_headers(&got.headers, coding);
        let page = got.decoded().await;
        assert!(
            got.body.len() * 3 < page.len(),
            "{coding}: {} of {}",
            got.body.len(),
            page.len()
        );
        assert!(page.contains("Lorem ipsum dolor sit amet"));
        let app_saw = seen(&page);
        assert_eq!(seen_str(&app_saw, "accept_encoding"), coding);
        assert_eq!(seen_str(&app_saw, "host"), host, "Host over {version:?}");
        assert!(is_generated_request_id(&seen_str(&app_saw, "x_request_id")));
        assert_eq!(
            got.header("x-request-id"),
            Some(seen_str(&app_saw, "x_request_id"))
        );
    }

    // Plain http: redirected to https on the public port 443 (no port in the Location).
    let got = send(h1.get(format!(
        "http://localhost:{}/admin/?next=%2F",
        proxy.http.port()
    )))
    .await;
    assert_eq!(got.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        got.header("location").as_deref(),
        Some("https://localhost/admin/?next=%2F")
    );

    // Health: rampart's checks reached Gunicorn over the socket; admin and healthcheck answer.
    gunicorn
        .wait_for("a health check", Duration::from_secs(10), |lines| {
            lines.iter().any(|l| {
                l.contains("\"GET /healthz/ HTTP/1.1\" 200") && l.contains("rampart-health-check")
            })
        })
        .await;
    assert_eq!(
        admin_get(&proxy, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );
    assert_eq!(
        admin_get(&proxy, "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
    healthcheck(dir, &proxy);

    // The app never saw a static or media request, nor the refused ones.
    gunicorn
        .wait_for(
            "4 logins in the access log",
            Duration::from_secs(5),
            |lines| {
                lines
                    .iter()
                    .filter(|l| l.contains("\"POST /api/auth/login/ "))
                    .count()
                    >= 4
            },
        )
        .await;
    assert_eq!(gunicorn.count(&["\"POST /api/auth/login/ "]), 4);
    assert_eq!(gunicorn.count(&["/static/"]), 0);
    assert_eq!(gunicorn.count(&["/media/"]), 0);
    assert_eq!(
        gunicorn.count(&["dmin/ "]),
        1,
        "only the office reached /admin/"
    );

    // Metrics: every request above, by route.
    let scrape = scrape(&proxy).await;
    let expected = [
        ("static", "GET", "200", 2.0),
        ("static", "GET", "304", 1.0),
        ("media", "GET", "200", 1.0),
        ("media", "GET", "404", 1.0),
        ("login", "POST", "200", 4.0),
        ("login", "POST", "429", 1.0),
        ("api", "GET", "200", 1.0),
        ("api", "GET", "404", 1.0),
        ("admin", "GET", "403", 3.0),
        ("admin", "GET", "200", 1.0),
        ("app", "GET", "200", 3.0),
    ];
    for (route, method, status, count) in expected {
        assert_eq!(
            requests_total(&scrape, route, method, status),
            count,
            "rampart_requests_total{{route={route},method={method},status={status}}}"
        );
    }
    assert_eq!(
        metric(&scrape, "rampart_rate_limited_total", &[("route", "login")]),
        1.0
    );
    let server = format!("unix:{}", socket.display());
    assert_eq!(
        metric(
            &scrape,
            "rampart_upstream_server_healthy",
            &[("upstream", "django"), ("server", &server)]
        ),
        1.0
    );

    // The access log: one JSON line per request, static ones included (the app logs none).
    let access = proxy.process.stdout();
    assert!(
        access
            .iter()
            .any(|l| l.contains("\"path\":\"/static/css/site.css\"")
                && l.contains("\"route\":\"static\"")
                && l.contains("\"status\":304")),
        "access log:\n{}",
        access.join("\n")
    );
}

/// The value of cookie `name` in the answer's Set-Cookie fields.
fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .all("set-cookie")
        .into_iter()
        .find_map(|line| {
            let pair = line.split(';').next()?.trim().to_string();
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_string())
        })
}

/// The example's own Django project (examples/compose/django/app) run natively: migrate,
/// collectstatic and a user as its Dockerfile and an operator would, SQLite instead of
/// PostgreSQL, Gunicorn on a unix socket, rampart on the example's rampart.toml. A browser's
/// login: GET the form, POST it back with the csrftoken cookie, the hidden field, Origin and
/// Referer, and reach the logged-in page with the session cookie.
#[tokio::test(flavor = "multi_thread")]
async fn django_project_behind_rampart_static_media_api_and_a_csrf_login() {
    require_python_deps();
    let django = Command::new("python3")
        .args(["-c", "import django"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        django,
        "needs python3 with Django: `bash .ci/run` or `python3 -m pip install django`"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let app = format!("{EXAMPLES}/django/app");
    let staticfiles = dir.join("staticfiles");
    let media = dir.join("media");
    std::fs::create_dir_all(media.join("uploads")).unwrap();
    std::fs::write(media.join("uploads/report.txt"), "quarterly report\n").unwrap();
    const PASSWORD: &str = "correct-horse-battery-42";
    let env = [
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        (
            "DJANGO_SQLITE_PATH",
            dir.join("db.sqlite3").display().to_string(),
        ),
        ("DJANGO_STATIC_ROOT", staticfiles.display().to_string()),
        ("DJANGO_MEDIA_ROOT", media.display().to_string()),
        ("DJANGO_ALLOWED_HOSTS", "localhost".to_string()),
        ("DJANGO_SUPERUSER_PASSWORD", PASSWORD.to_string()),
    ];
    let manage = |args: &[&str]| {
        let out = Command::new("python3")
            .arg("manage.py")
            .args(args)
            .current_dir(&app)
            .env_remove("POSTGRES_HOST")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "manage.py {args:?}: {}",
            text(&out.stderr)
        );
    };
    manage(&["migrate", "--noinput"]);
    manage(&["collectstatic", "--noinput"]);
    manage(&[
        "createsuperuser",
        "--noinput",
        "--username",
        "alice",
        "--email",
        "alice@example.com",
    ]);

    // Gunicorn as in the example's Dockerfile: the project's wsgi module on a unix socket.
    let socket = dir.join("gunicorn.sock");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "gunicorn", "mysite.wsgi:application", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .args([
            "--umask",
            "0o007",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ])
        .args(["--chdir", &app])
        .env_remove("POSTGRES_HOST")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut gunicorn = AppServer::spawn("gunicorn", cmd);
    gunicorn
        .wait_for_line("Booting worker", Duration::from_secs(20))
        .await;

    let substitutions = django_substitutions(dir, &socket, &staticfiles, &media);
    let config = example_config("django", &substitutions);
    let proxy = start_rampart(dir, &config).await;
    let browser = client(dir, &proxy, true, DEFAULT_CLIENT);

    // Static (collected from the project), media (an upload), an API route.
    let got = send(browser.get(url(&proxy, "/static/css/site.css"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.text(),
        std::fs::read_to_string(format!("{app}/static/css/site.css")).unwrap()
    );
    assert_eq!(
        got.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let got = send(browser.get(url(&proxy, "/static/admin/css/base.css"))).await;
    assert_eq!(got.status, StatusCode::OK, "Django admin's collected CSS");
    let got = send(browser.get(url(&proxy, "/media/uploads/report.txt"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.text(), "quarterly report\n");
    let got = send(browser.get(url(&proxy, "/api/items/"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.text(),
        r#"{"items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}]}"#
    );
    assert_strict_headers(&got.headers, "django api");

    // The login form: Django's CSRF cookie (hardened by rampart) and the hidden field.
    let login_url = url(&proxy, "/api/auth/login/");
    let form = send(browser.get(&login_url)).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text());
    let csrf_cookie = set_cookie(&form, "csrftoken").expect("a csrftoken cookie");
    let cookie_line = form
        .headers
        .all("set-cookie")
        .into_iter()
        .find(|l| l.starts_with("csrftoken="))
        .unwrap();
    assert!(cookie_line.contains("; Secure"), "{cookie_line}");
    let page = form.text();
    let field = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = page.find(field).expect("the hidden CSRF field") + field.len();
    let token = &page[start..start + page[start..].find('"').unwrap()];
    let origin = format!("https://localhost:{}", proxy.https.port());
    let post = |body: String, cookie: String| {
        browser
            .post(&login_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .header("origin", &origin)
            .header("referer", &login_url)
            .body(body)
    };

    // Without the token: Django's CSRF check refuses it.
    let got = send(post(
        format!("username=alice&password={PASSWORD}"),
        format!("csrftoken={csrf_cookie}"),
    ))
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "no CSRF token");

    // As a browser posts it: accepted, redirected to the welcome page with a session.
    let got = send(post(
        format!("csrfmiddlewaretoken={token}&username=alice&password={PASSWORD}"),
        format!("csrftoken={csrf_cookie}"),
    ))
    .await;
    assert_eq!(got.status, StatusCode::FOUND, "{}", got.text());
    assert_eq!(got.header("location").as_deref(), Some("/welcome/"));
    assert_eq!(got.int("ratelimit-limit"), 4, "the login route's limit");
    let session = set_cookie(&got, "sessionid").expect("a session cookie");
    let got = send(
        browser
            .get(url(&proxy, "/welcome/"))
            .header("cookie", format!("sessionid={session}")),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.text().contains("Welcome, alice."), "{}", got.text());
    assert_strict_headers(&got.headers, "logged-in page");

    // Health checks reached the project over the socket; static and media never did.
    gunicorn
        .wait_for("a health check", Duration::from_secs(10), |lines| {
            lines
                .iter()
                .any(|l| l.contains("\"GET /healthz/ HTTP/1.1\" 200"))
        })
        .await;
    assert_eq!(gunicorn.count(&["/static/"]), 0);
    assert_eq!(gunicorn.count(&["/media/"]), 0);
}

// ---------------------------------------------------------------------------------------------
// FastAPI + Uvicorn (TCP, sidecar)
// ---------------------------------------------------------------------------------------------

/// examples/compose/fastapi: the example's own app under Uvicorn on 127.0.0.1, rampart beside it.
#[tokio::test(flavor = "multi_thread")]
async fn fastapi_example_with_uvicorn_on_tcp() {
    require_python_deps();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // As in examples/compose/fastapi/app/Dockerfile, on a port of the OS's choice.
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "uvicorn", "main:app", "--app-dir"])
        .arg(format!("{EXAMPLES}/fastapi/app"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]);
    let mut uvicorn = AppServer::spawn("uvicorn", cmd);
    let running = uvicorn
        .wait_for_line(
            "Uvicorn running on http://127.0.0.1:",
            Duration::from_secs(20),
        )
        .await;
    let port: u16 = running
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {running:?}"));

    let mut substitutions = common_substitutions(dir);
    substitutions.extend([
        (
            "admin = \"127.0.0.1:9090\"",
            "admin = \"127.0.0.1:0\"".into(),
        ),
        (
            "\"http://127.0.0.1:8000\"",
            format!("\"http://127.0.0.1:{port}\""),
        ),
    ]);
    let config = example_config("fastapi", &substitutions);
    let proxy = start_rampart(dir, &config).await;

    // The page, over HTTP/1.1 (gzip) and HTTP/2 (brotli): strict headers (Uvicorn's Server
    // header removed), the cookie hardened, the forwarding headers as the app saw them.
    for (h2, coding) in [(false, "gzip"), (true, "br")] {
        let client = client(dir, &proxy, h2, DEFAULT_CLIENT);
        let got = send(
            client
                .get(url(&proxy, "/"))
                .header(ACCEPT_ENCODING, coding)
                .header("x-forwarded-for", "198.51.100.23")
                .header("x-request-id", "fastapi-e2e"),
        )
        .await;
        assert_eq!(got.status, StatusCode::OK, "{coding}");
        assert_eq!(
            got.version,
            if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
        assert_strict_headers(&got.headers, "fastapi page");
        assert_eq!(got.header("content-encoding").as_deref(), Some(coding));
        assert_eq!(
            got.headers.all("set-cookie"),
            vec!["session=fastapi-session; Path=/; SameSite=lax; Secure".to_string()]
        );
        assert_eq!(got.header("x-request-id").as_deref(), Some("fastapi-e2e"));
        let page = got.decoded().await;
        assert!(
            got.body.len() * 3 < page.len(),
            "{coding}: {} of {}",
            got.body.len(),
            page.len()
        );
        let app_saw = seen(&page);
        assert_eq!(seen_str(&app_saw, "scheme"), "https");
        assert_eq!(seen_str(&app_saw, "x_forwarded_for"), "127.0.0.1");
        assert_eq!(seen_str(&app_saw, "x_real_ip"), "127.0.0.1");
        assert_eq!(seen_str(&app_saw, "x_forwarded_proto"), "https");
        assert_eq!(seen_str(&app_saw, "x_request_id"), "fastapi-e2e");
        assert_eq!(
            seen_str(&app_saw, "host"),
            format!("localhost:{}", proxy.https.port())
        );
    }

    // /api/: rate limited, JSON passed (small: not compressed).
    let api = client(dir, &proxy, false, API_CLIENT);
    let got = send(
        api.get(url(&proxy, "/api/items"))
            .header(ACCEPT_ENCODING, "gzip"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.text(),
        r#"{"items":[{"id":1,"name":"first"},{"id":2,"name":"second"}]}"#
    );
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.int("ratelimit-limit"), 20);
    assert_eq!(got.int("ratelimit-remaining"), 19);
    assert_strict_headers(&got.headers, "fastapi api");

    // Health: checks reached Uvicorn; admin answers; healthcheck exits 0.
    uvicorn
        .wait_for_line("\"GET /healthz HTTP/1.1\" 200", Duration::from_secs(10))
        .await;
    assert_eq!(
        admin_get(&proxy, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );
    healthcheck(dir, &proxy);

    let scrape = scrape(&proxy).await;
    assert_eq!(requests_total(&scrape, "app", "GET", "200"), 2.0);
    assert_eq!(requests_total(&scrape, "api", "GET", "200"), 1.0);
    let server = format!("http://127.0.0.1:{port}");
    assert_eq!(
        metric(
            &scrape,
            "rampart_upstream_server_healthy",
            &[("upstream", "app"), ("server", &server)]
        ),
        1.0
    );
}

/// HTTP/2 clients may send `cookie` as one field per crumb (RFC 9113 §8.2.3; Chromium does).
/// Gunicorn joins repeated fields with ",", which Django's cookie parser reads as one cookie:
/// the proxy joins them with "; " before forwarding over HTTP/1.1, as nginx does. hyper's
/// HTTP/2 client sends each appended `cookie` value as a field of its own.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_crumbs_of_http2_reach_gunicorn_as_one_cookie_header() {
    require_python_deps();
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("gunicorn.sock");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "gunicorn", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .args([
            "--workers",
            "1",
            "--chdir",
            E2E_APPS,
            "wsgi_app:application",
        ]);
    let mut gunicorn = AppServer::spawn("gunicorn", cmd);
    gunicorn
        .wait_for_line("Booting worker", Duration::from_secs(20))
        .await;
    let config = format!(
        "[upstreams.app]\nservers = [\"unix:{}\"]\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        socket.display()
    );
    let proxy = TestProxy::start(&config).await;
    for (client, version) in [
        (proxy.client_h2(), Version::HTTP_2),
        (proxy.client_h1(), Version::HTTP_11),
    ] {
        let resp = client
            .get(proxy.url("/cookies/"))
            .header("cookie", "theme=dark")
            .header("cookie", "sessionid=s3ss10n")
            .header("cookie", "csrftoken=t0k3n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{version:?}");
        assert_eq!(resp.version(), version);
        let answer: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(
            answer["raw"], "theme=dark; sessionid=s3ss10n; csrftoken=t0k3n",
            "{version:?}"
        );
        assert_eq!(answer["parsed"]["sessionid"], "s3ss10n", "{version:?}");
        assert_eq!(answer["parsed"]["csrftoken"], "t0k3n", "{version:?}");
        assert_eq!(answer["parsed"]["theme"], "dark", "{version:?}");
    }
}
