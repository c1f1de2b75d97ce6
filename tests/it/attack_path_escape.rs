//! Path escape: encodings, dot-segments and doubled slashes must not route around the rules of
//! `/admin/`; paths above the root are refused.

use crate::common;

use common::*;

/// `/admin/` goes to its own upstream; everything else to `app`.
async fn setup() -> (TestUpstream, TestUpstream, TestProxy) {
    let app = TestUpstream::start().await;
    let admin = TestUpstream::start().await;
    let config = format!(
        "{}{}\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"admin\"\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[app.server()], ""),
        upstream_toml("admin", &[admin.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;
    (app, admin, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_and_dotted_paths_meet_the_admin_route() {
    let (app, admin, proxy) = setup().await;
    for path in [
        "/%61dmin/",
        "/%61%64%6d%69%6e/panel",
        "/static/../admin/",
        "/static/%2e%2e/admin/",
        "/static/.%2E/admin/x",
        "//admin/",
        "///admin//users",
        "/./admin/",
        "/admin/./",
        "/x/y/../../admin/",
    ] {
        let before = admin.count();
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(
            admin.count(),
            before + 1,
            "{path} bypassed the /admin/ route"
        );
        let forwarded = admin.last().uri;
        assert!(
            forwarded.starts_with("/admin/")
                || forwarded.starts_with("/%61") && !forwarded.contains("/."),
            "{path}: the upstream must get the path the route matched, got {forwarded}"
        );
    }
    assert_eq!(app.count(), 0, "an admin path was routed to the app");
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_never_route_around_admin() {
    let (app, admin, proxy) = setup().await;
    for path in [
        "/admin%2Fx",
        "/admin%2fpanel",
        "/%2Fadmin/",
        "/static%2F..%2Fadmin/",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert!(
            resp.status == 200 || resp.status == 400,
            "{path}: {}",
            resp.status
        );
        assert!(
            app.requests().iter().all(|r| r.uri != path),
            "{path} was routed to the app instead of /admin/ (or refused)"
        );
        // Encoded separators are refused on proxied routes (path.rs): one app splits on them,
        // another does not.
        assert_eq!(resp.status, 400, "{path}");
    }
    proxy.assert_still_serves().await;
    let _ = admin;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_above_the_root_and_bad_encodings_are_400() {
    let (app, admin, proxy) = setup().await;
    for path in [
        "/..",
        "/../",
        "/../etc/passwd",
        "/static/../../etc/passwd",
        "/%2e%2e/admin/",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/admin/../../x",
        "/a%00b",
        "/admin%00/",
        "/a%zz",
        "/a%4",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert_eq!(resp.status, 400, "{path}");
        assert_proxy_error(&resp, 400, &resp.body_str(), "400 Bad Request\n", path);
    }
    assert_eq!(
        app.count() + admin.count(),
        0,
        "an escaping path reached an upstream"
    );
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_rules_of_admin_hold_for_encoded_paths() {
    let app = TestUpstream::start().await;
    let config = format!(
        "{}\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\nallow = [\"10.0.0.0/8\"]\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[app.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;
    for path in [
        "/admin/",
        "/%61dmin/",
        "/static/../admin/",
        "//admin/",
        "/admin%2Fx",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert_eq!(resp.status, 403, "{path} from 127.0.0.1 must be forbidden");
        assert_proxy_error(&resp, 403, &resp.body_str(), "403 Forbidden\n", path);
    }
    assert_eq!(
        app.count(),
        0,
        "a forbidden admin request reached the upstream"
    );
    proxy.assert_still_serves().await;
}

/// The upstream receives the path the proxy routed: dot segments resolved, `//` merged, the
/// other encodings as sent, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_path_the_proxy_routed() {
    let (app, admin, proxy) = setup().await;
    let cases = [
        ("/static/../secret.txt", "/secret.txt", "app"),
        ("/static/%2e%2E/secret.txt", "/secret.txt", "app"),
        ("/api/auth/./login/", "/api/auth/login/", "app"),
        ("//admin//users", "/admin/users", "admin"),
        (
            "/x/../admin/./panel?next=/a/../b",
            "/admin/panel?next=/a/../b",
            "admin",
        ),
        ("/%61dmin/caf%C3%A9", "/%61dmin/caf%C3%A9", "admin"),
        ("/admin/a%20b/../c", "/admin/c", "admin"),
    ];
    for (sent, expected, upstream) in cases {
        let resp = one_response(&proxy.raw_h1(&get_close(sent, "localhost")).await);
        assert_eq!(resp.status, 200, "h1 {sent}");
        let got = if upstream == "admin" {
            admin.last()
        } else {
            app.last()
        };
        assert_eq!(got.uri, expected, "h1 {sent}");
    }
    // HTTP/2: reqwest would normalize dot segments itself; a raw :path is sent with hyper's
    // HTTP/2 client, which keeps it as given.
    for (sent, expected, upstream) in cases {
        let (status, _) = h2_get_raw_path(&proxy, sent).await;
        assert_eq!(status, 200, "h2 {sent}");
        let got = if upstream == "admin" {
            admin.last()
        } else {
            app.last()
        };
        assert_eq!(got.uri, expected, "h2 {sent}");
    }
    // Tomcat's `..;/`: refused rather than read two ways.
    for sent in ["/static/..;/admin/", "/admin/.;x/y"] {
        let resp = one_response(&proxy.raw_h1(&get_close(sent, "localhost")).await);
        assert_eq!(resp.status, 400, "{sent}");
    }
    proxy.assert_still_serves().await;
}

/// The rules of a route hold for every spelling of its path: an IP deny and a rate limit
/// count `/api/auth/./login/` and `//api/auth/login/` as the login route, and what reaches the
/// upstream is the login path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_apply_to_the_forwarded_path() {
    let app = TestUpstream::start().await;
    let config = format!(
        "{}\
         [[routes]]\nname = \"login\"\npath = \"/api/auth/login/\"\nupstream = \"app\"\nrate_limit = {{ rate = \"3/min\", burst = 3 }}\n\n\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\ndeny = [\"127.0.0.0/8\"]\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[app.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;
    let mut statuses = Vec::new();
    for sent in [
        "/api/auth/./login/",
        "//api/auth/login/",
        "/api/x/../auth/login/",
        "/api/auth/login/",
        "/api/auth/%6cogin/",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(sent, "localhost")).await);
        statuses.push(resp.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert!(
        app.requests().iter().all(|r| r.uri == "/api/auth/login/"),
        "{:?}",
        app.requests()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>()
    );
    for sent in ["/admin/", "/x/../admin/", "//admin/", "/admin", "/%61dmin/"] {
        let resp = one_response(&proxy.raw_h1(&get_close(sent, "localhost")).await);
        assert!(
            resp.status == 403 || resp.status == 301,
            "{sent}: {}",
            resp.status
        );
    }
    assert_eq!(app.count(), 3, "nothing of /admin/ reached the upstream");
}

/// `/admin` for a route `path = "/admin/"` is redirected to `/admin/` (nginx's answer for a
/// `location /admin/`) instead of falling through to the catch-all route and the app: 301 for
/// GET and HEAD, 308 for other methods (a POST stays a POST, and meets the route's limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_path_without_its_slash_redirects_to_the_route() {
    let app = TestUpstream::start().await;
    let config = format!(
        "{}\
         [[routes]]\nname = \"login\"\npath = \"/api/auth/login/\"\nmethods = [\"POST\"]\nupstream = \"app\"\nrate_limit = {{ rate = \"5/min\", burst = 5 }}\n\n\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\nallow = [\"10.0.0.0/8\"]\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[app.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;
    for (sent, location) in [
        ("/admin", "/admin/"),
        ("/admin?x=1", "/admin/?x=1"),
        ("/x/../admin", "/admin/"),
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(sent, "localhost")).await);
        assert_eq!(resp.status, 301, "{sent}");
        assert_eq!(resp.header("location"), Some(location), "{sent}");
        assert_strict_headers(&resp, sent);
    }
    // A POST to the login path without its slash: 308 every time, never the catch-all app;
    // the slashed path is the login route, limited.
    let client = proxy.client_h1();
    for _ in 0..3 {
        let resp = client
            .post(proxy.url("/api/auth/login"))
            .body("user=a")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 308);
        let resp = client
            .post(proxy.url("/api/auth/login/"))
            .body("user=a")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("ratelimit-limit"));
    }
    let raw = b"POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nConnection: close\r\n\r\nuser=a";
    let resp = one_response(&proxy.raw_h1(raw).await);
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some("/api/auth/login/"));
    assert!(app
        .requests()
        .iter()
        .all(|r| r.uri != "/admin" && r.uri != "/api/auth/login"));
    assert_eq!(app.count(), 3);
}
