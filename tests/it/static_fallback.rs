//! A static route's `fallback` (a single-page app's shell, nginx's `try_files $uri $uri/
//! /index.html`), over real TLS with reqwest (HTTP/1.1 and HTTP/2) and raw bytes: deep links
//! get the shell with `no-cache`, existing files are served as themselves, a missing path with
//! an extension stays 404, and escapes, hidden, denied and out-of-root paths keep their 400/404.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use reqwest::Version;

const SHELL: &str =
    "<!doctype html><div id=\"app\"></div><script src=\"/assets/app.3f9c.js\"></script>\n";
const APP_JS: &str = "console.log('app');\n";
const SECRET: &str = "TOP-SECRET-5d21e0";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Spa {
    proxy: TestProxy,
    dir: tempfile::TempDir,
}

impl Spa {
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("dist")
    }
}

/// A built front end in `dist/` served at `/`, with the shell as fallback; a secret next to
/// the root, links inside it leading out and to a hidden file.
async fn spa() -> Spa {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dist");
    write(&root.join("index.html"), SHELL);
    write(&root.join("assets/app.3f9c.js"), APP_JS);
    write(&root.join("robots.txt"), "User-agent: *\n");
    write(&root.join("docs/index.html"), "<h1>docs</h1>");
    write(&root.join("upload.php"), "<?php system($_GET['c']);");
    write(&root.join(".env"), SECRET);
    write(&dir.path().join("secret"), SECRET);
    symlink(dir.path().join("secret"), root.join("out-link")).unwrap();
    symlink(root.join(".env"), root.join("env-link")).unwrap();
    let config = format!(
        "[[routes]]\nname = \"app\"\npath = \"/\"\n\
         static = {{ root = {:?}, index = \"index.html\", fallback = \"index.html\", cache_control = \"{IMMUTABLE}\", deny_extensions = [\"php\"] }}\n",
        root.display().to_string()
    );
    let proxy = TestProxy::start(&config).await;
    Spa { proxy, dir }
}

fn etag_of(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    let nanos = meta
        .modified()
        .unwrap()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("\"{:x}-{nanos:x}\"", meta.len())
}

