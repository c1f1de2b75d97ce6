//! Log capture, alone in its test binary: it installs the process-wide tracing subscriber
//! (at TRACE, for every crate), which would slow and swell every other test sharing the process.

#[path = "it/common/mod.rs"]
mod common;

use common::*;

async fn set_cookies(proxy: &TestProxy, client: reqwest::Client) -> Vec<String> {
    let resp = client.get(proxy.url("/set-cookie")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers().all("set-cookie")
}

/// Everything logged by this test binary, at every level (set up once, shared by the tests).
fn captured_log() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        log
    })
    .clone()
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_values_never_reach_the_log() {
    let log = captured_log();
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        assert_eq!(set_cookies(&proxy, client.clone()).await.len(), 4);
        // a refused request (logged at debug) carrying a cookie
        let resp = client
            .get(proxy.url("/%zz"))
            .header("cookie", "session=s3cr3t-session")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(text.contains("rampart is serving"), "the log was captured");
    assert!(text.contains("request refused"), "debug lines too");
    for secret in ["s3cr3t-session", "tok3n"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
