//! Router: host specificity, longest prefix, file order, methods, normalized paths.

use crate::common;

use common::*;

fn route(
    name: &str,
    host: Option<&str>,
    path: &str,
    upstream: &str,
    methods: Option<&str>,
) -> String {
    let mut s =
        format!("[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"{upstream}\"\n");
    if let Some(host) = host {
        s.push_str(&format!("host = \"{host}\"\n"));
    }
    if let Some(methods) = methods {
        s.push_str(&format!("methods = {methods}\n"));
    }
    s.push('\n');
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_beats_wildcard_beats_any() {
    let any = TestUpstream::start().await;
    let wild = TestUpstream::start().await;
    let exact = TestUpstream::start().await;
    let config = [
        upstream_toml("any", &[any.server()], ""),
        upstream_toml("wild", &[wild.server()], ""),
        upstream_toml("exact", &[exact.server()], ""),
        // file order deliberately the reverse of specificity
        route("any", None, "/", "any", None),
        route("wild", Some("*.example.org"), "/", "wild", None),
        route("exact", Some("api.example.org"), "/", "exact", None),
    ]
    .concat();
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();

    let cases = [
        ("api.example.org", &exact, "exact"),
        ("API.Example.ORG", &exact, "exact, case-insensitive"),
        ("api.example.org:8443", &exact, "exact, with port"),
        ("www.example.org", &wild, "wildcard"),
        ("a.b.example.org", &wild, "wildcard, deeper"),
        ("example.org", &any, "apex is not in the wildcard"),
        ("localhost", &any, "any host"),
    ];
    for (host, expected, what) in cases {
        let before = expected.count();
        let resp = client
            .get(proxy.url("/page"))
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{what}");
        assert_eq!(
            expected.count(),
            before + 1,
            "{what}: Host {host} went to the wrong route"
        );
    }
    assert_eq!(exact.count() + wild.count() + any.count(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins_then_file_order() {
    let root = TestUpstream::start().await;
    let api = TestUpstream::start().await;
    let v2 = TestUpstream::start().await;
    let first = TestUpstream::start().await;
    let second = TestUpstream::start().await;
    let config = [
        upstream_toml("root", &[root.server()], ""),
        upstream_toml("api", &[api.server()], ""),
        upstream_toml("v2", &[v2.server()], ""),
        upstream_toml("first", &[first.server()], ""),
        upstream_toml("second", &[second.server()], ""),
        route("root", None, "/", "root", None),
        route("api", None, "/api/", "api", None),
        route("v2", None, "/api/v2/", "v2", None),
        route("dup1", None, "/dup/", "first", None),
        route("dup2", None, "/dup/", "second", None),
    ]
    .concat();
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();

    for (path, expected, what) in [
        ("/api/v2/users", &v2, "longest prefix"),
        ("/api/v2/", &v2, "longest prefix, exact"),
        ("/api/v1/users", &api, "shorter prefix"),
        ("/api/", &api, "prefix itself"),
        ("/apix", &root, "prefix is not a word match"),
        ("/", &root, "root"),
        ("/dup/x", &first, "same prefix: file order"),
    ] {
        let before = expected.count();
        let resp = client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{what}");
        assert_eq!(
            expected.count(),
            before + 1,
            "{what}: {path} went to the wrong route"
        );
        assert_eq!(expected.last().path, path);
    }
    assert_eq!(
        second.count(),
        0,
        "the second of two equal routes is never used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_for_other_methods_is_skipped() {
    let app = TestUpstream::start().await;
    let login = TestUpstream::start().await;
    let config = [
        upstream_toml("app", &[app.server()], ""),
        upstream_toml("login", &[login.server()], ""),
        route("login", None, "/login/", "login", Some("[\"POST\"]")),
        route("app", None, "/", "app", None),
    ]
    .concat();
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();

    let resp = client
        .post(proxy.url("/login/"))
        .body("u=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(login.count(), 1);
    assert_eq!(login.last().method, "POST");
    assert_eq!(login.last().body, b"u=1");

    let resp = client.get(proxy.url("/login/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(login.count(), 1, "GET must skip the POST-only route");
    assert_eq!(app.count(), 1);
    assert_eq!(app.last().path, "/login/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_other_methods_match_gives_405_with_allow() {
    let login = TestUpstream::start().await;
    let config = [
        upstream_toml("login", &[login.server()], ""),
        route("login", None, "/login/", "login", Some("[\"POST\"]")),
        route("read", None, "/read/", "login", Some("[\"GET\"]")),
    ]
    .concat();
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();

    let resp = client.get(proxy.url("/login/")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers().get("allow").unwrap(), "POST");
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    assert_proxy_error(&headers, 405, &body, "405 Method Not Allowed\n", "405");

    // A GET route also accepts HEAD, and says so.
    let resp = client.delete(proxy.url("/read/x")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let allow = resp
        .headers()
        .get("allow")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
    allowed.sort();
    assert_eq!(allowed, vec!["GET", "HEAD"]);
    let resp = client.head(proxy.url("/read/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "HEAD on a GET route");

    // No route at all: 404.
    let resp = client.get(proxy.url("/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    assert_proxy_error(&headers, 404, &body, "404 Not Found\n", "404");
    assert_eq!(login.count(), 1, "only the HEAD reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_uses_the_normalized_path_and_the_upstream_gets_it_too() {
    let app = TestUpstream::start().await;
    let admin = TestUpstream::start().await;
    let config = [
        upstream_toml("app", &[app.server()], ""),
        upstream_toml("admin", &[admin.server()], ""),
        route("admin", None, "/admin/", "admin", None),
        route("app", None, "/", "app", None),
    ]
    .concat();
    let proxy = TestProxy::start(&config).await;

    for (raw, forwarded) in [
        ("/%61dmin/", "/%61dmin/"),
        ("/static/../admin/", "/admin/"),
        ("//admin/", "/admin/"),
        ("/./admin/users", "/admin/users"),
    ] {
        let before = admin.count();
        let resp = one_response(&proxy.raw_h1(&get_close(raw, "localhost")).await);
        assert_eq!(resp.status, 200, "{raw}");
        assert_eq!(admin.count(), before + 1, "{raw} must be routed to /admin/");
        assert_eq!(
            admin.last().uri,
            forwarded,
            "the upstream receives the path the route matched, other encodings as sent"
        );
    }
    // A route's path without its trailing slash is sent to the route (nginx's 301).
    let resp = one_response(&proxy.raw_h1(&get_close("/admin", "localhost")).await);
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("/admin/"));
    assert_eq!(app.count(), 0);

    // Queries are not part of the routing path, and pass unchanged.
    let resp = proxy
        .client_h1()
        .get(proxy.url("/admin/list?a=1&b=%20"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(admin.last().uri, "/admin/list?a=1&b=%20");
}
