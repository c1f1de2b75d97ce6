//! `forward_auth` (DESIGN §5b) against a real auth server written for the test: a hyper app
//! that answers by cookie, as Authelia or oauth2-proxy do (200 with `Remote-User`, 302 to a
//! login page, 401), over HTTP/1.1 and HTTP/2 with reqwest. A client's forged `Remote-User`
//! never reaches the app; a slow, oversized or unreachable auth server is 503, never a pass.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The auth server: records the headers of every request it gets.
struct AuthServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

async fn decide(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = request.headers();
    let session = cookie(headers, "session");
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let builder = Response::builder();
    match (session.as_deref(), bearer.as_deref()) {
        (Some("alice"), _) => builder
            .status(200)
            .header("remote-user", "alice")
            .header("remote-groups", "admins")
            .header("remote-groups", "staff")
            .header("x-auth-internal", "not for the app")
            .body(Full::new(Bytes::from_static(b"ok"))),
        (_, Some("Bearer good-token")) => builder
            .status(204)
            .header("remote-user", "robot")
            .body(Full::new(Bytes::new())),
        (Some("slow"), _) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            builder
                .status(200)
                .header("remote-user", "slowpoke")
                .body(Full::new(Bytes::new()))
        }
        (Some("huge"), _) => builder
            .status(401)
            .body(Full::new(Bytes::from(vec![b'x'; 200 * 1024]))),
        (Some("banned"), _) => builder
            .status(403)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"account locked\n"))),
        (Some(_), _) => {
            let target = headers
                .get("x-forwarded-uri")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("/");
            builder
                .status(302)
                .header(
                    "location",
                    format!("https://login.example/?rd={}", target.replace('/', "%2F")),
                )
                .header("set-cookie", "session=; Max-Age=0; Path=/")
                .body(Full::new(Bytes::new()))
        }
        (None, _) => builder
            .status(401)
            .header("www-authenticate", "Bearer realm=\"sso\"")
            .header("content-type", "text/html")
            .header("connection", "x-drop-me")
            .header("x-drop-me", "hop-by-hop")
            .body(Full::new(Bytes::from_static(b"<p>please log in</p>"))),
    }
    .unwrap()
}

