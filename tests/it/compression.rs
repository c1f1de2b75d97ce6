//! Response compression of proxied responses: brotli/gzip negotiation, what is and is not
//! compressed, the headers that change with it (Content-Encoding, Content-Length, Vary, ETag,
//! Accept-Ranges), HEAD, streaming with flushes when the upstream pauses, and upstream errors.
//! reqwest is built without its decompression features, so the tests see the bytes on the wire
//! and decode them here.

use crate::common;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

type AppBody = BoxBody<Bytes, io::Error>;
type Handler = dyn Fn(&http::request::Parts) -> Response<AppBody> + Send + Sync;

/// An HTTP/1.1 upstream on `127.0.0.1:0` whose answers the test writes as a closure.
struct App {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    async fn start(
        handler: impl Fn(&http::request::Parts) -> Response<AppBody> + Send + Sync + 'static,
    ) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, _body) = request.into_parts();
                            Ok::<_, Infallible>(handler(&parts))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        App { addr, task }
    }

    /// A proxy with an upstream `app` here: `/plain/` has `compress = false`, `/` the default.
    async fn proxy(&self) -> TestProxy {
        let servers = [format!("http://{}", self.addr)];
        TestProxy::builder()
            .config(&upstream_toml("app", &servers, ""))
            .config(
                "[[routes]]\nname = \"plain\"\npath = \"/plain/\"\nupstream = \"app\"\ncompress = false\n\n\
                 [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
            )
            .start()
            .await
    }
}

/// A response with a known length (hyper writes Content-Length).
fn reply(
    content_type: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Response<AppBody> {
    let full = Full::new(body.into()).map_err(|never: Infallible| match never {});
    let mut response = Response::new(full.boxed());
    if !content_type.is_empty() {
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_str(content_type).unwrap());
    }
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}

/// A body of unknown length (chunked), fed by the test.
struct ChannelBody(mpsc::Receiver<Result<Bytes, io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }
}

/// Compressible text, `len` bytes, the same every time.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(format!("<p>Paragraph {i}: the quick brown fox.</p>\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

async fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => async_compression::tokio::bufread::GzipDecoder::new(bytes)
            .read_to_end(&mut out)
            .await
            .expect("valid gzip"),
        "br" => async_compression::tokio::bufread::BrotliDecoder::new(bytes)
            .read_to_end(&mut out)
            .await
            .expect("valid brotli"),
        other => panic!("unexpected coding {other}"),
    };
    out
}

struct Got {
    status: StatusCode,
    version: http::Version,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn one(&self, name: &str) -> Option<String> {
        self.headers.one(name)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.headers.all(name)
    }
}

