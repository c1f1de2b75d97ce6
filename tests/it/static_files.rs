//! The `static` route action: content types, validators and 304, ranges, HEAD, precompressed
//! siblings, caching headers, directory index, deny_extensions, security headers and the
//! route's header layer, over real TLS with reqwest (HTTP/1.1 and HTTP/2) and raw bytes.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::SystemTime;

use common::*;
use reqwest::{Method, Version};

const CSS: &str = "body { color: #333; margin: 0 }\n";
const JS: &str = "console.log('identity');\n";
const JS_BR: &[u8] = b"\x1b\x17\x00brotli-bytes-of-app-js";
const JS_GZ: &[u8] = b"\x1f\x8b\x08\x00gzip-bytes-of-app-js";
/// Larger than one read chunk, and not a multiple of it.
const BIG: usize = 1024 * 1024 + 12_345;
const SANDBOX: &str = "default-src 'none'; sandbox";

struct Site {
    proxy: TestProxy,
    dir: tempfile::TempDir,
}

impl Site {
    fn static_root(&self) -> std::path::PathBuf {
        self.dir.path().join("static")
    }

    fn get(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client.get(self.proxy.url(path))
    }
}

/// `/static/` (1-year cache, index.html), `/media/` (short cache, denied extensions, sandbox
/// CSP) and `/plain/` (the static tree again, no index, no cache_control).
async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("static");
    write(&s.join("app.css"), CSS);
    write(&s.join("app.js"), JS);
    write(&s.join("app.js.br"), JS_BR);
    write(&s.join("app.js.gz"), JS_GZ);
    write(&s.join("only-gz.js"), JS);
    write(&s.join("only-gz.js.gz"), JS_GZ);
    write(
        &s.join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    );
    write(&s.join("data.json"), "{\"a\": 1}");
    write(&s.join("blob.unknownext"), [0u8, 1, 2, 3]);
    write(&s.join("photo.jpg"), [0xffu8, 0xd8, 0xff, 0xe0]);
    write(&s.join("empty.txt"), "");
    write(&s.join("big.bin"), pattern(BIG));
    write(&s.join("docs/index.html"), "<h1>docs</h1>");
    write(&s.join("docs/page.txt"), "page");
    std::fs::create_dir_all(s.join("no-index-dir")).unwrap();
    write(&s.join(".env"), "SECRET_KEY=hidden");
    write(&s.join(".git/config"), "[core]");
    let m = dir.path().join("media");
    write(&m.join("notes.txt"), "notes");
    write(&m.join("shell.php"), "<?php system($_GET['c']);");
    write(&m.join("UPPER.PHP"), "<?php");
    write(&m.join("tool.py"), "import os");
    write(&m.join("backup.tar.gz"), "tar");
    write(&m.join("photo.jpg"), [0xffu8, 0xd8]);
    symlink(m.join("shell.php"), m.join("innocent.txt")).unwrap();

    let root = |p: &Path| format!("{:?}", p.display().to_string());
    let config = format!(
        "[[routes]]\nname = \"static\"\npath = \"/static/\"\n\
         static = {{ root = {s}, cache_control = \"public, max-age=31536000, immutable\", index = \"index.html\" }}\n\n\
         [[routes]]\nname = \"media\"\npath = \"/media/\"\n\
         static = {{ root = {m}, cache_control = \"public, max-age=3600\", deny_extensions = [\"php\", \".PY\", \"tar.gz\"] }}\n\
         headers = {{ content_security_policy = \"{SANDBOX}\" }}\n\n\
         [[routes]]\nname = \"plain\"\npath = \"/plain/\"\nstatic = {{ root = {s} }}\n",
        s = root(&s),
        m = root(&m),
    );
    let proxy = TestProxy::start(&config).await;
    Site { proxy, dir }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// `"<len hex>-<mtime ns hex><suffix>"`, as docs/configuration.md documents.
