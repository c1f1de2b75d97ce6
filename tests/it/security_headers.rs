//! Security headers on every response of the https listener.

use crate::common;

use common::*;

async fn get(proxy: &TestProxy, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = proxy.client_h1().get(proxy.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_preset_sets_every_header_and_replaces_the_upstreams() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[headers]\npreset = \"strict\"\n").await;

    let (status, headers, body) = get(&proxy, "/headers").await;
    assert_eq!(status, 200);
    assert_eq!(body, "headers\n");
    // the upstream sent its own CSP, X-Frame-Options, Server and X-Powered-By
    assert_strict_headers(&headers, "strict, proxied /headers");
    assert_eq!(headers.all("x-app"), vec!["kept"]);

    let (_, headers, _) = get(&proxy, "/plain").await;
    assert_strict_headers(&headers, "strict, proxied /plain");

    // HTTP/2 too
    let resp = proxy
        .client_h2()
        .get(proxy.url("/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_strict_headers(resp.headers(), "strict over h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_is_the_default_preset() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    let (_, headers, _) = get(&proxy, "/headers").await;
    assert_strict_headers(&headers, "no [headers] table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_preset() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[headers]\npreset = \"basic\"\n").await;

    let (status, headers, _) = get(&proxy, "/plain").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.all("strict-transport-security"),
        vec!["max-age=31536000; includeSubDomains"]
    );
    assert_eq!(headers.all("x-content-type-options"), vec!["nosniff"]);
    assert_eq!(headers.all("x-frame-options"), vec!["SAMEORIGIN"]);
    assert_eq!(
        headers.all("referrer-policy"),
        vec!["strict-origin-when-cross-origin"]
    );
    assert_eq!(
        headers.all("content-security-policy"),
        Vec::<String>::new(),
        "basic adds no CSP"
    );
    assert_eq!(headers.all("permissions-policy"), Vec::<String>::new());
    assert_eq!(
        headers.all("cross-origin-opener-policy"),
        Vec::<String>::new()
    );

    // the upstream's own CSP passes when the preset sets none
    let (_, headers, _) = get(&proxy, "/headers").await;
    assert_eq!(headers.all("content-security-policy"), vec!["upstream-csp"]);
    assert_eq!(headers.all("x-frame-options"), vec!["SAMEORIGIN"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_preset_sets_nothing() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[headers]\npreset = \"off\"\n").await;

    let (status, headers, _) = get(&proxy, "/plain").await;
    assert_eq!(status, 200);
    for (name, _) in STRICT {
        assert_eq!(headers.all(name), Vec::<String>::new(), "off: {name}");
    }
    let (_, headers, _) = get(&proxy, "/headers").await;
    assert_eq!(headers.all("content-security-policy"), vec!["upstream-csp"]);
    assert_eq!(headers.all("x-frame-options"), vec!["SAMEORIGIN"]);
    assert_eq!(headers.all("server"), vec!["upstream-server/1.0"]);
    assert!(headers.get("strict-transport-security").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_override_the_preset_and_set_adds() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(
        &up,
        "[headers]\npreset = \"strict\"\nx_frame_options = \"SAMEORIGIN\"\n\
         strict_transport_security = \"max-age=60\"\n\
         set = { \"X-Robots-Tag\" = \"noindex\" }\n",
    )
    .await;

    let (_, headers, _) = get(&proxy, "/headers").await;
    assert_eq!(headers.all("x-frame-options"), vec!["SAMEORIGIN"]);
    assert_eq!(headers.all("strict-transport-security"), vec!["max-age=60"]);
    assert_eq!(headers.all("x-robots-tag"), vec!["noindex"]);
    // the rest of the preset is unchanged
    assert_eq!(headers.all("content-security-policy"), vec![STRICT[1].1]);
    assert_eq!(headers.all("x-content-type-options"), vec!["nosniff"]);
    assert!(headers.get("server").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_headers_merge_over_the_global_table() {
    let up = TestUpstream::start().await;
    let config = format!(
        "{}\
         [[routes]]\nname = \"media\"\npath = \"/media/\"\nupstream = \"app\"\n\
         headers = {{ content_security_policy = \"default-src 'none'; sandbox\" }}\n\n\
         [[routes]]\nname = \"legacy\"\npath = \"/legacy/\"\nupstream = \"app\"\n\
         headers = {{ content_security_policy = \"\" }}\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n\n\
         [headers]\npreset = \"strict\"\n",
        upstream_toml("app", &[up.server()], "")
    );
    let proxy = TestProxy::start(&config).await;

    let (status, headers, _) = get(&proxy, "/media/a.png").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.all("content-security-policy"),
        vec!["default-src 'none'; sandbox"]
    );
    assert_eq!(
        headers.all("x-frame-options"),
        vec!["DENY"],
        "the rest of [headers] stays"
    );
    assert_eq!(headers.all("strict-transport-security"), vec![STRICT[0].1]);

    // "" in a route: not added; the upstream's own value passes through, one copy
    let (_, headers, _) = get(&proxy, "/legacy/headers").await;
    assert_eq!(headers.all("content-security-policy"), Vec::<String>::new());
    // /legacy/headers is not /headers on the upstream: ask for the upstream's own CSP
    let route_only = format!(
        "{}\
         [[routes]]\nname = \"legacy\"\npath = \"/\"\nupstream = \"app\"\n\
         headers = {{ content_security_policy = \"\" }}\n",
        upstream_toml("app", &[up.server()], "")
    );
    let proxy2 = TestProxy::start(&route_only).await;
    let (_, headers, _) = get(&proxy2, "/headers").await;
    assert_eq!(headers.all("content-security-policy"), vec!["upstream-csp"]);
    assert_eq!(headers.all("x-frame-options"), vec!["DENY"]);
    assert_eq!(headers.all("x-content-type-options"), vec!["nosniff"]);
}

/// The proxy's own answers carry the headers too: redirect, respond, 400, 404, 405, 413, 502,
/// 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_response_carries_the_headers() {
    let up = TestUpstream::start().await;
    let dead = dead_addr().await;
    let config = format!(
        "{}{}\
         [[routes]]\nname = \"old\"\npath = \"/old/\"\nredirect = {{ to = \"https://new.example.com/{{rest}}\", status = 301 }}\n\n\
         [[routes]]\nname = \"gone\"\npath = \"/gone/\"\nrespond = {{ status = 410, body = \"gone\" }}\n\n\
         [[routes]]\nname = \"post\"\npath = \"/post-only/\"\nmethods = [\"POST\"]\nupstream = \"app\"\n\n\
         [[routes]]\nname = \"dead\"\npath = \"/dead/\"\nupstream = \"dead\"\n\n\
         [[routes]]\nname = \"app\"\npath = \"/app/\"\nupstream = \"app\"\n\n\
         [[routes]]\nname = \"slow\"\npath = \"/slow/\"\nupstream = \"app\"\n\n\
         [client]\nmax_body = \"1KiB\"\nmax_header_bytes = \"4KiB\"\n",
        upstream_toml("app", &[up.server()], "response_timeout = \"300ms\""),
        upstream_toml("dead", &[format!("http://{dead}")], "retries = 0"),
    );
    let proxy = TestProxy::start(&config).await;
    let client = proxy.client_h1();

    let resp = client.get(proxy.url("/old/x")).send().await.unwrap();
    assert_eq!(resp.status(), 301);
    assert_strict_headers(resp.headers(), "redirect route");
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "redirect: X-Request-Id"
    );

    let resp = client.get(proxy.url("/gone/x")).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert_strict_headers(resp.headers(), "respond route");
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "respond: X-Request-Id"
    );

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (client.get(proxy.url("/nowhere")), 404, "404 Not Found\n"),
        (
            client.get(proxy.url("/post-only/")),
            405,
            "405 Method Not Allowed\n",
        ),
        (
            client.post(proxy.url("/app/")).body(vec![0u8; 2048]),
            413,
            "413 Payload Too Large\n",
        ),
        (client.get(proxy.url("/dead/")), 502, "502 Bad Gateway\n"),
        (
            client.get(proxy.url("/slow/2000")),
            504,
            "504 Gateway Timeout\n",
        ),
        (
            client
                .get(proxy.url("/app/"))
                .header("X-Big", "a".repeat(6000)),
            431,
            "431 Request Header Fields Too Large\n",
        ),
    ];
    for (request, status, body) in cases {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        assert_proxy_error(
            &headers,
            status,
            &text,
            body,
            &format!("proxy's own {status}"),
        );
    }

    // 400 for a path above the root, sent raw
    let resp = one_response(&proxy.raw_h1(&get_close("/app/../../x", "localhost")).await);
    assert_eq!(resp.status, 400);
    assert_proxy_error(
        &resp,
        400,
        &resp.body_str(),
        "400 Bad Request\n",
        "proxy's own 400",
    );
}
