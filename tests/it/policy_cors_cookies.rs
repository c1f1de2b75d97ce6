//! CORS per route (preflights answered by the proxy, the allowed origin echoed, `Vary: Origin`)
//! and `[cookies]` hardening of the upstream's Set-Cookie.

use crate::common;

use common::*;
use reqwest::header::HeaderMap;
use reqwest::Method;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";
const NONE: Vec<(String, String)> = Vec::new();

/// Routes: `/api/` (two origins, credentials), `/form/` (POST only, no credentials),
/// `/public/` (`"*"`), `/cors` (upstream sends its own CORS headers), `/` (no cors).
fn cors_config(up: &TestUpstream) -> String {
    format!(
        r#"{upstream}
[[routes]]
name = "api"
path = "/api/"
upstream = "app"
cors = {{ allow_origins = ["{APP}", "http://localhost:3000"], allow_credentials = true }}

[[routes]]
name = "form"
path = "/form/"
methods = ["POST"]
upstream = "app"
cors = {{ allow_origins = ["{APP}"], allow_methods = ["POST"], allow_headers = ["Content-Type"], max_age = "1h" }}

[[routes]]
name = "public"
path = "/public/"
upstream = "app"
cors = {{ allow_origins = ["*"] }}

[[routes]]
name = "cors"
path = "/cors"
upstream = "app"
cors = {{ allow_origins = ["{APP}"], allow_credentials = true }}

[[routes]]
name = "internal"
path = "/internal/"
upstream = "app"
allow = ["10.0.0.0/8"]
cors = {{ allow_origins = ["{APP}"] }}

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#,
        upstream = upstream_toml("app", &[up.server()], "")
    )
}

async fn cors_proxy(up: &TestUpstream) -> TestProxy {
    ProxyBuilder::new().config(&cors_config(up)).start().await
}

fn preflight(
    client: &reqwest::Client,
    url: String,
    origin: &str,
    method: &str,
) -> reqwest::RequestBuilder {
    client
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type,x-csrftoken")
}