async fn get(client: &reqwest::Client, url: &str, accept: Option<&str>) -> Got {
    send(
        client,
        reqwest::Method::GET,
        url,
        &accept.map_or(vec![], |a| vec![("accept-encoding", a)]),
    )
    .await
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("a response");
    Got {
        status: response.status(),
        version: response.version(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("the whole body").to_vec(),
    }
}

/// A compressed answer: the coding, no length, the Vary, the security headers, and the exact
/// original bytes once decoded.
async fn assert_compressed(got: &Got, encoding: &str, original: &[u8], context: &str) {
    assert_eq!(got.status, 200, "{context}");
    assert_eq!(got.all("content-encoding"), [encoding], "{context}");
    assert_eq!(got.one("content-length"), None, "{context}");
    assert_eq!(got.all("vary"), ["Accept-Encoding"], "{context}");
    assert_strict_headers(&got.headers, context);
    assert!(got.one("x-request-id").is_some(), "{context}");
    assert!(
        got.body.len() < original.len() / 4,
        "{context}: {} compressed bytes for {}",
        got.body.len(),
        original.len()
    );
    assert_eq!(decode(encoding, &got.body).await, original, "{context}");
}

/// Passed as the upstream sent it.
fn assert_untouched(got: &Got, original: &[u8], context: &str) {
    assert_eq!(got.status, 200, "{context}");
    assert_eq!(got.one("content-encoding"), None, "{context}");
    assert_eq!(
        got.one("content-length"),
        Some(original.len().to_string()),
        "{context}"
    );
    assert_eq!(got.body, original, "{context}");
    assert_strict_headers(&got.headers, context);
}

async fn html_app(len: usize, headers: &'static [(&'static str, &'static str)]) -> App {
    let page = Bytes::from(text(len));
    App::start(move |_| reply("text/html; charset=utf-8", page.clone(), headers)).await
}

#[tokio::test]
async fn gzip_over_http1() {
    let page = text(20_000);
    let app = html_app(20_000, &[("accept-ranges", "bytes")]).await;
    let proxy = app.proxy().await;
    let got = get(&proxy.client_h1(), &proxy.url("/page"), Some("gzip")).await;
    assert_eq!(got.version, http::Version::HTTP_11);
    assert_compressed(&got, "gzip", &page, "gzip over h1").await;
    // The compressed body has no byte ranges of its own.
    assert_eq!(got.one("accept-ranges"), None);
}

#[tokio::test]
async fn brotli_over_http2_is_preferred_to_gzip() {
    let page = text(20_000);
    let app = html_app(20_000, &[]).await;
    let proxy = app.proxy().await;
    let client = proxy.client_h2();
    for accept in ["gzip, deflate, br, zstd", "br", "gzip;q=0.9, br;q=0.9", "*"] {
        let got = get(&client, &proxy.url("/page"), Some(accept)).await;
        assert_eq!(got.version, http::Version::HTTP_2);
        assert_compressed(&got, "br", &page, accept).await;
    }
}

#[tokio::test]
async fn q_values_choose_or_refuse() {
    let page = text(5000);
    let app = html_app(5000, &[]).await;
    let proxy = app.proxy().await;
    let client = proxy.client_h2();
    for (accept, expected) in [
        ("br;q=0, gzip", Some("gzip")),
        ("br;q=0.5, gzip;q=0.8", Some("gzip")),
        ("gzip;q=0.5, br;q=0.8", Some("br")),
        ("*;q=0.5, br;q=0", Some("gzip")),
        ("x-gzip", Some("gzip")),
        ("gzip;q=0, br;q=0", None),
        ("*;q=0", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("deflate, zstd", None),
        ("", None),
    ] {
        let got = get(&client, &proxy.url("/page"), Some(accept)).await;
        match expected {
            Some(encoding) => assert_compressed(&got, encoding, &page, accept).await,
            None => {
                assert_untouched(&got, &page, accept);
                // Another client could get it compressed: caches must keep them apart.
                assert_eq!(got.all("vary"), ["Accept-Encoding"], "{accept}");
            }
        }
    }
}

#[tokio::test]
async fn without_accept_encoding_nothing_is_compressed_but_vary_is_set() {
    let page = text(5000);
    let app = html_app(5000, &[("etag", "\"v1\""), ("accept-ranges", "bytes")]).await;
    let proxy = app.proxy().await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        let got = get(&client, &proxy.url("/page"), None).await;
        assert_untouched(&got, &page, "no Accept-Encoding");
        assert_eq!(got.all("vary"), ["Accept-Encoding"]);
        // The uncompressed body keeps its strong validator and its ranges.
        assert_eq!(got.one("etag").as_deref(), Some("\"v1\""));
        assert_eq!(got.one("accept-ranges").as_deref(), Some("bytes"));
    }
}

#[tokio::test]
async fn an_upstream_that_compressed_is_not_compressed_again() {
    let page = text(20_000);
    let mut encoder = async_compression::tokio::write::GzipEncoder::new(Vec::new());
    encoder.write_all(&page).await.unwrap();
    encoder.shutdown().await.unwrap();
    let gzipped = Bytes::from(encoder.into_inner());
    let app = {
        let gzipped = gzipped.clone();
        App::start(move |_| {
            reply(
                "text/html",
                gzipped.clone(),
                &[("content-encoding", "gzip"), ("vary", "Accept-Encoding")],
            )
        })
        .await
    };
    let proxy = app.proxy().await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        let got = get(&client, &proxy.url("/page"), Some("br, gzip")).await;
        assert_eq!(got.all("content-encoding"), ["gzip"]);
        assert_eq!(got.one("content-length"), Some(gzipped.len().to_string()));
        assert_eq!(got.all("vary"), ["Accept-Encoding"]);
        assert_eq!(got.body, gzipped.as_ref());
        assert_eq!(decode("gzip", &got.body).await, page);
    }
}

