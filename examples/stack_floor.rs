//! The floor of rampart's stack, for the load bench (`benches/load/proxy.sh`): a TLS-terminating
//! proxy built from the same crates (tokio, tokio-rustls with ring, hyper's server, hyper-util's
//! pooled client) that does nothing else: no routing, no policy, no forwarding headers,
//! no metrics, no timeouts. Only HSTS is added, so that a response is not free of all work. What
//! rampart costs above this row is its own code; what this row costs above nginx is the stack.
//!
//!   cargo run --release --example stack_floor -- LISTEN UPSTREAM CERT KEY
//!   e.g. 127.0.0.1:18545 127.0.0.1:18580 certs/dev.crt certs/dev.key
//!
//! Not a product: it has none of rampart's protections. Never expose it.

use std::sync::Arc;

use http::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, cert, key] = args.as_slice() else {
        return Err("usage: stack_floor LISTEN UPSTREAM CERT KEY".into());
    };
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let client: Client<_, BoxBody<Bytes, hyper::Error>> =
        Client::builder(TokioExecutor::new()).build_http();
    let upstream: Arc<str> = upstream.as_str().into();
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, client, upstream) = (acceptor.clone(), client.clone(), upstream.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                forward(client.clone(), upstream.clone(), request)
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

async fn forward(
    client: Client<
        hyper_util::client::legacy::connect::HttpConnector,
        BoxBody<Bytes, hyper::Error>,
    >,
    upstream: Arc<str>,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, Error> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = format!("http://{upstream}{path}").parse()?;
    parts.version = http::Version::HTTP_11;
    let mut response = client
        .request(Request::from_parts(parts, body.boxed()))
        .await?;
    response.headers_mut().insert(
        STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    Ok(response)
}
