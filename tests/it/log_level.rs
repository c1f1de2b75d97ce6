//! `[log] level` follows a reload (issue 15): the text log's filter is swapped with each config,
//! not only set at start. `RUST_LOG` unset here, so the config decides.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;

fn config(
    https: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    level: &str,
    body: &str,
) -> String {
    format!(
        "[listen]\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
         [tls]\ncert = \"certs/dev.crt\"\nkey = \"certs/dev.key\"\nself_signed_if_missing = true\n\n\
         [log]\nlevel = \"{level}\"\n\n\
         [[routes]]\nname = \"hello\"\npath = \"/\"\nrespond = {{ status = 200, body = \"{body}\" }}\n"
    )
}

fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn successful_reloads(admin: std::net::SocketAddr) -> u64 {
    let Ok(resp) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("rampart_config_reloads_total{result=\"success\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_reloads(running: &Running, admin: std::net::SocketAddr, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while successful_reloads(admin).await < count {
        assert!(
            Instant::now() < deadline,
            "reload {count} did not happen; stderr:\n{}",
            running.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reloaded_lines(running: &Running) -> usize {
    running
        .stderr()
        .iter()
        .filter(|l| l.contains("config reloaded"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_follows_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (https, admin) = (free_addr().await, free_addr().await);
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, config(https, admin, "warn", "a")).unwrap();
    let mut cmd = rampart(dir.path());
    cmd.env_remove("RUST_LOG")
        .args(["run", "-c", "rampart.toml"]);
    let mut running = Running::spawn(cmd);
    // The self-signed certificate warning is the first line at `warn`.
    running
        .wait_for_line("SELF-SIGNED", Duration::from_secs(30))
        .await;
    let serving = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while successful_reloads(admin).await == 0
            && reqwest::get(format!("http://{admin}/healthz"))
                .await
                .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the admin listener did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    serving.await;

    // `warn` → `warn`: the reload's info line is not shown.
    replace_file(&path, &config(https, admin, "warn", "b"));
    wait_reloads(&running, admin, 1).await;
    assert_eq!(reloaded_lines(&running), 0, "{}", running.stderr_text());

    // → `info`: the reload that sets it already logs at info.
    replace_file(&path, &config(https, admin, "info", "c"));
    wait_reloads(&running, admin, 2).await;
    assert!(
        eventually(Duration::from_secs(10), || reloaded_lines(&running) == 1).await,
        "no `config reloaded` at info; stderr:\n{}",
        running.stderr_text()
    );

    // → `error`: quiet again.
    replace_file(&path, &config(https, admin, "error", "d"));
    wait_reloads(&running, admin, 3).await;
    replace_file(&path, &config(https, admin, "error", "e"));
    wait_reloads(&running, admin, 4).await;
    // Give a line that would come a moment to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reloaded_lines(&running), 1, "{}", running.stderr_text());
}