fn clients(proxy: &TestProxy) -> [(reqwest::Client, Version); 2] {
    [
        (proxy.client_h1(), Version::HTTP_11),
        (proxy.client_h2(), Version::HTTP_2),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_links_get_the_shell_with_no_cache_h1_and_h2() {
    let spa = spa().await;
    let shell_etag = etag_of(&spa.root().join("index.html"));
    for (client, version) in clients(&spa.proxy) {
        for path in [
            "/dashboard/settings",
            "/dashboard/settings/",
            "/users/42?tab=profile",
            "/a/b/c/d/e",
            "/%E2%9C%93",
        ] {
            let resp = client.get(spa.proxy.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path} over {version:?}");
            assert_eq!(resp.version(), version);
            let h = resp.headers().clone();
            assert_eq!(
                h.one("content-type").as_deref(),
                Some("text/html; charset=utf-8"),
                "{path}"
            );
            // The shell is revalidated on every load, whatever the route's cache_control.
            assert_eq!(
                h.all("cache-control"),
                vec!["no-cache".to_string()],
                "{path}"
            );
            assert_eq!(h.one("etag"), Some(shell_etag.clone()), "{path}");
            assert_strict_headers(&h, path);
            assert_eq!(resp.text().await.unwrap(), SHELL, "{path}");
        }
        // Revalidation of the shell at a deep link: 304, still no-cache.
        let resp = client
            .get(spa.proxy.url("/dashboard/settings"))
            .header("if-none-match", &shell_etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304);
        assert_eq!(
            resp.headers().one("cache-control").as_deref(),
            Some("no-cache")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_files_are_served_as_themselves_h1_and_h2() {
    let spa = spa().await;
    for (client, _) in clients(&spa.proxy) {
        let resp = client
            .get(spa.proxy.url("/assets/app.3f9c.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().one("content-type").as_deref(),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            resp.headers().one("cache-control").as_deref(),
            Some(IMMUTABLE)
        );
        assert_eq!(resp.text().await.unwrap(), APP_JS);

        let resp = client
            .get(spa.proxy.url("/robots.txt"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "User-agent: *\n");

        // The shell at its own URLs is a file like any other: the route's cache_control.
        for path in ["/", "/index.html"] {
            let resp = client.get(spa.proxy.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            assert_eq!(
                resp.headers().one("cache-control").as_deref(),
                Some(IMMUTABLE),
                "{path}"
            );
            assert_eq!(resp.text().await.unwrap(), SHELL, "{path}");
        }

        // A directory with its own index keeps the index, and the slash redirect.
        let resp = client.get(spa.proxy.url("/docs/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "<h1>docs</h1>");
        let resp = client.get(spa.proxy.url("/docs")).send().await.unwrap();
        assert_eq!(resp.status(), 301);
        assert_eq!(resp.headers().one("location").as_deref(), Some("/docs/"));
    }
}

/// The chosen rule: a missing path whose last segment has an extension is a missing asset
/// (a stale build's chunk, a typo), answered 404, never HTML with 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_asset_is_404_not_the_shell_h1_and_h2() {
    let spa = spa().await;
    for (client, version) in clients(&spa.proxy) {
        for path in [
            "/app.js",
            "/assets/app.0000.js",
            "/assets/app.3f9c.css",
            "/favicon.ico",
            "/assets/app.3f9c.js/",
            "/users/john.doe",
            "/v1.2/",
        ] {
            let resp = client.get(spa.proxy.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 404, "{path} over {version:?}");
            let body = resp.text().await.unwrap();
            assert!(!body.contains("id=\"app\""), "{path}: the shell was sent");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_a_deep_link_has_the_shell_headers_and_no_body() {
    let spa = spa().await;
    let raw = spa
        .proxy
        .raw_h1(
            b"HEAD /dashboard/settings HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
    let head_end = find(&raw, b"\r\n\r\n").expect("a response head") + 4;
    assert_eq!(head_end, raw.len(), "HEAD sent body bytes");
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}\r\n", SHELL.len())),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache\r\n"), "{head}");

    let client = spa.proxy.client_h2();
    let resp = client
        .head(spa.proxy.url("/dashboard/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().one("content-length"),
        Some(SHELL.len().to_string())
    );
    assert_eq!(resp.bytes().await.unwrap().len(), 0);

    // Other methods are still refused, not answered with the shell.
    let resp = client
        .post(spa.proxy.url("/dashboard/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

/// Escapes, hidden and denied names, and links leading out of the root or to a hidden file,
/// keep their status: the fallback answers only paths that name nothing.
const REFUSED: &[(&str, u16)] = &[
    ("/../secret", 400),
    ("/a/../../secret", 400),
    ("/dashboard/../secret", 400),
    ("/%2e%2e/secret", 400),
    ("/dashboard/%2e%2e%2fsecret", 400),
    ("/dashboard%2fsettings", 400),
    ("/dashboard\\..\\secret", 400),
    ("/dashboard/%00", 400),
    ("/%c0%ae%c0%ae/secret", 400),
    ("/.env", 404),
    ("/.git/config", 404),
    ("/dashboard/.hidden", 404),
    ("/upload.php", 404),
    ("/missing.php", 404),
    ("/out-link", 404),
    ("/env-link", 404),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_hidden_denied_and_outside_paths_keep_their_status_h1_and_h2() {
    let spa = spa().await;
    for (path, status) in REFUSED {
        let raw = spa.proxy.raw_h1(&get_close(path, "localhost")).await;
        let resp = one_response(&raw);
        assert_eq!(resp.status, *status, "h1 {path}");
        assert!(find(&raw, SECRET.as_bytes()).is_none(), "h1 {path} leaked");
        assert!(find(&raw, b"id=\"app\"").is_none(), "h1 {path}: the shell");
    }
    for (path, status) in REFUSED {
        // HTTP/2 cannot carry a raw backslash or a NUL escape any differently; the :path is
        // sent exactly as written.
        if path.contains('\\') {
            continue;
        }
        let (got, body) = h2_get_raw_path(&spa.proxy, path).await;
        assert_eq!(got, *status, "h2 {path}");
        assert!(!body.contains(SECRET), "h2 {path} leaked");
        assert!(!body.contains("id=\"app\""), "h2 {path}: the shell");
    }
    spa.proxy.assert_still_serves_at("/dashboard").await;
}

/// A fallback that does not exist (or is not a plain file in the root) is refused at load,
/// with file:line:col and key, so a typo is not found by users reloading a deep link.
#[test]
fn a_bad_fallback_is_a_config_error_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dist");
    write(&root.join("index.html"), SHELL);
    write(&root.join("app/index.html"), SHELL);
    write(&root.join("shell.php"), "<?php");
    write(&dir.path().join("outside.html"), SECRET);
    symlink(dir.path().join("outside.html"), root.join("out.html")).unwrap();
    let route = |name: &str, fallback: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}/\"\n\
             static = {{ root = {:?}, deny_extensions = [\"php\"], fallback = \"{fallback}\" }}\n\n",
            root.display().to_string()
        )
    };
    let cert = dir.path().join("c.crt");
    let key = dir.path().join("c.key");
    rampart::certgen::write_self_signed(&["localhost".into()], &cert, &key).unwrap();
    let head = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let text = [
        head.clone(),
        route("a", "missing.html"),
        route("b", "../outside.html"),
        route("c", "/index.html"),
        route("d", "app"),
        route("e", "shell.php"),
        route("f", "out.html"),
        route("g", ".env"),
    ]
    .concat();
    let errors = rampart::config::load_str(&text, "t.toml")
        .expect_err("refused")
        .to_string();
    let column = |line: usize| {
        let fallback = text
            .lines()
            .nth(line - 1)
            .unwrap()
            .find("fallback")
            .unwrap();
        // The value's opening quote: `fallback = "`.
        fallback + "fallback = ".len() + 1
    };
    let expect = [
        format!("t.toml:10:{}: routes[0].static.fallback: cannot read", column(10)),
        "/dist/missing.html: no such file".to_string(),
        format!("t.toml:15:{}: routes[1].static.fallback: `../outside.html` is not a file path relative to the root", column(15)),
        format!("t.toml:20:{}: routes[2].static.fallback: `/index.html` is not a file path", column(20)),
        format!("t.toml:25:{}: routes[3].static.fallback:", column(25)),
        "/dist/app is not a regular file".to_string(),
        format!("t.toml:30:{}: routes[4].static.fallback: `shell.php` has a denied extension", column(30)),
        format!("t.toml:35:{}: routes[5].static.fallback:", column(35)),
        "/dist/out.html leads outside the root".to_string(),
        format!("t.toml:40:{}: routes[6].static.fallback: `.env` is not a file path", column(40)),
    ];
    for part in &expect {
        assert!(
            errors.contains(part.as_str()),
            "missing {part:?} in:\n{errors}"
        );
    }
    assert_eq!(errors.lines().count(), 7, "{errors}");

    // A shell in a subdirectory is fine.
    rampart::config::load_str(&(head + &route("a", "app/index.html")), "ok.toml").unwrap();
}