#[tokio::test]
async fn content_types_that_do_not_shrink_pass_untouched() {
    let data = text(5000);
    let app = {
        let data = Bytes::from(data.clone());
        App::start(move |parts| {
            // /type/image/png → Content-Type: image/png
            let content_type = parts.uri.path().trim_start_matches("/type/").to_string();
            reply(&content_type, data.clone(), &[])
        })
        .await
    };
    let proxy = app.proxy().await;
    let client = proxy.client_h2();
    for content_type in [
        "image/png",
        "image/jpeg",
        "video/mp4",
        "audio/mpeg",
        "application/zip",
        "application/gzip",
        "font/woff2",
        "application/octet-stream",
        "text/event-stream",
    ] {
        let got = get(
            &client,
            &proxy.url(&format!("/type/{content_type}")),
            Some("br, gzip"),
        )
        .await;
        assert_untouched(&got, &data, content_type);
        assert_eq!(got.one("vary"), None, "{content_type}");
    }
    for content_type in [
        "text/css",
        "text/plain",
        "application/json",
        "application/javascript",
        "application/ld+json",
        "application/xml",
        "image/svg+xml",
        "application/wasm",
    ] {
        let got = get(
            &client,
            &proxy.url(&format!("/type/{content_type}")),
            Some("gzip"),
        )
        .await;
        assert_compressed(&got, "gzip", &data, content_type).await;
    }
    // Without a Content-Type nothing is known of the body: it passes.
    let got = get(&client, &proxy.url("/type/"), Some("gzip")).await;
    assert_untouched(&got, &data, "no content type");
}

#[tokio::test]
async fn bodies_below_the_minimum_size_pass_untouched() {
    let app = App::start(|parts| {
        let len: usize = parts.uri.path().trim_start_matches('/').parse().unwrap();
        reply("text/html", text(len), &[])
    })
    .await;
    let proxy = app.proxy().await;
    let client = proxy.client_h1();
    let got = get(&client, &proxy.url("/1023"), Some("gzip")).await;
    assert_untouched(&got, &text(1023), "1023 bytes");
    assert_eq!(got.one("vary"), None);
    let got = get(&client, &proxy.url("/1024"), Some("gzip")).await;
    assert_eq!(got.all("content-encoding"), ["gzip"]);
    assert_eq!(decode("gzip", &got.body).await, text(1024));
}

#[tokio::test]
async fn a_route_with_compress_false_passes_untouched() {
    let page = text(20_000);
    let app = html_app(20_000, &[]).await;
    let proxy = app.proxy().await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        let got = get(&client, &proxy.url("/plain/page"), Some("br, gzip")).await;
        assert_untouched(&got, &page, "compress = false");
        assert_eq!(got.one("vary"), None);
    }
}

#[tokio::test]
async fn ranges_pass_uncompressed() {
    let page = text(20_000);
    let app = {
        let page = Bytes::from(page.clone());
        App::start(move |parts| {
            if parts.headers.contains_key("range") && parts.uri.path() != "/ignores-range" {
                let mut response = reply(
                    "text/html",
                    page.slice(100..200),
                    &[("content-range", "bytes 100-199/20000")],
                );
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                response
            } else {
                reply("text/html", page.clone(), &[("accept-ranges", "bytes")])
            }
        })
        .await
    };
    let proxy = app.proxy().await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        let got = send(
            &client,
            reqwest::Method::GET,
            &proxy.url("/page"),
            &[("accept-encoding", "gzip, br"), ("range", "bytes=100-199")],
        )
        .await;
        assert_eq!(got.status, 206);
        assert_eq!(got.one("content-encoding"), None);
        assert_eq!(
            got.one("content-range").as_deref(),
            Some("bytes 100-199/20000")
        );
        assert_eq!(got.one("content-length").as_deref(), Some("100"));
        assert_eq!(got.body, &page[100..200]);
        assert_eq!(got.one("vary"), None);

        // An upstream that ignores Range answers 200 with the whole body: that is compressed.
        let got = send(
            &client,
            reqwest::Method::GET,
            &proxy.url("/ignores-range"),
            &[("accept-encoding", "gzip"), ("range", "bytes=100-199")],
        )
        .await;
        assert_compressed(&got, "gzip", &page, "200 to a range request").await;
    }
}

