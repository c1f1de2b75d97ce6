//! Hot reload through the file watcher: a config edited on disk (valid or not) and a certificate
//! replaced by rename, while clients keep sending requests over HTTP/1.1, HTTP/2 and fresh
//! TLS connections. Nothing may fail, and the refused reloads are counted.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rampart::config::watch::ConfigWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config on disk, its certificate, and the running server watching them.
struct Watched {
    dir: tempfile::TempDir,
    upstream: String,
    handle: rampart::ServerHandle,
    _watch: ConfigWatch,
    https: std::net::SocketAddr,
    /// Every certificate the test may present (old and new), as trusted roots.
    roots: Vec<Vec<u8>>,
}

fn config_text(upstream: &str, version: &str, cert: &Path, key: &Path) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\n\n\
         [headers]\nset = {{ \"X-Config\" = {version:?} }}\n\n\
         [upstreams.app]\nservers = [{upstream:?}]\n\n\
         [[routes]]\nname = \"version\"\npath = \"/version\"\n\
         respond = {{ status = 200, body = {version:?} }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n"
    )
}

/// Replaces `path` atomically (write elsewhere, rename over), as editors and Kubernetes do.
fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Watched {
    async fn start(upstream: String) -> Watched {
        let dir = tempfile::tempdir().unwrap();
        // The Kubernetes Secret layout: `live` is a symlink to the current generation's folder,
        // and a renewal swaps the symlink in one rename.
        let generation = dir.path().join("gen0");
        let first = rampart::certgen::write_self_signed(
            &["localhost".into()],
            &generation.join("site.crt"),
            &generation.join("site.key"),
        )
        .expect("certificate");
        std::os::unix::fs::symlink(&generation, dir.path().join("live")).unwrap();
        let (cert, key) = (
            dir.path().join("live/site.crt"),
            dir.path().join("live/site.key"),
        );
        let config = dir.path().join("rampart.toml");
        std::fs::write(&config, config_text(&upstream, "v0", &cert, &key)).unwrap();

        let snapshot = rampart::config::load_file(&config).expect("valid config");
        let handle = rampart::Server::start(snapshot).await.unwrap();
        let watch = ConfigWatch::spawn(config, handle.reloader(), true);
        let https = handle.https_addr();
        Watched {
            dir,
            upstream,
            handle,
            _watch: watch,
            https,
            roots: vec![first.cert_der],
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn reloads(&self, result: &str) -> u64 {
        self.handle
            .metrics()
            .config_reloads
            .with_label_values(&[result])
            .get()
    }

    async fn wait_reloads(&self, result: &str, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.reloads(result) < count {
            assert!(
                Instant::now() < deadline,
                "{result} reloads stayed at {} (expected {count})",
                self.reloads(result)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.reloads(result), count, "{result} reloads");
    }

    fn write_config(&self, version: &str) {
        let text = config_text(
            &self.upstream,
            version,
            &self.path("live/site.crt"),
            &self.path("live/site.key"),
        );
        replace_file(&self.path("rampart.toml"), text.as_bytes());
    }

    fn client(&self, kind: ClientKind) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .resolve("localhost", self.https);
        for root in &self.roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(root).unwrap());
        }
        match kind {
            ClientKind::Http1 => builder.http1_only(),
            ClientKind::Http2 => builder,
            // Every request opens a new connection: a new TLS handshake.
            ClientKind::Fresh => builder.http1_only().pool_max_idle_per_host(0),
        }
        .build()
        .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    async fn presented_cert(&self) -> Vec<u8> {
        let stream = tls_connect(self.https, Some("localhost"), &[b"http/1.1"], None)
            .await
            .unwrap();
        peer_cert(&stream)
    }
}

#[derive(Clone, Copy, Debug)]
enum ClientKind {
    Http1,
    Http2,
    Fresh,
}

/// Invalid edits of the config, each refused for another reason.
fn invalid_config(w: &Watched, variant: usize) -> String {
    let good = config_text(
        &w.upstream,
        "bad",
        &w.path("live/site.crt"),
        &w.path("live/site.key"),
    );
    match variant % 5 {
        0 => good.replace("[headers]", "[headers]\nno_such_key = 1"),
        1 => good.replace(
            "[listen]",
            "[client]\nheader_timeout = \"ten seconds\"\n\n[listen]",
        ),
        2 => good.replace("[[routes]]\nname = \"app\"", "[[routes]\nname = \"app\""),
        3 => good.replace("upstream = \"app\"", "upstream = \"nowhere\""),
        _ => good.replace("site.crt", "missing.crt"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_and_a_certificate_swap_under_load_fail_no_request() {
    let up = TestUpstream::start().await;
    let mut w = Watched::start(up.server()).await;
    // The replacement certificate is made now so that clients can trust both.
    let next = rampart::certgen::write_self_signed(
        &["localhost".into()],
        &w.path("gen1/site.crt"),
        &w.path("gen1/site.key"),
    )
    .unwrap();
    w.roots.push(next.cert_der.clone());
    let w = Arc::new(w);
    assert_eq!(w.presented_cert().await, w.roots[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for kind in [
        ClientKind::Http1,
        ClientKind::Http2,
        ClientKind::Fresh,
        ClientKind::Http2,
    ] {
        let (w, stop, sent, failures) = (w.clone(), stop.clone(), sent.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let client = w.client(kind);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let path = if n.is_multiple_of(2) {
                    "/version"
                } else {
                    "/app/x"
                };
                n += 1;
                let outcome = match client.get(w.url(path)).send().await {
                    Ok(resp) if resp.status() == 200 => match resp.bytes().await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(format!("{kind:?} {path}: body: {e:?}")),
                    },
                    Ok(resp) => Err(format!("{kind:?} {path}: status {}", resp.status())),
                    Err(e) => Err(format!("{kind:?} {path}: {e:?}")),
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if let Err(failure) = outcome {
                    failures.lock().unwrap().push(failure);
                }
            }
            n
        }));
    }

    let probe = w.client(ClientKind::Http1);
    let (mut ok, mut refused) = (0, 0);
    for round in 0..20usize {
        if round.is_multiple_of(2) {
            let version = format!("v{}", round + 1);
            w.write_config(&version);
            ok += 1;
            w.wait_reloads("success", ok).await;
            let resp = probe.get(w.url("/version")).send().await.unwrap();
            assert_eq!(resp.headers()["x-config"], version.as_str());
            assert_eq!(resp.text().await.unwrap(), version);
        } else {
            replace_file(
                &w.path("rampart.toml"),
                invalid_config(&w, round / 2).as_bytes(),
            );
            refused += 1;
            w.wait_reloads("failure", refused).await;
            // The running config stays.
            let resp = probe.get(w.url("/version")).send().await.unwrap();
            assert_eq!(resp.text().await.unwrap(), format!("v{round}"));
        }
        if round == 10 {
            // Certificate renewal: certificate and key change together, in one rename.
            std::os::unix::fs::symlink(w.path("gen1"), w.path("live.tmp")).unwrap();
            std::fs::rename(w.path("live.tmp"), w.path("live")).unwrap();
            ok += 1;
            w.wait_reloads("success", ok).await;
            assert_eq!(
                w.presented_cert().await,
                next.cert_der,
                "a new handshake gets the renewed certificate at once"
            );
        }
    }
    // Let the clients run on the last config for a moment, then stop them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_client = Vec::new();
    for client in clients {
        per_client.push(client.await.unwrap());
    }

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across reloads: {:#?}",
        failures.len(),
        sent.load(Ordering::Relaxed),
        &failures[..failures.len().min(10)]
    );
    assert!(
        per_client.iter().all(|&n| n >= 20),
        "every client kept sending during the reloads: {per_client:?}"
    );
    assert_eq!(w.reloads("failure"), 10, "refused reloads are counted");
    assert_eq!(
        w.reloads("success"),
        11,
        "ten edits and one certificate swap"
    );
    eprintln!(
        "requests during 21 reloads: {} (per client {per_client:?}), failed: 0",
        sent.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_download_and_a_websocket_outlive_reloads() {
    let up = TestUpstream::start().await;
    let w = Watched::start(up.server()).await;

    // 20 chunks 100 ms apart: the download spans every reload below.
    let download = {
        let client = w.client(ClientKind::Http2);
        let url = w.url("/stream/20/100");
        tokio::spawn(async move {
            let resp = client.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await
        })
    };
    let mut ws = tls_connect(w.https, Some("localhost"), &[b"http/1.1"], None)
        .await
        .unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let (resp, _) = read_one_response(&mut ws, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(resp.status, 101);

    for (i, version) in ["v1", "v2", "v3"].into_iter().enumerate() {
        w.write_config(version);
        w.wait_reloads("success", i as u64 + 1).await;
        let message = format!("after reload {version}");
        ws.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(3), ws.read_exact(&mut echoed))
            .await
            .expect("the WebSocket still echoes after a reload")
            .unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    let body = download.await.unwrap().expect("the download completes");
    let expected: String = (0..20).map(|i| format!("chunk-{i}\n")).collect();
    assert_eq!(body, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_file_touched_or_a_neighbour_written_does_not_reload() {
    let up = TestUpstream::start().await;
    let w = Watched::start(up.server()).await;
    // Same content renamed over the config, and an editor's swap file next to it.
    let same = std::fs::read(w.path("rampart.toml")).unwrap();
    replace_file(&w.path("rampart.toml"), &same);
    std::fs::write(w.path(".rampart.toml.swp"), b"editor state").unwrap();
    // Then a real change: it must be the first and only reload.
    tokio::time::sleep(Duration::from_millis(600)).await;
    w.write_config("v1");
    w.wait_reloads("success", 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(w.reloads("success"), 1);
    assert_eq!(w.reloads("failure"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_certificate_is_refused_not_regenerated() {
    let up = TestUpstream::start().await;
    let w = Watched::start(up.server()).await;
    let before = w.presented_cert().await;
    // self_signed_if_missing is on by default; on a reload it must not replace a real
    // certificate that is briefly missing (mid-rotation).
    std::fs::remove_file(w.path("live")).unwrap();
    w.wait_reloads("failure", 1).await;
    assert!(!w.path("live/site.crt").exists(), "nothing was generated");
    assert_eq!(w.presented_cert().await, before);
    let resp = w
        .client(ClientKind::Http1)
        .get(w.url("/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "v0");
}

/// The real binary with its output written to a file beside its config (as many run it), under
/// steady traffic: every request writes that file, and a CSP changed in the config must still
/// be served within 2 s (events of neighbours never hold a change back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_is_live_within_2s_while_a_log_beside_it_is_written() {
    use common::binary::rampart;
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (https, admin) = (free_addr().await, free_addr().await);
    let config = |csp: &str| {
        format!(
            "[listen]\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
             [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
             [headers]\ncontent_security_policy = \"{csp}\"\n\n\
             [upstreams.app]\nservers = [\"{}\"]\n\n\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            up.server()
        )
    };
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, config("default-src 'self'")).unwrap();
    let log = std::fs::File::create(dir.path().join("rampart.log")).unwrap();
    let err = log.try_clone().unwrap();
    let mut cmd = rampart(dir.path());
    cmd.args(["run", "-c", "rampart.toml"])
        .stdout(log)
        .stderr(err);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _proxy = Kill(cmd.spawn().unwrap());

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .resolve("localhost", https)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", https.port());
    let csp = |client: reqwest::Client, url: String| async move {
        let resp = client.get(url).send().await.ok()?;
        Some(
            resp.headers()
                .get("content-security-policy")?
                .to_str()
                .ok()?
                .to_string(),
        )
    };
    assert!(
        eventually_async(Duration::from_secs(20), || csp(client.clone(), url.clone())).await
            == Some("default-src 'self'".to_string()),
        "rampart did not start: {}",
        std::fs::read_to_string(dir.path().join("rampart.log")).unwrap_or_default()
    );

    // Steady traffic: a request (and an access-log line in rampart.log) every 200 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&path, config("default-src 'none'")).unwrap();
    let edited = Instant::now();
    let mut live = None;
    while edited.elapsed() < Duration::from_secs(6) {
        if csp(client.clone(), url.clone()).await.as_deref() == Some("default-src 'none'") {
            live = Some(edited.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    let live = live.expect("the edited CSP was not served within 6 s");
    assert!(
        live < Duration::from_secs(2),
        "the edit was live after {live:?}"
    );
}

/// Polls `probe` every 100 ms until it gives `Some` or `limit` passes.
async fn eventually_async<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
