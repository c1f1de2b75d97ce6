//! CSP nonces and violation reports (DESIGN §5b): `{nonce}` filled per response and passed
//! upstream as `X-CSP-Nonce`; `csp_reports = true` and the report endpoint, with reqwest over
//! HTTP/1.1 and HTTP/2, with the real binary's log line, and with headless Chromium.

use crate::common;

use base64::Engine;
use common::*;

const POLICY: &str =
    "script-src 'nonce-{nonce}' 'strict-dynamic'; object-src 'none'; base-uri 'none'";

fn nonce_in(csp: &str) -> String {
    let start = csp.find("'nonce-").expect("a nonce source") + "'nonce-".len();
    let end = start + csp[start..].find('\'').expect("closing quote");
    csp[start..end].to_string()
}

#[tokio::test]
async fn every_response_gets_a_fresh_nonce_and_the_upstream_the_same_one() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::builder()
        .config(&format!(
            "[headers]\ncontent_security_policy = {POLICY:?}\n\
             content_security_policy_report_only = \"style-src 'nonce-{{nonce}}'\"\n\
             {}\n\
             [[routes]]\nname = \"plain\"\npath = \"/plain/\"\nupstream = \"app\"\n\
             headers = {{ content_security_policy = \"default-src 'self'\", content_security_policy_report_only = \"\" }}\n\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            upstream_toml("app", &[up.server()], "")
        ))
        .start()
        .await;

    let mut nonces = std::collections::HashSet::new();
    for (label, client) in [("h1", proxy.client_h1()), ("h2", proxy.client_h2())] {
        for _ in 0..3 {
            let resp = client
                .get(proxy.url("/page"))
                .header("x-csp-nonce", "attacker-chosen")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{label}");
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_string();
            let report_only = resp.headers()["content-security-policy-report-only"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(!csp.contains("{nonce}"), "{csp}");
            let nonce = nonce_in(&csp);
            assert_eq!(
                csp,
                POLICY.replace("{nonce}", &nonce),
                "{label}: the rest of the policy as written"
            );
            assert_eq!(report_only, format!("style-src 'nonce-{nonce}'"), "{label}");
            // At least 128 random bits, base64.
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(nonce.trim_end_matches('='))
                .unwrap_or_else(|e| panic!("{nonce} is not base64: {e}"));
            assert!(bytes.len() >= 16, "{nonce}");
            // The upstream got this response's nonce, never the client's.
            assert_eq!(
                up.last().header_all("x-csp-nonce"),
                vec![nonce.clone()],
                "{label}"
            );
            assert!(nonces.insert(nonce), "{label}: a nonce was used twice");
        }
    }

    // A route whose policy has no placeholder: no nonce upstream (the client's removed too).
    let resp = proxy
        .client_h1()
        .get(proxy.url("/plain/x"))
        .header("x-csp-nonce", "attacker-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-security-policy"],
        "default-src 'self'"
    );
    assert!(resp
        .headers()
        .get("content-security-policy-report-only")
        .is_none());
    assert_eq!(up.last().header("x-csp-nonce"), None);

    // The proxy's own answers (a 400 before any route) carry a filled policy too.
    let resp = one_response(
        &proxy
            .raw_h1(b"GET / HTTP/1.1\r\nHost: not a host\r\nConnection: close\r\n\r\n")
            .await,
    );
    assert_eq!(resp.status, 400);
    let csp = resp.header("content-security-policy").unwrap();
    assert!(!csp.contains("{nonce}") && csp.contains("'nonce-"), "{csp}");
}