#[tokio::test]
async fn head_gets_the_headers_get_gets_and_no_body() {
    let app = html_app(20_000, &[("etag", "\"v7\"")]).await;
    let proxy = app.proxy().await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        let full = send(
            &client,
            reqwest::Method::GET,
            &proxy.url("/page"),
            &[("accept-encoding", "gzip")],
        )
        .await;
        let head = send(
            &client,
            reqwest::Method::HEAD,
            &proxy.url("/page"),
            &[("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        for name in [
            "content-encoding",
            "content-length",
            "vary",
            "etag",
            "content-type",
        ] {
            assert_eq!(head.all(name), full.all(name), "{name}");
        }
        assert_eq!(head.all("content-encoding"), ["gzip"]);
        assert_eq!(head.all("etag"), ["W/\"v7\""]);
        // The connection stays usable after the HEAD answer.
        let again = get_with(&client, &proxy, "/page").await;
        assert_eq!(again, 200);
    }

    // On the wire (HTTP/1.1): no Content-Length, no Transfer-Encoding, no body bytes.
    let raw = proxy
        .raw_h1(b"HEAD /page HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n")
        .await;
    let head_end = find(&raw, b"\r\n\r\n").expect("a response head") + 4;
    assert_eq!(raw.len(), head_end, "no body after a HEAD answer");
    let response = one_response(&raw);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("br"));
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("transfer-encoding"), None);
    assert_strict_headers(&response, "HEAD");
}

async fn get_with(client: &reqwest::Client, proxy: &TestProxy, path: &str) -> u16 {
    client
        .get(proxy.url(path))
        .send()
        .await
        .expect("a response")
        .status()
        .as_u16()
}

#[tokio::test]
async fn no_transform_is_respected() {
    let page = text(20_000);
    let app = App::start(|parts| {
        let cache_control = if parts.uri.path() == "/no-transform" {
            "public, No-Transform"
        } else {
            "public, max-age=60"
        };
        reply(
            "text/html",
            text(20_000),
            &[("cache-control", cache_control)],
        )
    })
    .await;
    let proxy = app.proxy().await;
    let client = proxy.client_h2();
    // The upstream's no-transform: left exactly as sent.
    let got = get(&client, &proxy.url("/no-transform"), Some("br, gzip")).await;
    assert_untouched(&got, &page, "response no-transform");
    assert_eq!(got.one("vary"), None);
    // The client's no-transform: not compressed for it, but the response still varies.
    let got = send(
        &client,
        reqwest::Method::GET,
        &proxy.url("/page"),
        &[
            ("accept-encoding", "br, gzip"),
            ("cache-control", "no-transform"),
        ],
    )
    .await;
    assert_untouched(&got, &page, "request no-transform");
    assert_eq!(got.all("vary"), ["Accept-Encoding"]);
    let got = get(&client, &proxy.url("/page"), Some("br, gzip")).await;
    assert_compressed(&got, "br", &page, "without no-transform").await;
}

#[tokio::test]
async fn vary_is_merged_without_duplicates() {
    let app = App::start(|parts| {
        let vary: &[(&str, &str)] = match parts.uri.path() {
            "/cookie" => &[("vary", "Cookie")],
            "/already" => &[("vary", "cookie, accept-encoding")],
            "/star" => &[("vary", "*")],
            _ => &[],
        };
        reply("text/html", text(5000), vary)
    })
    .await;
    let proxy = app.proxy().await;
    let client = proxy.client_h1();
    for (path, expected) in [
        ("/cookie", vec!["Cookie", "Accept-Encoding"]),
        ("/already", vec!["cookie, accept-encoding"]),
        ("/star", vec!["*"]),
        ("/none", vec!["Accept-Encoding"]),
    ] {
        for accept in [Some("gzip"), None] {
            let got = get(&client, &proxy.url(path), accept).await;
            assert_eq!(got.all("vary"), expected, "{path} {accept:?}");
            let encoding = accept.map(|_| "gzip".to_string());
            assert_eq!(got.one("content-encoding"), encoding, "{path} {accept:?}");
        }
    }
}

