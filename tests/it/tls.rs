//! The HTTPS listener: protocol versions, ALPN, SNI certificate choice, handshake timeout.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_are_accepted_by_default() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let s13 = tls_connect(proxy.https, Some("localhost"), &[b"http/1.1"], None)
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(
        s13.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    let mut s12 = tls_connect(
        proxy.https,
        Some("localhost"),
        &[b"http/1.1"],
        Some(&[&rustls::version::TLS12]),
    )
    .await
    .expect("TLS 1.2 handshake");
    assert_eq!(
        s12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    s12.write_all(&get_close("/tls12", "localhost"))
        .await
        .unwrap();
    let resp = one_response(&read_until_close(&mut s12, RAW_READ_LIMIT).await);
    assert_eq!(resp.status, 200);
    assert_eq!(up.last().path, "/tls12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_13_refuses_a_tls12_only_client() {
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .tls("min_version = \"1.3\"")
        .config(&simple_config(&up))
        .start()
        .await;

    let refused = tls_connect(
        proxy.https,
        Some("localhost"),
        &[b"http/1.1"],
        Some(&[&rustls::version::TLS12]),
    )
    .await;
    assert!(refused.is_err(), "a TLS 1.2-only client must be refused");

    let ok = tls_connect(proxy.https, Some("localhost"), &[b"http/1.1"], None)
        .await
        .expect("TLS 1.3 still works");
    assert_eq!(
        ok.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

/// A hand-written TLS 1.0 ClientHello (no supported_versions extension) is refused: an alert or
/// a close, never a ServerHello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls10_client_hello_gets_an_alert() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x01]); // client_version TLS 1.0
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // AES128-SHA, AES256-SHA
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
                                           // extensions: server_name localhost
    let name = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);

    let mut tcp = TcpStream::connect(proxy.https).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let answer = read_until_close(&mut tcp, Duration::from_secs(3)).await;
    // Refused: an alert record (0x15) or a plain close, never a ServerHello (0x16).
    if let Some(first) = answer.first() {
        assert_eq!(*first, 0x15, "expected an alert record, got {answer:02x?}");
    }
    assert!(
        find(&answer, &[0x16, 0x03]).is_none(),
        "no handshake record (ServerHello) for TLS 1.0: {answer:02x?}"
    );
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiates_h2_and_http11() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;

    let h2 = tls_connect(proxy.https, Some("localhost"), &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = tls_connect(proxy.https, Some("localhost"), &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let resp = proxy
        .client_h2()
        .get(proxy.url("/alpn"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let resp = proxy
        .client_h1()
        .get(proxy.url("/alpn"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_matching_certificate_and_falls_back_to_the_default() {
    let up = TestUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .extra_cert(&["api.example.com"])
        .extra_cert(&["*.example.org"])
        .config(&simple_config(&up))
        .start()
        .await;
    let default = &proxy.cert_der;
    let api = &proxy.extra_cert_ders[0];
    let wild = &proxy.extra_cert_ders[1];

    let cases: &[(Option<&str>, &Vec<u8>, &str)] = &[
        (Some("api.example.com"), api, "exact SNI"),
        (Some("API.Example.COM"), api, "SNI is case-insensitive"),
        (Some("a.example.org"), wild, "wildcard SNI"),
        (
            Some("deep.a.example.org"),
            wild,
            "wildcard SNI, deeper name",
        ),
        (Some("localhost"), default, "default certificate's own name"),
        (Some("unknown.test"), default, "unknown SNI → default"),
        (None, default, "no SNI → default"),
    ];
    for (sni, expected, what) in cases {
        let stream = tls_connect(proxy.https, *sni, &[b"http/1.1"], None)
            .await
            .unwrap_or_else(|e| panic!("{what}: handshake failed: {e}"));
        assert!(
            peer_cert(&stream) == **expected,
            "{what}: wrong certificate"
        );
    }
    // The apex is not covered by its wildcard.
    let apex = tls_connect(proxy.https, Some("example.org"), &[b"http/1.1"], None)
        .await
        .unwrap();
    assert!(
        peer_cert(&apex) == *default,
        "example.org is not matched by *.example.org"
    );

    // reqwest verifies the extra certificate for its name.
    let resp = proxy.client_h1().get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_the_handshake_is_closed() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "[client]\nheader_timeout = \"1s\"\n").await;

    let started = Instant::now();
    let mut tcp = TcpStream::connect(proxy.https).await.unwrap();
    // Half a ClientHello record header, then silence.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        closed.is_ok(),
        "the stalled handshake was not closed within 5 s"
    );
    assert!(
        elapsed >= Duration::from_millis(700),
        "closed too early ({elapsed:?}) for header_timeout = 1s"
    );
    assert!(elapsed < Duration::from_secs(4), "closed after {elapsed:?}");

    // A silent connection (no byte at all) is closed too.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(proxy.https).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a silent connection was not closed within 5 s"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    proxy.assert_still_serves().await;
}

/// Validation writes nothing: a missing certificate with `self_signed_if_missing` is generated
/// in memory and carried by the snapshot, and only `rampart run` writes it (tests/it/binary.rs
/// checks that side). A reload (`MissingCert::Refuse`) never generates one.
#[test]
fn validation_generates_the_development_certificate_without_writing_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("certs/dev.crt");
    let key = dir.path().join("certs/dev.key");
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = {:?}\nkey = {:?}\nself_signed_if_missing = true\n\n\
         [[routes]]\npath = \"/\"\nrespond = {{ status = 200, body = \"ok\" }}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let snapshot = rampart::config::load_str(&text, "dev.toml").unwrap();
    assert!(!cert.exists() && !key.exists(), "validation wrote a file");
    let development = snapshot
        .development_certificate
        .as_ref()
        .expect("no development certificate in the snapshot");
    assert_eq!(development.cert, cert);
    development.write().unwrap();
    assert!(cert.is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Present now: nothing to generate. Gone again on a reload: an error, not a new one.
    let again = rampart::config::load_str(&text, "dev.toml").unwrap();
    assert!(again.development_certificate.is_none());
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(&key).unwrap();
    let reload =
        rampart::config::load_str_with(&text, "dev.toml", rampart::config::MissingCert::Refuse);
    assert!(reload.is_err(), "a reload generated a certificate");
    assert!(!cert.exists());
}
