//! A route's `allow` / `deny` CIDR lists: 403 with the security headers, nothing forwarded; the
//! client IP is the peer, or the nearest untrusted X-Forwarded-For hop behind a trusted proxy.

use crate::common;

use common::*;

/// Routes `/admin/` (with `rules`) and `/` to one upstream, after `client` settings.
async fn proxy_with_rules(up: &TestUpstream, rules: &str, client: &str) -> TestProxy {
    let config = format!(
        "{client}\n{}\n[[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\n{rules}\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[up.server()], "")
    );
    TestProxy::start(&config).await
}

async fn status_of(
    proxy: &TestProxy,
    xff: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = proxy.client_h1().get(proxy.url("/admin/panel"));
    if let Some(xff) = xff {
        request = request.header("X-Forwarded-For", xff);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_outside_the_allow_list_gets_403_and_nothing_is_forwarded() {
    let up = TestUpstream::start().await;
    let proxy = proxy_with_rules(&up, "allow = [\"10.0.0.0/8\"]", "").await;
    let (status, headers, body) = status_of(&proxy, None).await;
    assert_eq!(status, 403);
    assert_strict_headers(&headers, "403");
    assert_proxy_error(&headers, 403, &body, "403 Forbidden\n", "403");
    assert_eq!(
        up.count(),
        0,
        "a refused request never reaches the upstream"
    );
    // Other routes are not affected.
    let resp = proxy
        .client_h2()
        .get(proxy.url("/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_address_passes_and_deny_wins_over_allow() {
    let up = TestUpstream::start().await;
    let proxy = proxy_with_rules(&up, "allow = [\"127.0.0.0/8\"]", "").await;
    assert_eq!(status_of(&proxy, None).await.0, 200);

    let up = TestUpstream::start().await;
    let rules = "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.1\"]";
    let proxy = proxy_with_rules(&up, rules, "").await;
    assert_eq!(status_of(&proxy, None).await.0, 403);
    assert_eq!(up.count(), 0);

    // deny alone: everyone else passes
    let up = TestUpstream::start().await;
    let proxy = proxy_with_rules(&up, "deny = [\"192.0.2.0/24\"]", "").await;
    assert_eq!(status_of(&proxy, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_judged() {
    let up = TestUpstream::start().await;
    let client = "[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let proxy = proxy_with_rules(&up, "allow = [\"203.0.113.0/24\"]", client).await;
    // The peer (127.0.0.1) is trusted: the client is the forwarded address.
    assert_eq!(status_of(&proxy, Some("203.0.113.9")).await.0, 200);
    assert_eq!(status_of(&proxy, Some("198.51.100.1")).await.0, 403);
    // The nearest untrusted hop decides, not what the client wrote at the left.
    assert_eq!(
        status_of(&proxy, Some("203.0.113.9, 198.51.100.1")).await.0,
        403
    );
    // No header: the trusted peer itself, which is not allowed.
    assert_eq!(status_of(&proxy, None).await.0, 403);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_clients_forwarded_for_is_not_believed() {
    let up = TestUpstream::start().await;
    let proxy = proxy_with_rules(&up, "allow = [\"203.0.113.0/24\"]", "").await;
    let (status, _, _) = status_of(&proxy, Some("203.0.113.9")).await;
    assert_eq!(
        status, 403,
        "a spoofed X-Forwarded-For must not open an allow list"
    );
    assert_eq!(up.count(), 0);
}