/// Every `Access-Control-*` header of a response.
fn cors_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How many times `Vary` names `Origin`, over every `Vary` line.
fn vary_origin_count(headers: &HeaderMap) -> usize {
    headers
        .all("vary")
        .iter()
        .flat_map(|v| {
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| t == "origin")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_is_answered_by_the_proxy() {
    let up = TestUpstream::start().await;
    let proxy = cors_proxy(&up).await;

    for (client, version) in [
        (proxy.client_h1(), reqwest::Version::HTTP_11),
        (proxy.client_h2(), reqwest::Version::HTTP_2),
    ] {
        let resp = preflight(&client, proxy.url("/api/items/7"), APP, "PUT")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 204, "{version:?}");
        let h = resp.headers().clone();
        let mut cors = cors_headers(&h);
        cors.sort();
        assert_eq!(
            cors,
            [
                ("access-control-allow-credentials", "true"),
                (
                    "access-control-allow-headers",
                    "Content-Type, Authorization, X-Requested-With, X-CSRFToken"
                ),
                (
                    "access-control-allow-methods",
                    "GET, HEAD, POST, PUT, PATCH, DELETE"
                ),
                ("access-control-allow-origin", APP),
                ("access-control-max-age", "600"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string())),
            "{version:?}"
        );
        assert_eq!(
            h.all("vary"),
            ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
        );
        // like every response: security headers and the request id
        assert_strict_headers(&h, "preflight");
        assert!(h.one("x-request-id").is_some());
        assert_eq!(resp.bytes().await.unwrap().len(), 0);
    }

    // The second allowed origin is echoed as itself, never the list.
    let resp = preflight(
        &proxy.client_h1(),
        proxy.url("/api/"),
        "http://localhost:3000",
        "DELETE",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers().all("access-control-allow-origin"),
        ["http://localhost:3000"]
    );

    assert_eq!(up.count(), 0, "a preflight is never forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_a_disallowed_origin_or_method_gets_403_without_cors_headers() {
    let up = TestUpstream::start().await;
    let proxy = cors_proxy(&up).await;
    let client = proxy.client_h1();

    for (path, origin, method) in [
        ("/api/x", EVIL, "PUT"),
        ("/api/x", "null", "GET"),
        ("/api/x", "https://app.example.com.evil.com", "GET"),
        ("/api/x", "http://app.example.com", "GET"),
        ("/api/x", APP, "TRACE"),
        ("/api/x", APP, "put"),
        ("/form/", EVIL, "POST"),
        // the IP rules come first: a refused client learns nothing of the CORS policy
        ("/internal/x", APP, "GET"),
    ] {
        let context = format!("{path} {origin} {method}");
        let resp = preflight(&client, proxy.url(path), origin, method)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{context}");
        let h = resp.headers().clone();
        assert_eq!(cors_headers(&h), NONE, "{context}");
        let body = resp.text().await.unwrap();
        assert_proxy_error(&h, 403, &body, "403 Forbidden\n", &context);
    }
    assert_eq!(up.count(), 0, "a refused preflight is not forwarded either");

    // A route without `cors` leaves CORS to the app: the OPTIONS is forwarded.
    let resp = preflight(&client, proxy.url("/other"), EVIL, "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().method, "OPTIONS");
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_is_answered_by_the_route_that_serves_the_announced_method() {
    let up = TestUpstream::start().await;
    let proxy = cors_proxy(&up).await;
    let client = proxy.client_h2();

    // `/form/` accepts only POST, yet answers the preflight for its POSTs.
    let resp = preflight(&client, proxy.url("/form/submit"), APP, "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let mut cors = cors_headers(resp.headers());
    cors.sort();
    assert_eq!(
        cors,
        [
            ("access-control-allow-headers", "Content-Type"),
            ("access-control-allow-methods", "POST"),
            ("access-control-allow-origin", APP),
            ("access-control-max-age", "3600"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(up.count(), 0);

    // The actual POST then gets the CORS headers (no credentials configured here).
    let resp = client
        .post(proxy.url("/form/submit"))
        .header("origin", APP)
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        cors_headers(resp.headers()),
        [("access-control-allow-origin".to_string(), APP.to_string())]
    );
    assert_eq!(resp.headers().all("vary"), ["Origin"]);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_requests_from_an_allowed_origin_over_h1_and_h2() {
    let up = TestUpstream::start().await;
    let proxy = cors_proxy(&up).await;

    for (client, version) in [
        (proxy.client_h1(), reqwest::Version::HTTP_11),
        (proxy.client_h2(), reqwest::Version::HTTP_2),
    ] {
        let context = format!("{version:?}");
        // The upstream sends no CORS headers and no Vary.
        let resp = client
            .get(proxy.url("/api/items"))
            .header("origin", APP)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200, "{context}");
        let h = resp.headers().clone();
        let mut cors = cors_headers(&h);
        cors.sort();
        assert_eq!(
            cors,
            [
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-origin", APP),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string())),
            "{context}"
        );
        assert_eq!(h.all("vary"), ["Origin"], "{context}");
        assert_strict_headers(&h, &context);
        // the app still sees the Origin
        assert_eq!(up.last().header("origin").as_deref(), Some(APP));

        // The upstream's own ACAO is replaced (one copy, the request's origin); its
        // Expose-Headers pass for an allowed origin; Vary gets Origin appended once.
        let resp = client
            .get(proxy.url("/cors"))
            .header("origin", APP)
            .send()
            .await
            .unwrap();
        let h = resp.headers().clone();
        let mut cors = cors_headers(&h);
        cors.sort();
        assert_eq!(
            cors,
            [
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-origin", APP),
                ("access-control-expose-headers", "X-Total"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string())),
            "{context}"
        );
        assert_eq!(h.all("vary"), ["Accept-Encoding", "Origin"], "{context}");
        assert_eq!(vary_origin_count(&h), 1);

        // An upstream that already varies on Origin: not duplicated.
        let resp = client
            .get(proxy.url("/cors/vary-origin"))
            .header("origin", APP)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers().all("vary"), ["origin"], "{context}");
        assert_eq!(vary_origin_count(resp.headers()), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_requests_from_another_origin_or_none_get_no_cors_headers() {
    let up = TestUpstream::start().await;
    let proxy = cors_proxy(&up).await;

    for client in [proxy.client_h1(), proxy.client_h2()] {
        for origin in [
            Some(EVIL),
            Some("null"),
            Some("https://APP.example.com"),
            None,
        ] {
            for path in ["/cors", "/api/items"] {
                let context = format!("{path} from {origin:?}");
                let mut request = client.get(proxy.url(path));
                if let Some(origin) = origin {
                    request = request.header("origin", origin);
                }
                let resp = request.send().await.unwrap();
                assert_eq!(resp.status(), 200, "{context}");
                let h = resp.headers().clone();
                // not even the upstream's own: the proxy owns CORS on this route
                assert_eq!(cors_headers(&h), NONE, "{context}");
                assert_eq!(vary_origin_count(&h), 1, "{context}: still Vary: Origin");
                assert!(!resp.text().await.unwrap().is_empty());
            }
        }
    }
    // Without `cors` on the route, the upstream's CORS headers pass untouched.
    let plain = TestProxy::simple(&up, "").await;
    let resp = plain
        .client_h1()
        .get(plain.url("/cors"))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    let mut cors = cors_headers(resp.headers());
    cors.sort();
    assert_eq!(
        cors,
        [
            ("access-control-allow-credentials", "true"),
            (
                "access-control-allow-origin",
                "https://upstream-choice.example"
            ),
            ("access-control-expose-headers", "X-Total"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(resp.headers().all("vary"), ["Accept-Encoding"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_without_credentials_answers_star() {
    let up = TestUpstream::start().await;
    let proxy = cors_proxy(&up).await;
    let client = proxy.client_h1();

    let resp = preflight(
        &client,
        proxy.url("/public/data"),
        "https://anyone.example",
        "GET",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h.all("access-control-allow-origin"), ["*"]);
    assert!(h.get("access-control-allow-credentials").is_none());
    assert_eq!(up.count(), 0);

    let resp = client
        .get(proxy.url("/public/data"))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    let mut cors = cors_headers(resp.headers());
    cors.sort();
    assert_eq!(
        cors,
        [("access-control-allow-origin".to_string(), "*".to_string())]
    );
    assert_eq!(resp.headers().all("vary"), ["Origin"]);
}

/// A config around `body` with a real certificate, for `load_str`.
fn full_config(dir: &tempfile::TempDir, body: &str) -> String {
    let cert = dir.path().join("c.crt");
    let key = dir.path().join("c.key");
    rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = {:?}\nkey = {:?}\n\n[upstreams.app]\nservers = [\"http://127.0.0.1:9\"]\n\n{body}",
        cert.display().to_string(),
        key.display().to_string()
    )
}

fn refused(text: &str) -> String {
    match rampart::config::load_str(text, "test.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn star_with_credentials_is_refused_by_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = full_config(
        &dir,
        "[[routes]]\npath = \"/\"\nupstream = \"app\"\ncors = { allow_origins = [\"*\"], allow_credentials = true }\n",
    );
    let errors = refused(&text);
    let line = text.lines().position(|l| l.contains("cors =")).unwrap() + 1;
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(
        errors.starts_with(&format!("test.toml:{line}:")),
        "the line of the \"*\": {errors}"
    );
    assert!(errors.contains("routes[0].cors.allow_origins"), "{errors}");
    assert!(errors.contains("allow_credentials"), "{errors}");

    // without credentials it is fine
    let ok = text.replace("allow_credentials = true", "allow_credentials = false");
    assert!(rampart::config::load_str(&ok, "test.toml").is_ok());
}

#[test]
fn bad_cors_and_cookies_settings_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = full_config(
        &dir,
        "[cookies]\nsecure = false\nsame_site = \"None\"\n\n\
         [[routes]]\npath = \"/a/\"\nupstream = \"app\"\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"app\"\n\
         cors = { allow_origins = [\"https://app.example.com/\", \"*.example.com\"], allow_methods = [\"get\"] }\n",
    );
    let errors = refused(&text);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 4, "{errors}");
    let same_site_line = text
        .lines()
        .position(|l| l.starts_with("same_site"))
        .unwrap()
        + 1;
    assert!(
        lines[0].starts_with(&format!(
            "test.toml:{same_site_line}:1: cookies.same_site: "
        )),
        "{errors}"
    );
    assert!(lines[0].contains("secure = true"), "{errors}");
    assert!(
        lines[1].contains("routes[1].cors.allow_origins"),
        "{errors}"
    );
    assert!(
        lines[1].contains("write \"https://app.example.com\""),
        "{errors}"
    );
    assert!(
        lines[2].contains("routes[1].cors.allow_origins"),
        "{errors}"
    );
    assert!(
        lines[3].contains("routes[1].cors.allow_methods"),
        "{errors}"
    );

    let bad_same_site = full_config(&dir, "[cookies]\nsame_site = \"Loose\"\n");
    let errors = refused(&bad_same_site);
    assert!(errors.contains("cookies.same_site"), "{errors}");
    assert!(errors.contains("\"Strict\", \"Lax\", \"None\""), "{errors}");
}

async fn set_cookies(proxy: &TestProxy, client: reqwest::Client) -> Vec<String> {
    let resp = client.get(proxy.url("/set-cookie")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers().all("set-cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_is_hardened_only_where_attributes_are_absent() {
    let up = TestUpstream::start().await;
    // the defaults: secure = true, http_only = false, same_site = "Lax"
    let proxy = TestProxy::simple(&up, "").await;
    let expected = [
        // already Secure; HttpOnly; SameSite=Strict: stricter than Lax, kept as is
        "session=s3cr3t-session; Path=/; Secure; HttpOnly; SameSite=Strict",
        // bare
        "theme=dark; Secure; SameSite=Lax",
        // an explicit SameSite=None (lowercase) is the app's choice
        "csrftoken=tok3n; samesite=none; secure",
        "lang=en; Path=/; httponly; Secure; SameSite=Lax",
    ];
    assert_eq!(set_cookies(&proxy, proxy.client_h1()).await, expected);
    assert_eq!(set_cookies(&proxy, proxy.client_h2()).await, expected);

    let proxy = TestProxy::simple(
        &up,
        "[cookies]\nsecure = true\nhttp_only = true\nsame_site = \"Strict\"\n",
    )
    .await;
    assert_eq!(
        set_cookies(&proxy, proxy.client_h2()).await,
        [
            "session=s3cr3t-session; Path=/; Secure; HttpOnly; SameSite=Strict",
            "theme=dark; Secure; HttpOnly; SameSite=Strict",
            "csrftoken=tok3n; samesite=none; secure; HttpOnly",
            "lang=en; Path=/; httponly; Secure; SameSite=Strict",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_off_leaves_set_cookie_untouched() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[cookies]\nsecure = false\nsame_site = \"\"\n").await;
    assert_eq!(
        set_cookies(&proxy, proxy.client_h1()).await,
        UPSTREAM_SET_COOKIES
    );
    assert_eq!(
        set_cookies(&proxy, proxy.client_h2()).await,
        UPSTREAM_SET_COOKIES
    );
}