impl AuthServer {
    async fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        record
                            .lock()
                            .unwrap()
                            .push((request.uri().to_string(), request.headers().clone()));
                        async move { Ok::<_, Infallible>(decide(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthServer { addr, seen, task }
    }

    fn last(&self) -> (String, HeaderMap) {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the auth server was asked")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn config(up: &TestUpstream, auth_url: &str, extra: &str) -> String {
    format!(
        "{}\n[[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\n\
         forward_auth = {{ url = {auth_url:?}, copy_headers = [\"Remote-User\", \"Remote-Groups\"]{extra} }}\n\n\
         [[routes]]\nname = \"public\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], ""),
    )
}

fn outcome(proxy: &TestProxy, outcome: &str) -> u64 {
    proxy
        .handle()
        .metrics()
        .auth
        .with_label_values(&["admin", "forward", outcome])
        .get()
}

#[tokio::test]
async fn allowed_requests_carry_the_auth_servers_headers_and_never_forged_ones() {
    let up = TestUpstream::start().await;
    let auth = AuthServer::start().await;
    let url = format!("http://{}/api/verify?rd=x", auth.addr);
    let proxy = TestProxy::builder()
        .config(&config(&up, &url, ""))
        .start()
        .await;

    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        let resp = client
            .post(proxy.url("/admin/users/?page=2"))
            .header("cookie", "theme=dark; session=alice")
            .header("remote-user", "root")
            .header("remote-groups", "superusers")
            .header("user-agent", "test-agent")
            .body("form=1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{label}");

        // What the auth server was asked.
        let (target, asked) = auth.last();
        assert_eq!(target, "/api/verify?rd=x", "{label}");
        assert_eq!(asked["x-forwarded-method"], "POST", "{label}");
        assert_eq!(asked["x-forwarded-uri"], "/admin/users/?page=2", "{label}");
        assert_eq!(
            asked["x-forwarded-host"],
            format!("localhost:{}", proxy.https.port()),
            "{label}"
        );
        assert_eq!(asked["x-forwarded-proto"], "https", "{label}");
        assert_eq!(asked["x-forwarded-for"], "127.0.0.1", "{label}");
        assert_eq!(
            cookie(&asked, "session").as_deref(),
            Some("alice"),
            "{label}"
        );
        assert_eq!(asked["user-agent"], "test-agent", "{label}");
        assert_eq!(asked["host"], auth.addr.to_string(), "{label}");
        assert!(
            asked.get("remote-user").is_none(),
            "{label}: the forged header is not shown to the auth server either"
        );

        // What the app got: the auth server's copy_headers, not the client's, nothing else of
        // the auth server's answer, and the body.
        let seen = up.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header_all("remote-user"), vec!["alice"], "{label}");
        assert_eq!(
            seen.header_all("remote-groups"),
            vec!["admins", "staff"],
            "{label}"
        );
        assert_eq!(seen.header("x-auth-internal"), None, "{label}");
        assert_eq!(seen.body, b"form=1", "{label}");

        // A bearer token passes too (Authorization is shown to the auth server, 204 is a 2xx).
        let resp = client
            .get(proxy.url("/admin/"))
            .header("authorization", "Bearer good-token")
            .header("remote-groups", "forged")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{label}");
        let seen = up.last();
        assert_eq!(seen.header_all("remote-user"), vec!["robot"], "{label}");
        assert!(
            seen.header("remote-groups").is_none(),
            "{label}: a client's copy is removed even when the auth server sends none"
        );
    }

    // The public route never asks the auth server.
    let before = auth.count();
    let resp = proxy
        .client_h1()
        .get(proxy.url("/open"))
        .header("remote-user", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(auth.count(), before);
    assert_eq!(outcome(&proxy, "allowed"), 4);
}

#[tokio::test]
async fn refusals_reach_the_client_as_the_auth_server_wrote_them() {
    let up = TestUpstream::start().await;
    let auth = AuthServer::start().await;
    let url = format!("http://{}/verify", auth.addr);
    let proxy = TestProxy::builder()
        .config(&config(&up, &url, ""))
        .start()
        .await;

    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        // No session: 401 with its challenge and body; its hop-by-hop headers dropped.
        let resp = client.get(proxy.url("/admin/")).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{label}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"sso\"");
        assert!(resp.headers().get("x-drop-me").is_none(), "{label}");
        assert_strict_headers(resp.headers(), label);
        assert_eq!(resp.text().await.unwrap(), "<p>please log in</p>");

        // An expired session: 302 to the login page, with the auth server's Set-Cookie
        // (hardened by [cookies], like an app's).
        let resp = client
            .get(proxy.url("/admin/x?y=1"))
            .header("cookie", "session=expired")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{label}");
        assert_eq!(
            resp.headers()["location"],
            "https://login.example/?rd=%2Fadmin%2Fx?y=1"
        );
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap();
        assert!(
            set_cookie.starts_with("session=; Max-Age=0; Path=/"),
            "{set_cookie}"
        );
        assert!(set_cookie.contains("Secure"), "{set_cookie}");
        assert_strict_headers(resp.headers(), label);

        let resp = client
            .get(proxy.url("/admin/"))
            .header("cookie", "session=banned")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{label}");
        assert_eq!(resp.text().await.unwrap(), "account locked\n");
    }
    assert_eq!(up.count(), 0, "no refused request reached the app");
    assert_eq!(outcome(&proxy, "denied"), 6);
}

