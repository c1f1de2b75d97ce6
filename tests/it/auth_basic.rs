//! `basic_auth` (DESIGN §5b): a users file of argon2id and bcrypt hashes, over HTTP/1.1 and
//! HTTP/2 with reqwest; formats refused at load naming the users file and line; the users file
//! reloaded by the watcher; a flood of guesses never starves the other routes.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;

/// Cheap argon2id parameters (the tests hash often); a real file has the defaults of
/// `rampart hash-password`. Verification cost follows the parameters written in the hash.
fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    hasher
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash_with_salt(password, 4, [9u8; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn users_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("admin.users");
    std::fs::write(&path, text).unwrap();
    path
}

fn routes(up: &TestUpstream, users: &Path) -> String {
    format!(
        "{}\n[[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\n\
         basic_auth = {{ realm = \"Staff only\", users = {:?} }}\n\n\
         [[routes]]\nname = \"public\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], ""),
        users.display().to_string()
    )
}

fn auth_count(proxy: &TestProxy, outcome: &str) -> u64 {
    proxy
        .handle()
        .metrics()
        .auth
        .with_label_values(&["admin", "basic", outcome])
        .get()
}

#[tokio::test]
async fn right_wrong_unknown_and_malformed_credentials_over_h1_and_h2() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &format!(
            "# staff\nalice:{}\nbob:{}\n",
            argon2_hash("correct horse"),
            bcrypt_hash("battery staple")
        ),
    );
    let proxy = TestProxy::builder()
        .config(&routes(&up, &users))
        .start()
        .await;

    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        let expected_version = if label == "h1" {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        // Right: argon2id and bcrypt users. The credential does not travel upstream.
        for (user, password) in [("alice", "correct horse"), ("bob", "battery staple")] {
            let before = up.count();
            let resp = client
                .get(proxy.url("/admin/page"))
                .header("authorization", basic(user, password))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.version(), expected_version, "{label}");
            assert_eq!(resp.status(), 200, "{label} {user}");
            assert_eq!(up.count(), before + 1, "{label} {user}: forwarded once");
            let seen = up.last();
            assert_eq!(seen.path, "/admin/page");
            assert_eq!(
                seen.header("authorization"),
                None,
                "{label}: Authorization must not be forwarded"
            );
        }

        // Refused: none, wrong password, unknown user (even with another user's password),
        // malformed headers. Each is 401 with the challenge and the security headers, and
        // never reaches the upstream.
        let refused: Vec<(&str, Option<String>)> = vec![
            ("no header", None),
            ("wrong password", Some(basic("alice", "battery staple"))),
            ("unknown user", Some(basic("mallory", "correct horse"))),
            ("empty user", Some(basic("", "correct horse"))),
            ("not base64", Some("Basic !!!not-base64".into())),
            (
                "no colon",
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice")
                )),
            ),
            ("other scheme", Some("Bearer abc.def.ghi".into())),
            ("scheme only", Some("Basic".into())),
        ];
        for (case, header) in refused {
            let before = up.count();
            let mut request = client.get(proxy.url("/admin/page"));
            if let Some(value) = &header {
                request = request.header("authorization", value);
            }
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{label} {case}");
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Basic realm=\"Staff only\", charset=\"UTF-8\"",
                "{label} {case}"
            );
            assert_strict_headers(resp.headers(), &format!("{label} {case}"));
            assert_eq!(up.count(), before, "{label} {case}: not forwarded");
        }

        // Another route is not guarded.
        let resp = client.get(proxy.url("/open")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{label}");
    }

    // Counted by route and outcome; the 401s are ordinary responses of the route, by status
    // (what a status-based ban jail counts).
    assert_eq!(auth_count(&proxy, "allowed"), 4);
    assert_eq!(auth_count(&proxy, "denied"), 16);
    let metrics = proxy.handle().metrics();
    assert_eq!(
        metrics
            .requests
            .with_label_values(&["admin", "GET", "401"])
            .get(),
        16
    );
}

#[tokio::test]
async fn hash_formats_other_than_argon2_and_bcrypt_are_refused_at_load_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &format!(
            "alice:{}\n\
             # htpasswd's defaults and worse:\n\
             md5:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n\
             sha:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
             crypt:rqXexS6ZhobKA\n\
             plain:hunter2\n\
             sha512:$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g.\n\
             broken:$argon2id$v=19$m=19456,t=2,p=1$notvalid\n\
             nohash\n\
             bob:{}\n",
            argon2_hash("a"),
            bcrypt_hash("b")
        ),
    );
    let up = TestUpstream::start().await;
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\nself_signed_if_missing = true\ncert = {:?}\nkey = {:?}\n{}",
        dir.path().join("c.crt").display().to_string(),
        dir.path().join("c.key").display().to_string(),
        routes(&up, &users)
    );
    let errors = rampart::config::load_str(&text, "test.toml")
        .expect_err("weak hashes must be refused")
        .to_string();
    let file = users.display().to_string();
    for line in [3, 4, 5, 6, 7, 8, 9] {
        assert!(
            errors.contains(&format!("{file}:{line}:1: routes[0].basic_auth.users: ")),
            "line {line} not named:\n{errors}"
        );
    }
    for line in [1, 2, 10] {
        assert!(
            !errors.contains(&format!("{file}:{line}:1:")),
            "line {line} is fine:\n{errors}"
        );
    }
    assert!(errors.contains("Apache MD5"), "{errors}");
    assert!(errors.contains("(users file of test.toml:"), "{errors}");

    // A users file that does not exist: the config's own line and key.
    std::fs::remove_file(&users).unwrap();
    let errors = rampart::config::load_str(&text, "test.toml")
        .expect_err("a missing users file is an error")
        .to_string();
    assert!(
        errors.contains("test.toml:")
            && errors.contains("routes[0].basic_auth.users")
            && errors.contains("cannot read the users file"),
        "{errors}"
    );
}

