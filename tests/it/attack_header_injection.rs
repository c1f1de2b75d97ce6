//! Header injection: CR/LF in headers, redirect template injection, spoofed forwarding
//! headers and request ids.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_and_controls_in_request_headers_are_refused() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    for (what, attack) in [
        ("bare CR splitting a value", &b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rX-Injected: 1\r\nConnection: close\r\n\r\n"[..]),
        ("bare LF inside a value then a name without colon", &b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\nX-Injected 1\r\nConnection: close\r\n\r\n"[..]),
        ("NUL", &b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00X-Injected: 1\r\nConnection: close\r\n\r\n"[..]),
        ("control char in a name", &b"GET / HTTP/1.1\r\nHost: localhost\r\nX-\x01A: a\r\nConnection: close\r\n\r\n"[..]),
        ("CR in the request line", &b"GET /a\rX-Injected: 1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..]),
    ] {
        let raw = proxy.raw_h1(attack).await;
        let responses = parse_responses(&raw);
        // Refused by hyper's parser or by ours: either way exactly one 400, with our headers.
        assert_eq!(responses.len(), 1, "{what}: {:?}", String::from_utf8_lossy(&raw));
        let resp = &responses[0];
        assert_eq!(resp.status, 400, "{what}");
        assert_strict_headers(resp, what);
        assert!(
            up.requests().iter().all(|r| r.header("x-injected").is_none()),
            "{what}: an injected header reached the upstream"
        );
    }
    assert_eq!(up.count(), 0);
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_templates_cannot_be_turned_into_open_redirects_or_header_injection() {
    let config = "[[routes]]\nname = \"rel\"\npath = \"/go/\"\nredirect = { to = \"/{rest}\", status = 301 }\n\n\
                  [[routes]]\nname = \"new\"\npath = \"/old/\"\nredirect = { to = \"/new/{rest}\", status = 301 }\n\n\
                  [[routes]]\nname = \"q\"\npath = \"/q/\"\nredirect = { to = \"/search?{query}\", status = 301 }\n";
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .config(config)
        .config(&simple_config(&up).replace("path = \"/\"", "path = \"/app/\""))
        .start()
        .await;

    let attacks = [
        "/go//evil.com",
        "/go//evil.com/",
        "/go/%2F%2Fevil.com",
        "/go/%2fevil.com",
        "/go/%5Cevil.com",
        "/go/%5C%5Cevil.com",
        "/go/%09/evil.com",
        "/go/%0d%0aSet-Cookie:%20pwned=1",
        "/go/x%0d%0aSet-Cookie:%20pwned=1",
        "/go/x%0aLocation:%20https://evil.com",
        "/old//evil.com",
        "/old/%2F%2Fevil.com",
        "/old/..%2F..%2F%2Fevil.com",
        "/old/%0d%0aSet-Cookie:%20pwned=1",
        "/q/?a=%0d%0aSet-Cookie:%20pwned=1",
        "/q/?%0d%0a%0d%0a<script>",
    ];
    for attack in attacks {
        let raw = proxy.raw_h1(&get_close(attack, "localhost")).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let responses = parse_responses(&raw);
        assert_eq!(responses.len(), 1, "{attack}: {text:?}");
        let resp = &responses[0];
        assert!(
            resp.status == 301 || resp.status == 400 || resp.status == 404,
            "{attack}: status {}",
            resp.status
        );
        assert!(
            resp.header("set-cookie").is_none(),
            "{attack}: injected Set-Cookie: {text:?}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("\r\nset-cookie"),
            "{attack}: injected header line"
        );
        assert!(
            resp.header_all("location").len() <= 1,
            "{attack}: several Location headers"
        );
        if let Some(loc) = resp.header("location") {
            assert!(
                !loc.contains('\r') && !loc.contains('\n') && !loc.contains('\t'),
                "{attack}: control char in Location {loc:?}"
            );
            assert!(
                loc.starts_with('/'),
                "{attack}: a relative template became {loc:?}"
            );
            let second = loc.as_bytes().get(1).copied();
            assert!(
                second != Some(b'/') && second != Some(b'\\'),
                "{attack}: protocol-relative Location {loc:?} (open redirect)"
            );
            assert!(
                !loc.contains('\\'),
                "{attack}: backslash in Location {loc:?}"
            );
        }
    }
    proxy.assert_still_serves_at("/app/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_are_replaced() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let attack = "GET /spoof HTTP/1.1\r\nHost: app.example.com\r\n\
        X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\
        X-Real-IP: 10.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.example\r\n\
        Connection: close\r\n\r\n";
    let resp = one_response(&proxy.raw_h1(attack.as_bytes()).await);
    assert_eq!(resp.status, 200);
    let got = up.last();
    assert_eq!(got.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(got.header_all("x-real-ip"), vec!["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(got.header_all("x-forwarded-host"), vec!["app.example.com"]);
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_request_ids_are_replaced() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let long = "b".repeat(129);
    for id in [
        "evil id",
        "id;rm -rf",
        "id%0d%0aSet-Cookie:x",
        "é-unicode",
        "{\"json\":1}",
        long.as_str(),
    ] {
        let attack = format!(
            "GET /rid HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n"
        );
        let resp = one_response(&proxy.raw_h1(attack.as_bytes()).await);
        assert_eq!(resp.status, 200, "{id:?}");
        assert_eq!(resp.header_all("x-request-id").len(), 1, "{id:?}");
        let echoed = resp.header("x-request-id").unwrap();
        assert!(
            is_generated_request_id(echoed),
            "{id:?} was kept as {echoed:?}"
        );
        assert_eq!(
            up.last().header_all("x-request-id"),
            vec![echoed.to_string()]
        );
    }

    // two ids from the client: one valid id downstream, never both
    let attack = "GET /rid HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: first\r\nX-Request-Id: second\r\nConnection: close\r\n\r\n";
    let resp = one_response(&proxy.raw_h1(attack.as_bytes()).await);
    assert_eq!(resp.header_all("x-request-id").len(), 1);
    assert_eq!(up.last().header_all("x-request-id").len(), 1);
    proxy.assert_still_serves().await;
}