#[tokio::test]
async fn a_slow_oversized_or_unreachable_auth_server_is_503_never_a_pass() {
    let up = TestUpstream::start().await;
    let auth = AuthServer::start().await;
    let url = format!("http://{}/verify", auth.addr);
    let proxy = TestProxy::builder()
        .config(&config(&up, &url, ", timeout = \"1s\""))
        .start()
        .await;
    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        for session in ["slow", "huge"] {
            let resp = client
                .get(proxy.url("/admin/"))
                .header("cookie", format!("session={session}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 503, "{label} {session}");
            assert_strict_headers(resp.headers(), label);
        }
    }
    assert_eq!(outcome(&proxy, "timeout"), 2);
    assert_eq!(outcome(&proxy, "error"), 2);

    // Nothing listens at the auth URL.
    let dead = dead_addr().await;
    let down = TestProxy::builder()
        .config(&config(&up, &format!("http://{dead}/verify"), ""))
        .start()
        .await;
    for client in [down.client_h1(), down.client_h2()] {
        let resp = client
            .get(down.url("/admin/"))
            .header("cookie", "session=alice")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
    }
    assert_eq!(outcome(&down, "unreachable"), 2);
    assert_eq!(up.count(), 0, "nothing passed");
}

#[tokio::test]
async fn forward_auth_config_errors_name_the_key() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("u");
    std::fs::write(
        &users,
        "a:$2y$04$lJvQ2SXj3eJ8aIr0W2H2JuBfpcUoSjd4ru4RXQXaHkGwHcA/GSPZu\n",
    )
    .unwrap();
    for (extra, expected) in [
        (
            "forward_auth = { url = \"https://sso.example/verify\" }",
            "routes[0].forward_auth: only http:// auth URLs",
        ),
        (
            "forward_auth = { url = \"http://sso:9091/\", copy_headers = [\"Bad Name\"] }",
            "`Bad Name` in copy_headers is not a header name",
        ),
        (
            "forward_auth = { url = \"http://sso:9091/\", copy_headers = [\"Connection\"] }",
            "`Connection` cannot be copied",
        ),
        (
            "forward_auth = { url = \"http://sso:9091/\", timeout = \"0s\" }",
            "more than 0s",
        ),
        (
            &format!("forward_auth = {{ url = \"http://sso:9091/\" }}\nbasic_auth = {{ realm = \"r\", users = {:?} }}", users.display().to_string()),
            "basic_auth or forward_auth, not both",
        ),
        (
            &format!("basic_auth = {{ realm = \"say \\\"hi\\\"\", users = {:?} }}", users.display().to_string()),
            "routes[0].basic_auth.realm: the realm must be printable ASCII",
        ),
    ] {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\nself_signed_if_missing = true\ncert = {:?}\nkey = {:?}\n{}\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n{extra}\n",
            dir.path().join("c.crt").display().to_string(),
            dir.path().join("c.key").display().to_string(),
            upstream_toml("app", &[up.server()], ""),
        );
        let errors = rampart::config::load_str(&text, "test.toml")
            .expect_err(extra)
            .to_string();
        assert!(errors.contains(expected), "{extra}:\n{errors}");
        assert!(errors.starts_with("test.toml:"), "{errors}");
    }
}

/// The Django compose example shows `/admin/` behind `forward_auth` as a commented line: that
/// line, uncommented, passes `rampart check` (and so does the example as shipped).
#[test]
fn the_compose_examples_forward_auth_variant_passes_check() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/compose/django/rampart.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let line = "# forward_auth = { url = \"http://authelia:9091/api/authz/forward-auth\"";
    assert_eq!(
        text.matches(line).count(),
        1,
        "the commented forward_auth line"
    );
    let variant = text.replace(line, &line[2..]);
    for (name, config) in [
        ("shipped", text.as_str()),
        ("forward_auth", variant.as_str()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rampart.toml"), config).unwrap();
        let out = common::binary::rampart(dir.path())
            .args(["check", "--skip-missing-paths", "-c", "rampart.toml"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The variant really has it: a wrong URL in that line is refused.
    let broken = variant.replace("http://authelia:9091", "https://authelia:9091");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rampart.toml"), broken).unwrap();
    let out = common::binary::rampart(dir.path())
        .args(["check", "--skip-missing-paths", "-c", "rampart.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("routes[4].forward_auth: only http:// auth URLs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