#[tokio::test]
async fn the_users_file_reloads_with_the_config() {
    use rampart::config::watch::ConfigWatch;
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("site.crt");
    let key = dir.path().join("site.key");
    let generated =
        rampart::certgen::write_self_signed(&["localhost".into()], &cert, &key).unwrap();
    let users = users_file(dir.path(), &format!("alice:{}\n", argon2_hash("old")));
    let config = dir.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n{}",
            cert.display().to_string(),
            key.display().to_string(),
            routes(&up, &users)
        ),
    )
    .unwrap();
    let snapshot = rampart::config::load_file(&config).expect("valid config");
    let handle = rampart::Server::start(snapshot).await.unwrap();
    let _watch = ConfigWatch::spawn(config.clone(), handle.reloader(), true);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .resolve("localhost", handle.https_addr())
        .add_root_certificate(reqwest::Certificate::from_der(&generated.cert_der).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/admin/", handle.https_addr().port());
    let status = |password: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(url)
                .header("authorization", basic("alice", password))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("old").await, 200);
    assert_eq!(status("new").await, 401);

    // Only the users file changes (written elsewhere, renamed over, as editors do).
    let replace = |text: String| {
        let tmp = dir.path().join("admin.users.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &users).unwrap();
    };
    replace(format!("alice:{}\n", argon2_hash("new")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("new").await != 200 {
        assert!(
            Instant::now() < deadline,
            "the new users file was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("old").await, 401);
    let reloads = |result: &str| {
        handle
            .metrics()
            .config_reloads
            .with_label_values(&[result])
            .get()
    };
    assert!(reloads("success") >= 1);

    // A users file broken on disk: the reload is refused and the running users stay.
    replace("alice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n".into());
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads("failure") < 1 {
        assert!(
            Instant::now() < deadline,
            "the broken users file was not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("new").await, 200);
    handle.shutdown().await;
}

/// Many wrong guesses at once with a costlier hash: each waits its turn on the bounded hashing
/// threads (or is told 503 to come back), and the other routes keep answering meanwhile.
#[tokio::test]
async fn a_flood_of_guesses_does_not_starve_other_routes() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // About 8 MiB and 3 passes: tens of milliseconds per check.
    let params = argon2::Params::new(8192, 3, 1, None).unwrap();
    let hash = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(
            b"right",
            &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
        )
        .unwrap()
        .to_string();
    let users = users_file(dir.path(), &format!("alice:{hash}\n"));
    let proxy = TestProxy::builder()
        .config(&routes(&up, &users))
        .start()
        .await;

    let client = proxy.client_h2();
    let mut guesses = Vec::new();
    for i in 0..48 {
        let client = client.clone();
        let url = proxy.url("/admin/");
        guesses.push(tokio::spawn(async move {
            client
                .get(url)
                .header("authorization", basic("alice", &format!("guess{i}")))
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // While the guesses are being hashed, the public route answers.
    for _ in 0..5 {
        let resp = proxy
            .client_h1()
            .get(proxy.url("/public"))
            .send()
            .await
            .expect("the public route answers during the flood");
        assert_eq!(resp.status(), 200);
    }
    for guess in guesses {
        let status = guess.await.unwrap().expect("every guess gets an answer");
        assert!(status == 401 || status == 503, "a guess got {status}");
    }
    // The right password still works afterwards.
    let resp = client
        .get(proxy.url("/admin/"))
        .header("authorization", basic("alice", "right"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        auth_count(&proxy, "denied") + auth_count(&proxy, "busy"),
        48
    );
}

#[tokio::test]
async fn hash_password_prints_an_argon2id_hash_of_stdin() {
    use argon2::PasswordVerifier;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary::rampart(dir.path())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let parsed = argon2::PasswordHash::new(hash).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret pass", &parsed)
        .is_ok());
    assert!(argon2::Argon2::default()
        .verify_password(b"s3cret pass\n", &parsed)
        .is_err());

    // Nothing on stdin: an error, no hash.
    let out = binary::rampart(dir.path())
        .arg("hash-password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
