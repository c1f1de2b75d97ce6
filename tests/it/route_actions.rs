//! Route actions answered by the proxy itself: redirect templates and fixed responses.

use crate::common;

use common::*;

fn redirect_route(name: &str, path: &str, to: &str, status: Option<u16>) -> String {
    let status = status
        .map(|s| format!(", status = {s}"))
        .unwrap_or_default();
    format!("[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nredirect = {{ to = \"{to}\"{status} }}\n\n")
}

async fn location(proxy: &TestProxy, path: &str) -> (u16, Option<String>) {
    let resp = proxy.client_h1().get(proxy.url(path)).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_templates_fill_rest_path_query_and_host() {
    let config = [
        redirect_route(
            "blog",
            "/blog/",
            "https://blog.example.com/{rest}",
            Some(301),
        ),
        redirect_route(
            "q",
            "/q/",
            "https://q.example.com/{rest}?{query}",
            Some(308),
        ),
        redirect_route("p", "/p/", "https://p.example.com{path}", None),
        redirect_route("h", "/h/", "https://{host}/moved/{rest}", Some(308)),
    ]
    .concat();
    let proxy = TestProxy::start(&config).await;
    let port = proxy.https.port();

    assert_eq!(
        location(&proxy, "/blog/2020/post").await,
        (301, Some("https://blog.example.com/2020/post".into()))
    );
    assert_eq!(
        location(&proxy, "/blog/").await,
        (301, Some("https://blog.example.com/".into()))
    );
    assert_eq!(
        location(&proxy, "/q/a/b?x=1&y=2").await,
        (308, Some("https://q.example.com/a/b?x=1&y=2".into()))
    );
    // an empty query leaves no dangling '?'
    assert_eq!(
        location(&proxy, "/q/a/b").await,
        (308, Some("https://q.example.com/a/b".into()))
    );
    let (status, loc) = location(&proxy, "/p/deep/page?z=9").await;
    assert!(
        (301..=308).contains(&status),
        "default redirect status {status}"
    );
    assert_eq!(loc.as_deref(), Some("https://p.example.com/p/deep/page"));

    let (status, loc) = location(&proxy, "/h/x").await;
    assert_eq!(status, 308);
    let loc = loc.unwrap();
    assert!(
        loc == "https://localhost/moved/x" || loc == format!("https://localhost:{port}/moved/x"),
        "{{host}}: {loc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_of_a_relative_template() {
    let proxy = TestProxy::start(&redirect_route("old", "/old/", "/new/{rest}", Some(301))).await;
    assert_eq!(
        location(&proxy, "/old/a/b").await,
        (301, Some("/new/a/b".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_answers_with_the_configured_status_and_body() {
    let up = TestUpstream::start().await;
    let config = format!(
        "{}[[routes]]\nname = \"gone\"\npath = \"/gone/\"\nrespond = {{ status = 404, body = \"gone\" }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], "")
    );
    let proxy = TestProxy::start(&config).await;

    for client in [proxy.client_h1(), proxy.client_h2()] {
        let resp = client
            .get(proxy.url("/gone/anything"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert!(resp.headers().get("x-request-id").is_some());
        assert_strict_headers(resp.headers(), "respond");
        assert_eq!(resp.text().await.unwrap(), "gone");
    }
    assert_eq!(up.count(), 0, "a respond route never reaches the upstream");
}