#[tokio::test]
async fn strong_etags_are_weakened_when_compressed() {
    let app = App::start(|parts| {
        let etag = if parts.uri.path() == "/weak" {
            "W/\"w1\""
        } else {
            "\"s1\""
        };
        reply("text/html", text(5000), &[("etag", etag)])
    })
    .await;
    let proxy = app.proxy().await;
    let client = proxy.client_h2();
    let got = get(&client, &proxy.url("/strong"), Some("br")).await;
    assert_eq!(got.all("etag"), ["W/\"s1\""]);
    let got = get(&client, &proxy.url("/weak"), Some("br")).await;
    assert_eq!(got.all("etag"), ["W/\"w1\""]);
    let got = get(&client, &proxy.url("/strong"), None).await;
    assert_eq!(got.all("etag"), ["\"s1\""]);
}

#[tokio::test]
async fn error_pages_are_compressed_and_empty_statuses_pass() {
    let app = App::start(|parts| {
        let status: u16 = parts.uri.path().trim_start_matches('/').parse().unwrap();
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else {
            text(5000)
        };
        let mut response = reply("text/html", body, &[("etag", "\"e\"")]);
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    })
    .await;
    let proxy = app.proxy().await;
    let client = proxy.client_h1();
    let got = get(&client, &proxy.url("/404"), Some("gzip")).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.all("content-encoding"), ["gzip"]);
    assert_eq!(decode("gzip", &got.body).await, text(5000));
    for status in [204, 304] {
        let got = get(&client, &proxy.url(&format!("/{status}")), Some("gzip")).await;
        assert_eq!(got.status, status);
        assert_eq!(got.one("content-encoding"), None, "{status}");
        assert_eq!(got.one("vary"), None, "{status}");
        assert_eq!(got.all("etag"), ["\"e\""], "{status}");
        assert!(got.body.is_empty());
    }
}

/// An upstream whose body the test releases part by part.
async fn streaming_app() -> (App, mpsc::Sender<Result<Bytes, io::Error>>) {
    let (tx, rx) = mpsc::channel(4);
    let rx = Mutex::new(Some(rx));
    let app = App::start(move |_| {
        let rx = rx.lock().unwrap().take().expect("one request");
        let mut response = Response::new(ChannelBody(rx).boxed());
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        response
    })
    .await;
    (app, tx)
}

/// Feeds compressed chunks to a decoder as they arrive.
struct StreamDecoder {
    gzip: async_compression::tokio::write::GzipDecoder<Vec<u8>>,
}

impl StreamDecoder {
    async fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.gzip.write_all(bytes).await.unwrap();
        self.gzip.flush().await.unwrap();
        self.gzip.get_ref().clone()
    }
}

#[tokio::test]
async fn bodies_stream_and_are_flushed_when_the_upstream_pauses() {
    for h2 in [false, true] {
        let (app, tx) = streaming_app().await;
        let proxy = app.proxy().await;
        let client = if h2 {
            proxy.client_h2()
        } else {
            proxy.client_h1()
        };
        let first = text(3000);
        let rest = text(200_000);
        tx.send(Ok(Bytes::from(first.clone()))).await.unwrap();
        let mut response = client
            .get(proxy.url("/events"))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().one("content-encoding").as_deref(),
            Some("gzip")
        );
        assert_eq!(response.headers().one("content-length"), None);

        // The upstream has sent the first part and waits: the client decodes all of it.
        let mut decoder = StreamDecoder {
            gzip: async_compression::tokio::write::GzipDecoder::new(Vec::new()),
        };
        let mut decoded = Vec::new();
        while decoded.len() < first.len() {
            let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
                .await
                .expect("the first part arrives while the upstream waits")
                .unwrap()
                .expect("the stream is not over");
            decoded = decoder.push(&chunk).await;
        }
        assert_eq!(decoded, first, "h2: {h2}");

        // The rest, in pieces, then the end.
        let feeder = tokio::spawn(async move {
            for piece in rest.chunks(10_000) {
                tx.send(Ok(Bytes::copy_from_slice(piece))).await.unwrap();
            }
        });
        while let Some(chunk) = response.chunk().await.unwrap() {
            decoded = decoder.push(&chunk).await;
        }
        feeder.await.unwrap();
        let mut whole = first.clone();
        whole.extend_from_slice(&text(200_000));
        decoder.gzip.shutdown().await.unwrap();
        assert_eq!(decoder.gzip.get_ref(), &whole, "h2: {h2}");
        assert_eq!(decoded.len(), whole.len());
    }
}