fn expected_etag(path: &Path, suffix: &str) -> String {
    let meta = std::fs::metadata(path).unwrap();
    let nanos = meta
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("\"{:x}-{nanos:x}{suffix}\"", meta.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_file_with_type_length_validators_and_cache_headers_h1_and_h2() {
    let site = site().await;
    let css = site.static_root().join("app.css");
    for (client, version) in [
        (site.proxy.client_h1(), Version::HTTP_11),
        (site.proxy.client_h2(), Version::HTTP_2),
    ] {
        let resp = site.get(&client, "/static/app.css").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), version);
        let h = resp.headers().clone();
        assert_eq!(
            h.one("content-type").as_deref(),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(h.one("content-length"), Some(CSS.len().to_string()));
        assert_eq!(h.one("etag"), Some(expected_etag(&css, "")));
        assert_eq!(
            h.one("last-modified"),
            Some(httpdate::fmt_http_date(mtime(&css)))
        );
        assert_eq!(
            h.one("cache-control").as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(h.all("vary"), vec!["accept-encoding".to_string()]);
        assert_eq!(h.one("accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(h.one("content-encoding"), None);
        assert_strict_headers(&h, "static file");
        assert!(is_generated_request_id(&h.one("x-request-id").unwrap()));
        assert_eq!(resp.text().await.unwrap(), CSS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_follows_the_extension() {
    let site = site().await;
    let client = site.proxy.client_h2();
    for (path, expected) in [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/static/data.json", "application/json; charset=utf-8"),
        ("/static/photo.jpg", "image/jpeg"),
        ("/static/blob.unknownext", "application/octet-stream"),
        ("/static/docs/page.txt", "text/plain; charset=utf-8"),
    ] {
        let resp = site.get(&client, path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some(expected),
            "{path}"
        );
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_headers_of_get_and_no_body() {
    let site = site().await;
    // Raw HTTP/1.1: nothing may follow the head on the wire.
    let raw = site
        .proxy
        .raw_h1(b"HEAD /static/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let head_end = find(&raw, b"\r\n\r\n").expect("a response head") + 4;
    assert_eq!(head_end, raw.len(), "HEAD sent body bytes");
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {BIG}\r\n")),
        "{head}"
    );
    assert!(
        head.contains("\r\ncontent-type: application/octet-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\netag: \""), "{head}");

    let resp = site
        .proxy
        .client_h2()
        .head(site.proxy.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), Some(CSS.len().to_string()));
    assert_eq!(
        header(&resp, "etag"),
        Some(expected_etag(&site.static_root().join("app.css"), ""))
    );
    assert_eq!(resp.bytes().await.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_modified_by_etag_or_date_and_if_none_match_wins() {
    let site = site().await;
    let css = site.static_root().join("app.css");
    let etag = expected_etag(&css, "");
    let last_modified = httpdate::fmt_http_date(mtime(&css));
    let earlier = httpdate::fmt_http_date(mtime(&css) - std::time::Duration::from_secs(10));
    let client = site.proxy.client_h2();
    let weak = format!("W/{etag}");
    let listed = format!("\"other\", {etag}");
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("if-none-match", &etag)], 304),
        (vec![("if-none-match", &weak)], 304),
        (vec![("if-none-match", &listed)], 304),
        (vec![("if-none-match", "*")], 304),
        (vec![("if-none-match", "\"stale\"")], 200),
        (vec![("if-modified-since", &last_modified)], 304),
        (vec![("if-modified-since", &earlier)], 200),
        (vec![("if-modified-since", "not a date")], 200),
        // If-None-Match is evaluated and If-Modified-Since ignored, both ways.
        (
            vec![
                ("if-none-match", "\"stale\""),
                ("if-modified-since", &last_modified),
            ],
            200,
        ),
        (
            vec![("if-none-match", &etag), ("if-modified-since", &earlier)],
            304,
        ),
    ];
    for (headers, status) in cases {
        let mut request = site.get(&client, "/static/app.css");
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), status, "{headers:?}");
        let h = resp.headers().clone();
        assert_eq!(h.one("etag"), Some(etag.clone()), "{headers:?}");
        assert_eq!(
            h.all("vary"),
            vec!["accept-encoding".to_string()],
            "{headers:?}"
        );
        assert_eq!(
            h.one("cache-control").as_deref(),
            Some("public, max-age=31536000, immutable"),
            "{headers:?}"
        );
        assert_strict_headers(&h, "conditional");
        let body = resp.bytes().await.unwrap();
        if status == 304 {
            assert!(body.is_empty(), "304 with a body");
            assert_eq!(h.one("last-modified"), Some(last_modified.clone()));
        } else {
            assert_eq!(body, CSS.as_bytes());
        }
    }

    // HTTP/1.1 on the wire: a 304 has no body and no Content-Length of a body.
    let request = format!(
        "GET /static/app.css HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    let raw = site.proxy.raw_h1(request.as_bytes()).await;
    let resp = one_response(&raw);
    assert_eq!(resp.status, 304);
    assert!(resp.body.is_empty());
    assert_eq!(find(&raw, b"\r\n\r\n").unwrap() + 4, raw.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_if_match_or_if_unmodified_since_is_412() {
    let site = site().await;
    let css = site.static_root().join("app.css");
    let etag = expected_etag(&css, "");
    let earlier = httpdate::fmt_http_date(mtime(&css) - std::time::Duration::from_secs(10));
    let client = site.proxy.client_h1();
    for (name, value, status) in [
        ("if-match", etag.as_str(), 200),
        ("if-match", "*", 200),
        ("if-match", "\"stale\"", 412),
        ("if-unmodified-since", earlier.as_str(), 412),
    ] {
        let resp = site
            .get(&client, "/static/app.css")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{name}: {value}");
        if status == 412 {
            let h = resp.headers().clone();
            let body = resp.text().await.unwrap();
            assert_proxy_error(&h, 412, &body, "412 Precondition Failed\n", name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_range_is_206_with_content_range() {
    let site = site().await;
    let big = pattern(BIG);
    for client in [site.proxy.client_h1(), site.proxy.client_h2()] {
        for (range, start, end) in [
            ("bytes=0-9", 0, 9),
            ("bytes=-5", BIG - 5, BIG - 1),
            ("bytes=1000-", 1000, BIG - 1),
            // Spans several read chunks and ends inside one.
            ("bytes=100000-400000", 100_000, 400_000),
            ("bytes=0-99999999", 0, BIG - 1),
        ] {
            let resp = site
                .get(&client, "/static/big.bin")
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 206, "{range}");
            assert_eq!(
                header(&resp, "content-range"),
                Some(format!("bytes {start}-{end}/{BIG}")),
                "{range}"
            );
            assert_eq!(
                header(&resp, "content-length"),
                Some((end - start + 1).to_string())
            );
            assert_eq!(header(&resp, "accept-ranges").as_deref(), Some("bytes"));
            assert_eq!(header(&resp, "vary").as_deref(), Some("accept-encoding"));
            let body = resp.bytes().await.unwrap();
            assert!(body[..] == big[start..=end], "{range}: wrong bytes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_ranges_are_416_and_several_ranges_the_whole_file() {
    let site = site().await;
    let client = site.proxy.client_h1();
    let len = CSS.len();
    let many = format!("bytes={}", vec!["0-0"; 40].join(","));
    let cases = [
        (format!("bytes={len}-"), 416),
        ("bytes=-0".to_string(), 416),
        (format!("bytes={}-{}, {}-", len + 5, len + 9, len * 2), 416),
        ("bytes=0-1,5-6".to_string(), 200),
        (format!("bytes=0-1,{len}-"), 200),
        (many, 200),
        ("bytes=5-1".to_string(), 200),
        ("items=0-1".to_string(), 200),
    ];
    for (range, status) in cases {
        let resp = site
            .get(&client, "/static/app.css")
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{range}");
        let h = resp.headers().clone();
        let body = resp.text().await.unwrap();
        if status == 416 {
            assert_eq!(h.one("content-range"), Some(format!("bytes */{len}")));
            assert_proxy_error(&h, 416, &body, "416 Range Not Satisfiable\n", &range);
        } else {
            assert_eq!(h.one("content-range"), None, "{range}");
            assert_eq!(body, CSS, "{range}");
        }
    }
    // An empty file has no satisfiable range.
    let resp = site
        .get(&client, "/static/empty.txt")
        .header("range", "bytes=0-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "content-range").as_deref(), Some("bytes */0"));
    let resp = site.get(&client, "/static/empty.txt").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_applies_the_range_only_to_the_same_version() {
    let site = site().await;
    let css = site.static_root().join("app.css");
    let etag = expected_etag(&css, "");
    let last_modified = httpdate::fmt_http_date(mtime(&css));
    let client = site.proxy.client_h2();
    for (if_range, status) in [
        (etag.as_str(), 206),
        (last_modified.as_str(), 206),
        ("\"stale\"", 200),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ] {
        let resp = site
            .get(&client, "/static/app.css")
            .header("range", "bytes=0-3")
            .header("if-range", if_range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{if_range}");
        let body = resp.text().await.unwrap();
        let expected = if status == 206 { &CSS[..4] } else { CSS };
        assert_eq!(body, expected, "{if_range}");
    }
    // Range is for GET only: HEAD answers 200 with the whole length.
    let resp = client
        .head(site.proxy.url("/static/app.css"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), Some(CSS.len().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_streams_whole_and_exact_h1_and_h2() {
    let site = site().await;
    let big = pattern(BIG);
    for client in [site.proxy.client_h1(), site.proxy.client_h2()] {
        let resp = site.get(&client, "/static/big.bin").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length"), Some(BIG.to_string()));
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.len(), BIG);
        assert!(body[..] == big[..], "streamed bytes differ from the file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_siblings_follow_accept_encoding() {
    let site = site().await;
    let js = site.static_root().join("app.js");
    let br_etag = expected_etag(&site.static_root().join("app.js.br"), "-br");
    let gz_etag = expected_etag(&site.static_root().join("app.js.gz"), "-gz");
    let id_etag = expected_etag(&js, "");
    assert!(br_etag != gz_etag && gz_etag != id_etag && br_etag != id_etag);
    for client in [site.proxy.client_h1(), site.proxy.client_h2()] {
        for (accept, encoding, body, etag) in [
            (Some("gzip, deflate, br"), Some("br"), JS_BR, &br_etag),
            (Some("br"), Some("br"), JS_BR, &br_etag),
            (Some("gzip"), Some("gzip"), JS_GZ, &gz_etag),
            (Some("br;q=0, gzip"), Some("gzip"), JS_GZ, &gz_etag),
            (Some("gzip;q=1.0, br;q=0.5"), Some("gzip"), JS_GZ, &gz_etag),
            (Some("*"), Some("br"), JS_BR, &br_etag),
            (Some("*;q=0"), None, JS.as_bytes(), &id_etag),
            (Some("br;q=0, gzip;q=0"), None, JS.as_bytes(), &id_etag),
            (Some("identity"), None, JS.as_bytes(), &id_etag),
            (None, None, JS.as_bytes(), &id_etag),
        ] {
            let mut request = site.get(&client, "/static/app.js");
            if let Some(accept) = accept {
                request = request.header("accept-encoding", accept);
            }
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{accept:?}");
            let h = resp.headers().clone();
            assert_eq!(h.one("content-encoding").as_deref(), encoding, "{accept:?}");
            assert_eq!(
                h.one("content-type").as_deref(),
                Some("text/javascript; charset=utf-8"),
                "{accept:?}: the original's type"
            );
            assert_eq!(h.all("vary"), vec!["accept-encoding".to_string()]);
            assert_eq!(h.one("etag").as_ref(), Some(etag), "{accept:?}");
            assert_eq!(h.one("content-length"), Some(body.len().to_string()));
            assert_eq!(&resp.bytes().await.unwrap()[..], body, "{accept:?}");
        }
    }

    let client = site.proxy.client_h1();
    // Only a .gz exists: br is not invented, gzip is used.
    let resp = site
        .get(&client, "/static/only-gz.js")
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-encoding").as_deref(), Some("gzip"));
    // No sibling at all: the file itself, still with Vary.
    let resp = site
        .get(&client, "/static/app.css")
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-encoding"), None);
    assert_eq!(header(&resp, "vary").as_deref(), Some("accept-encoding"));
    assert_eq!(resp.text().await.unwrap(), CSS);

    // A variant is sent whole, whatever the Range; and revalidates by its own ETag.
    let resp = site
        .get(&client, "/static/app.js")
        .header("accept-encoding", "br")
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-range"), None);
    assert_eq!(&resp.bytes().await.unwrap()[..], JS_BR);
    for (etag, status) in [(&br_etag, 304), (&id_etag, 200)] {
        let resp = site
            .get(&client, "/static/app.js")
            .header("accept-encoding", "br")
            .header("if-none-match", etag.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{etag}");
        assert_eq!(header(&resp, "vary").as_deref(), Some("accept-encoding"));
    }
    // The identity's range still works when the client accepts no encoding.
    let resp = site
        .get(&client, "/static/app.js")
        .header("range", "bytes=0-6")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.text().await.unwrap(), &JS[..7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_serve_their_index_and_are_never_listed() {
    let site = site().await;
    let client = site.proxy.client_h1();
    let resp = site.get(&client, "/static/docs/").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&resp, "etag"),
        Some(expected_etag(
            &site.static_root().join("docs/index.html"),
            ""
        ))
    );
    assert_eq!(resp.text().await.unwrap(), "<h1>docs</h1>");

    // Without the slash: 301 to it (relative links in the index need it), query kept.
    for (path, location) in [
        ("/static/docs", "/static/docs/"),
        ("/static/docs?v=1&x=%20", "/static/docs/?v=1&x=%20"),
    ] {
        let resp = site.get(&client, path).send().await.unwrap();
        assert_eq!(resp.status(), 301, "{path}");
        assert_eq!(header(&resp, "location").as_deref(), Some(location));
        assert_strict_headers(resp.headers(), "301");
    }

    // No index file, or no `index` configured: 404, never a listing.
    for path in [
        "/static/",
        "/static/no-index-dir/",
        "/static/no-index-dir",
        "/plain/docs/",
        "/plain/docs",
        "/plain/",
    ] {
        let resp = site.get(&client, path).send().await.unwrap();
        let h = resp.headers().clone();
        let body = resp.text().await.unwrap();
        assert_proxy_error(&h, 404, &body, "404 Not Found\n", path);
    }
    // `/plain/` has no cache_control: none is sent.
    let resp = site.get(&client, "/plain/app.css").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "cache-control"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_route_denies_extensions_and_adds_its_sandbox_csp() {
    let site = site().await;
    let client = site.proxy.client_h2();
    let resp = site.get(&client, "/media/notes.txt").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-security-policy").as_deref(),
        Some(SANDBOX)
    );
    assert_eq!(
        header(&resp, "cache-control").as_deref(),
        Some("public, max-age=3600")
    );
    assert_eq!(
        header(&resp, "strict-transport-security").as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(resp.text().await.unwrap(), "notes");

    for path in [
        "/media/shell.php",
        "/media/UPPER.PHP",
        "/media/tool.py",
        "/media/backup.tar.gz",
        // A link with a harmless name to a denied file.
        "/media/innocent.txt",
    ] {
        let resp = site.get(&client, path).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let h = resp.headers().clone();
        assert_eq!(
            h.one("content-security-policy").as_deref(),
            Some(SANDBOX),
            "{path}: the route's headers are on its errors too"
        );
        assert_eq!(h.one("x-content-type-options").as_deref(), Some("nosniff"));
        assert!(h.one("x-request-id").is_some());
        assert_eq!(resp.text().await.unwrap(), "404 Not Found\n", "{path}");
    }
    let resp = site.get(&client, "/media/photo.jpg").send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_and_head_are_served() {
    let site = site().await;
    let client = site.proxy.client_h1();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let resp = client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                site.proxy.url("/static/app.css"),
            )
            .send()
            .await
            .unwrap();
        let h = resp.headers().clone();
        assert_eq!(h.one("allow").as_deref(), Some("GET, HEAD"), "{method}");
        let body = resp.text().await.unwrap();
        assert_proxy_error(&h, 405, &body, "405 Method Not Allowed\n", method);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_hidden_files_are_404_with_security_headers() {
    let site = site().await;
    let client = site.proxy.client_h1();
    for path in [
        "/static/missing.css",
        "/static/app.css/",
        "/static/app.css/x",
        "/static/.env",
        "/static/.git/config",
        "/static/docs/.hidden",
    ] {
        let resp = site.get(&client, path).send().await.unwrap();
        let h = resp.headers().clone();
        let body = resp.text().await.unwrap();
        assert_proxy_error(&h, 404, &body, "404 Not Found\n", path);
        assert!(!body.contains("SECRET_KEY"));
    }
}

/// `rampart check` errors for a static route name the file, line and key.
#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.crt");
    let key = dir.path().join("c.key");
    rampart::certgen::write_self_signed(&["localhost".into()], &cert, &key).unwrap();
    let file = dir.path().join("file.txt");
    write(&file, "x");
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {}\nkey = {}\n\n\
         [[routes]]\npath = \"/a/\"\nstatic = {{ root = {} }}\n\n\
         [[routes]]\npath = \"/b/\"\nstatic = {{ root = {} }}\n\n\
         [[routes]]\npath = \"/c\"\nstatic = {{ root = {}, index = \"../index.html\", deny_extensions = [\"\"] }}\n",
        q(&cert),
        q(&key),
        q(&dir.path().join("missing")),
        q(&file),
        q(dir.path()),
    );
    let errors = rampart::config::load_str(&text, "t.toml")
        .expect_err("refused")
        .to_string();
    let expect = [
        "t.toml:9:19: routes[0].static.root: cannot read",
        "/missing: no such file",
        "t.toml:13:19: routes[1].static.root:",
        "/file.txt is not a directory",
        "t.toml:16:8: routes[2].path: a static route's path ends with '/' (\"/c/\")",
        "t.toml:15:1: routes[2].static.index: `../index.html` is not a plain file name",
        "t.toml:15:1: routes[2].static.deny_extensions: `` is not a file extension",
    ];
    for part in expect {
        assert!(errors.contains(part), "missing {part:?} in:\n{errors}");
    }

    // A valid static route loads.
    let ok = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {}\nkey = {}\n\n\
         [[routes]]\npath = \"/s/\"\nstatic = {{ root = {}, index = \"index.html\", deny_extensions = [\".PHP\"] }}\n",
        q(&cert),
        q(&key),
        q(dir.path()),
    );
    rampart::config::load_str(&ok, "ok.toml").unwrap();
}

/// The ACME http-01 answer: a dot in the route's own prefix is not a hidden file below root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_challenge_route_under_well_known_serves_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("Xy-z_09token"), "Xy-z_09token.thumbprint");
    let config = format!(
        "[[routes]]\nname = \"acme\"\npath = \"/.well-known/acme-challenge/\"\nstatic = {{ root = {:?} }}\n",
        dir.path().display().to_string()
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();
    let url = proxy.url("/.well-known/acme-challenge/Xy-z_09token");
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "Xy-z_09token.thumbprint");
}

/// Small files are answered from memory once their files have settled (changed more than a
/// second ago), while every path the answer depends on still finds the same, unchanged file:
/// each kind of change is seen by the very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_small_file_follows_every_change_of_its_file() {
    let site = site().await;
    let root = site.static_root();
    let css = root.join("app.css");
    // Past the cache's settle time, so the first answers below are kept.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let client = site.proxy.client_h1();
    let get = |accept: Option<&'static str>| {
        let mut request = site.get(&client, "/static/app.css");
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request
    };

    // The same answer from the lookup and from memory, whole, as HEAD, as a range, as a 304.
    let first = get(None).send().await.unwrap();
    let first_headers = first.headers().clone();
    assert_eq!(first.text().await.unwrap(), CSS);
    for _ in 0..2 {
        let again = get(None).send().await.unwrap();
        assert_eq!(again.status(), 200);
        for name in [
            "content-type",
            "content-length",
            "etag",
            "last-modified",
            "cache-control",
        ] {
            assert_eq!(again.headers().one(name), first_headers.one(name), "{name}");
        }
        assert_strict_headers(again.headers(), "cached static file");
        assert_eq!(again.text().await.unwrap(), CSS);
    }
    let head = site
        .proxy
        .client_h1()
        .head(site.proxy.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers().one("content-length"),
        Some(CSS.len().to_string())
    );
    assert_eq!(head.text().await.unwrap(), "");
    let part = get(None).header("range", "bytes=5-9").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers().one("content-range"),
        Some(format!("bytes 5-9/{}", CSS.len()))
    );
    assert_eq!(part.text().await.unwrap(), &CSS[5..10]);
    let etag = first_headers.one("etag").unwrap();
    let not_modified = get(None)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    // A preferred precompressed sibling appears: served at once.
    assert_eq!(
        get(Some("br")).send().await.unwrap().text().await.unwrap(),
        CSS
    );
    assert_eq!(
        get(Some("br")).send().await.unwrap().text().await.unwrap(),
        CSS
    );
    write(&root.join("app.css.br"), JS_BR);
    let resp = get(Some("br")).send().await.unwrap();
    assert_eq!(
        resp.headers().one("content-encoding").as_deref(),
        Some("br")
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), JS_BR);

    // Rewritten in place with the same length (same inode; the times move).
    let same_length = CSS.replace("333", "444");
    write(&css, &same_length);
    assert_eq!(
        get(None).send().await.unwrap().text().await.unwrap(),
        same_length
    );

    // Replaced by a rename (a deploy's atomic write), once the new file settled and was cached.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        get(None).send().await.unwrap().text().await.unwrap(),
        same_length
    );
    assert_eq!(
        get(None).send().await.unwrap().text().await.unwrap(),
        same_length
    );
    let renamed = CSS.replace("333", "555");
    write(&root.join("app.css.tmp"), &renamed);
    std::fs::rename(root.join("app.css.tmp"), &css).unwrap();
    assert_eq!(
        get(None).send().await.unwrap().text().await.unwrap(),
        renamed
    );

    // Swapped for a link to a hidden file inside the root, then to a file outside it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        get(None).send().await.unwrap().text().await.unwrap(),
        renamed
    );
    assert_eq!(
        get(None).send().await.unwrap().text().await.unwrap(),
        renamed
    );
    std::fs::remove_file(&css).unwrap();
    symlink(root.join(".env"), &css).unwrap();
    let resp = get(None).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(!resp.text().await.unwrap().contains("SECRET_KEY"));
    let outside = site.dir.path().join("outside.css");
    write(&outside, CSS.replace("333", "666"));
    std::fs::remove_file(&css).unwrap();
    symlink(&outside, &css).unwrap();
    assert_eq!(get(None).send().await.unwrap().status(), 404);

    // Removed.
    std::fs::remove_file(&css).unwrap();
    assert_eq!(get(None).send().await.unwrap().status(), 404);
}
