//! Upstream pools: one keep-alive HTTP/1.1 client per server (TCP or unix socket), picked
//! round-robin.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::UnixStream;

use crate::body::RequestBody;

/// Where an app server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// `http://host:port` (host may be a name, resolved at connect time)
    Http(Authority),
    /// `unix:/run/gunicorn.sock`
    Unix(PathBuf),
}

impl ServerAddr {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix server is written \"unix:/path/to/app.sock\"".into());
            }
            return Ok(ServerAddr::Unix(PathBuf::from(path)));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| format!("`{text}` is not a URL like \"http://127.0.0.1:8000\""))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(
                "upstream servers are \"http://host:port\" or \"unix:/path\" (TLS to upstreams is not supported)"
                    .into(),
            );
        }
        if uri.path() != "/" || uri.query().is_some() {
            return Err("an upstream server URL has no path (\"http://host:port\")".into());
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| "missing host".to_string())?;
        if authority.as_str().contains('@') {
            return Err("credentials in an upstream URL are not supported".into());
        }
        Ok(ServerAddr::Http(authority))
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
}

/// A named group of app servers.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub settings: UpstreamSettings,
    servers: Vec<UpstreamServer>,
    next: AtomicUsize,
}

#[derive(Debug)]
pub struct UpstreamServer {
    /// For logs only, never for clients.
    pub label: String,
    /// What the pool is keyed by and what request URIs are built with.
    authority: Authority,
    client: ServerClient,
}

#[derive(Debug)]
enum ServerClient {
    Tcp(Client<HttpConnector, RequestBody>),
    Unix(Client<UnixConnector, RequestBody>),
}

impl Upstream {
    pub fn new(name: String, addrs: Vec<ServerAddr>, settings: UpstreamSettings) -> Self {
        let servers = addrs
            .into_iter()
            .enumerate()
            .map(|(index, addr)| UpstreamServer::new(index, addr, &settings))
            .collect();
        Upstream {
            name,
            settings,
            servers,
            next: AtomicUsize::new(0),
        }
    }

    /// Round-robin: the first server to try for a new request.
    pub fn first_pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The server for the `attempt`-th try of a request that started at `first`.
    pub fn server(&self, first: usize, attempt: usize) -> &UpstreamServer {
        &self.servers[(first + attempt) % self.servers.len()]
    }

    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// At least one server may be sent requests (what `/readyz` asks of every upstream).
    // Until health checks land every server counts as healthy.
    pub fn has_healthy_server(&self) -> bool {
        !self.servers.is_empty()
    }
}

impl UpstreamServer {
    fn new(index: usize, addr: ServerAddr, settings: &UpstreamSettings) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256);
        match addr {
            ServerAddr::Http(authority) => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(settings.connect_timeout));
                connector.set_nodelay(true);
                UpstreamServer {
                    label: format!("http://{authority}"),
                    authority,
                    client: ServerClient::Tcp(builder.build(connector)),
                }
            }
            ServerAddr::Unix(path) => {
                // The URI authority only keys the pool; the connector ignores it.
                let authority = Authority::try_from(format!("unix-{index}.invalid"))
                    .unwrap_or_else(|_| Authority::from_static("unix.invalid"));
                UpstreamServer {
                    label: format!("unix:{}", path.display()),
                    authority,
                    client: ServerClient::Unix(builder.build(UnixConnector {
                        path: Arc::new(path),
                        timeout: settings.connect_timeout,
                    })),
                }
            }
        }
    }

    /// `http://{authority}{path_and_query}`: the absolute URI the pool wants.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    pub fn send(&self, request: Request<RequestBody>) -> ResponseFuture {
        match &self.client {
            ServerClient::Tcp(client) => client.request(request),
            ServerClient::Unix(client) => client.request(request),
        }
    }
}

/// Connects every request of one server to its unix socket.
#[derive(Debug, Clone)]
struct UnixConnector {
    path: Arc<PathBuf>,
    timeout: Duration,
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.path.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, UnixStream::connect(path.as_path())).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout")),
            }
        })
    }
}

/// What the upstream answered, with the body still streaming.
pub type UpstreamResponse = Response<Incoming>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_addresses() {
        assert_eq!(
            ServerAddr::parse("http://127.0.0.1:8000"),
            Ok(ServerAddr::Http(Authority::from_static("127.0.0.1:8000")))
        );
        assert_eq!(
            ServerAddr::parse("unix:/run/app.sock"),
            Ok(ServerAddr::Unix(PathBuf::from("/run/app.sock")))
        );
        assert!(ServerAddr::parse("https://x").is_err());
        assert!(ServerAddr::parse("http://x/path").is_err());
        assert!(ServerAddr::parse("http://u:p@x").is_err());
        assert!(ServerAddr::parse("unix:").is_err());
    }
}
