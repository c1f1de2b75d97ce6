//! Path escape from a static root: every attempt is sent as raw bytes over TLS (reqwest would
//! normalize the path first), must be refused with its exact status, and the secret file next
//! to the root must never appear in any response. Then a legitimate file is still served.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;

const SECRET: &str = "TOP-SECRET-7f3a9c";
const OK: &str = "public file";

struct Tree {
    proxy: TestProxy,
    dir: tempfile::TempDir,
}

/// `tmp/secret.txt` and `tmp/outside/secret.txt` hold the secret; `tmp/root` is served at
/// `/static/`, with links inside it pointing in and out.
async fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let root = tmp.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(tmp.join("outside")).unwrap();
    std::fs::write(tmp.join("secret.txt"), SECRET).unwrap();
    std::fs::write(tmp.join("outside/secret.txt"), SECRET).unwrap();
    std::fs::write(tmp.join("outside/index.html"), SECRET).unwrap();
    std::fs::write(root.join("ok.txt"), OK).unwrap();
    std::fs::write(root.join("sub/inner.txt"), OK).unwrap();
    std::fs::write(root.join(".env"), SECRET).unwrap();
    // Links: to a file outside, to a directory outside, to a hidden file inside, and one
    // inside to inside (allowed).
    symlink(tmp.join("secret.txt"), root.join("out-link.txt")).unwrap();
    symlink("../secret.txt", root.join("relative-out.txt")).unwrap();
    symlink(tmp.join("outside"), root.join("outdir")).unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink(root.join(".env"), root.join("env-link")).unwrap();
    symlink(root.join("ok.txt"), root.join("inside-link.txt")).unwrap();
    symlink("sub", root.join("sub-link")).unwrap();
    // A precompressed sibling that leads out: never used.
    symlink(tmp.join("secret.txt"), root.join("ok.txt.br")).unwrap();

    let config = format!(
        "[[routes]]\nname = \"static\"\npath = \"/static/\"\n\
         static = {{ root = {:?}, index = \"index.html\" }}\n",
        root.display().to_string()
    );
    let proxy = TestProxy::start(&config).await;
    Tree { proxy, dir }
}

async fn attempt(proxy: &TestProxy, target: &[u8], extra_headers: &str) -> (Vec<u8>, RawResponse) {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    let raw = proxy.raw_h1(&request).await;
    let resp = one_response(&raw);
    (raw, resp)
}

fn assert_no_secret(raw: &[u8], context: &str) {
    assert!(
        find(raw, SECRET.as_bytes()).is_none(),
        "{context}: the secret leaked: {:?}",
        String::from_utf8_lossy(raw)
    );
}

