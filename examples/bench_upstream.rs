//! The upstream of the load bench (`benches/load/proxy.sh`): a keep-alive HTTP server that
//! answers every request with the same small HTML page, as cheaply as hyper can. One thread
//! (a current-thread runtime), HTTP/1.1 and cleartext HTTP/2 (prior knowledge, for h2load's
//! direct row). It sends a `Server` and an `X-Powered-By` header, which both proxies must strip.
//! `GET /__bench/connections` answers how many connections it has accepted (that one
//! included): the bench reads it before and after a run to count the proxy's new upstream
//! connections.
//!
//!   cargo build --release --example bench_upstream
//!   target/release/examples/bench_upstream 127.0.0.1:18080

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// About what a small JSON or HTML answer of an app weighs (499 bytes).
const PAGE: &[u8] = b"<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
<title>rampart bench</title></head>\n<body>\n<h1>Hello from the bench upstream</h1>\n\
<p>This page is the same for every request: the bench measures the proxy in front of it, not \
the app. Its size is that of a small page or a JSON answer of an API.</p>\n\
<ul><li>one</li><li>two</li><li>three</li><li>four</li><li>five</li><li>six</li></ul>\n\
<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</p>\n\
</body>\n</html>\n";

/// Connections accepted since start.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/__bench/connections" {
        let count = ACCEPTED.load(Ordering::Relaxed).to_string();
        return Ok(Response::new(Full::new(Bytes::from(count))));
    }
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::SERVER, HeaderValue::from_static("bench-upstream"));
    headers.insert("x-powered-by", HeaderValue::from_static("hyper"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_upstream listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: keep serving the connections we have.
            Err(err) => {
                eprintln!("accept: {err}");
                continue;
            }
        };
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service_fn(answer))
                .await;
        });
    }
}