#[tokio::test]
async fn bodies_of_unknown_length_are_compressed() {
    let up = TestUpstream::start().await;
    let proxy = TestProxy::simple(&up, "").await;
    // /stream/3/20: three chunked lines of text/plain, 24 bytes, length not declared.
    let got = get(&proxy.client_h1(), &proxy.url("/stream/3/20"), Some("br")).await;
    assert_eq!(got.all("content-encoding"), ["br"]);
    assert_eq!(
        decode("br", &got.body).await,
        b"chunk-0\nchunk-1\nchunk-2\n"
    );
}

#[tokio::test]
async fn a_large_body_round_trips() {
    let page = text(4 << 20);
    let app = html_app(4 << 20, &[]).await;
    let proxy = app.proxy().await;
    for (client, accept) in [(proxy.client_h1(), "br"), (proxy.client_h2(), "gzip")] {
        let got = get(&client, &proxy.url("/big"), Some(accept)).await;
        assert_compressed(&got, accept, &page, accept).await;
    }
}

#[tokio::test]
async fn an_upstream_error_mid_body_breaks_the_compressed_stream() {
    // Declares 5000 bytes, sends 2000, closes.
    let mut canned = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n".to_vec();
    canned.extend_from_slice(&text(2000));
    let up = RawUpstream::start(canned).await;
    let proxy = TestProxy::builder()
        .config(&upstream_toml("app", &[up.server()], ""))
        .config("[[routes]]\npath = \"/\"\nupstream = \"app\"\n")
        .start()
        .await;
    for client in [proxy.client_h1(), proxy.client_h2()] {
        // The break may come before the compressor has written anything, and then the head
        // never leaves either (the upstream connection is driven in the request's task and
        // can fail within the same poll): the exchange fails whole, which is as good.
        let Ok(response) = client
            .get(proxy.url("/page"))
            .header("accept-encoding", "gzip")
            .send()
            .await
        else {
            continue;
        };
        assert_eq!(
            response.headers().one("content-encoding").as_deref(),
            Some("gzip")
        );
        let body = response.bytes().await;
        assert!(
            body.is_err(),
            "a broken upstream body must not end cleanly: {body:?}"
        );
    }
}

#[test]
fn compress_true_is_refused_where_nothing_is_proxied() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.crt");
    let key = dir.path().join("c.key");
    rampart::certgen::write_self_signed(&["localhost".to_string()], &cert, &key).unwrap();
    let head = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = {:?}\nkey = {:?}\n\n[upstreams.app]\nservers = [\"http://127.0.0.1:9\"]\n\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let text = format!(
        "{head}[[routes]]\npath = \"/gone/\"\nrespond = {{ status = 410, body = \"gone\" }}\ncompress = true\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"app\"\ncompress = true\n"
    );
    let errors = match rampart::config::load_str(&text, "test.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.to_string(),
    };
    let line = text.lines().position(|l| l == "compress = true").unwrap() + 1;
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(
        errors.starts_with(&format!("test.toml:{line}:")),
        "{errors}"
    );
    assert!(errors.contains("routes[0].compress"), "{errors}");

    // `compress = false` there is harmless.
    let ok = text.replacen("compress = true", "compress = false", 1);
    assert!(rampart::config::load_str(&ok, "test.toml").is_ok());
}