/// Each attempt, its exact status and the error body. 400: refused as an escape attempt (by
/// the path normalizer before routing, or by the static route); 404: routed nowhere, or
/// resolved to nothing servable.
const ATTEMPTS: &[(&[u8], u16)] = &[
    // Dot segments: above the root → 400; resolved before routing → no route → 404; and the
    // ones that still land on /static/ are refused by it rather than resolved → 400.
    (b"/static/../../secret.txt", 400),
    (b"/static/../secret.txt", 404),
    (b"/static/sub/../ok.txt", 400),
    (b"/static/sub/..", 400),
    (b"/static/./ok.txt", 400),
    // Percent-encoded dots and slashes, mixed case.
    (b"/static/%2e%2e/secret.txt", 404),
    (b"/static/%2e%2e/%2e%2e/secret.txt", 400),
    (b"/static/sub/%2e%2e/ok.txt", 400),
    (b"/static/sub/%2E%2e%2fok.txt", 400),
    (b"/static/sub/..%2fok.txt", 400),
    (b"/static/sub/..%2F..%2F..%2Fsecret.txt", 400),
    (b"/static/sub%2finner.txt", 400),
    (b"/static%2fok.txt", 400),
    // Double-encoded: decoded once, it is a literal (missing) file name.
    (b"/static/%252e%252e%252fsecret.txt", 404),
    (b"/static/sub/%252e%252e%252f%252e%252e%252fsecret.txt", 404),
    // Backslashes, raw and encoded.
    (b"/static/..\\secret.txt", 400),
    (b"/static/sub\\..\\..\\secret.txt", 400),
    (b"/static/sub%5c..%5c..%5csecret.txt", 400),
    (b"/static/%5C..%5Csecret.txt", 400),
    // NUL.
    (b"/static/ok.txt%00.jpg", 400),
    (b"/static/%00", 400),
    // Overlong UTF-8 for '.' and '/', and bytes that are not UTF-8 at all.
    (b"/static/%c0%ae%c0%ae/secret.txt", 400),
    (b"/static/%c0%ae%c0%ae%c0%afsecret.txt", 400),
    (b"/static/%e0%80%ae%e0%80%ae/secret.txt", 400),
    (b"/static/%ff", 400),
    (b"/static/ok%ff.txt", 400),
    // Absolute-path tricks.
    (b"//etc/passwd", 404),
    (b"/static//etc/passwd", 404),
    (b"/static///etc/passwd", 404),
    (b"/static/%2fetc%2fpasswd", 400),
    // Symlinks leading out of the root: to a file, relative, to a directory, to /etc.
    (b"/static/out-link.txt", 404),
    (b"/static/relative-out.txt", 404),
    (b"/static/outdir/secret.txt", 404),
    (b"/static/outdir/", 404),
    (b"/static/outdir", 404),
    (b"/static/passwd", 404),
    // Hidden files, directly or through a link.
    (b"/static/.env", 404),
    (b"/static/env-link", 404),
    (b"/static/%2eenv", 404),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_attempts_are_refused_and_leak_nothing() {
    let tree = tree().await;
    for (target, status) in ATTEMPTS {
        let context = String::from_utf8_lossy(target).into_owned();
        let (raw, resp) = attempt(&tree.proxy, target, "").await;
        assert_no_secret(&raw, &context);
        assert_eq!(resp.status, *status, "{context}");
        let expected = match status {
            400 => "400 Bad Request\n",
            _ => "404 Not Found\n",
        };
        assert_proxy_error(&resp, *status, &resp.body_str(), expected, &context);
    }
    tree.proxy.assert_still_serves_at("/static/ok.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_inside_the_root_are_followed() {
    let tree = tree().await;
    for target in [
        &b"/static/inside-link.txt"[..],
        b"/static/sub-link/inner.txt",
        b"/static/ok.txt",
    ] {
        let (raw, resp) = attempt(&tree.proxy, target, "").await;
        assert_no_secret(&raw, "inside link");
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(target));
        assert_eq!(resp.body_str(), OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precompressed_sibling_outside_the_root_is_ignored() {
    let tree = tree().await;
    let (raw, resp) = attempt(
        &tree.proxy,
        b"/static/ok.txt",
        "Accept-Encoding: br, gzip\r\n",
    )
    .await;
    assert_no_secret(&raw, "sibling");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-encoding"), None);
    assert_eq!(resp.body_str(), OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_fail_over_http2_too() {
    let tree = tree().await;
    // reqwest normalizes dot segments, but sends percent-encodings and links as they are.
    let client = tree.proxy.client_h2();
    for (path, status) in [
        ("/static/sub%5c..%5cok.txt", 400),
        ("/static/sub%2finner.txt", 400),
        ("/static/out-link.txt", 404),
        ("/static/outdir/secret.txt", 404),
        ("/static/%c0%ae%c0%ae/secret.txt", 400),
    ] {
        let resp = client.get(tree.proxy.url(path)).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), status, "{path}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains(SECRET), "{path}");
    }
}

/// A directory inside the root is swapped for a link to the outside while requests run: the
/// window between resolving the path and opening it is the classic race. The opened
/// descriptor is verified, so the secret is never sent, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_directory_for_a_link_never_leaks() {
    const REQUESTS: usize = 2000;
    let tree = tree().await;
    let root = tree.dir.path().join("root");
    let racy = root.join("racy");
    let parked = root.join("parked");
    std::fs::create_dir_all(&racy).unwrap();
    std::fs::write(racy.join("secret.txt"), OK).unwrap();
    // Let the file settle and be answered once, so the race also runs against the small-file
    // cache: its entry must not outlive the swap.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let warm = tree.proxy.client_h1();
    let url = tree.proxy.url("/static/racy/secret.txt");
    assert_eq!(
        warm.get(&url).send().await.unwrap().text().await.unwrap(),
        OK
    );

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let outside = tree.dir.path().join("outside");
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                swap(&racy, &parked, &outside);
                swaps += 1;
            }
            swaps
        })
    };
    // Keep-alive requests, so many interleavings fit in a short test.
    let client = tree.proxy.client_h1();
    let url = tree.proxy.url("/static/racy/secret.txt");
    let mut served = 0;
    for _ in 0..REQUESTS {
        let resp = client.get(&url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert!(!body.contains(SECRET), "race: the secret leaked");
        match status {
            200 => {
                assert_eq!(body, OK);
                served += 1;
            }
            404 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the directory was never swapped");
    eprintln!("race: {served} of {REQUESTS} served the inside file, {swaps} swaps");
    tree.proxy.assert_still_serves_at("/static/ok.txt").await;
}

/// `racy` a real directory → a link to `outside` → a real directory again.
fn swap(racy: &Path, parked: &Path, outside: &Path) {
    if std::fs::rename(racy, parked).is_ok() {
        let _ = symlink(outside, racy);
        std::thread::yield_now();
        let _ = std::fs::remove_file(racy);
        let _ = std::fs::rename(parked, racy);
        std::thread::yield_now();
    }
}
