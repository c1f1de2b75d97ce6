//! `rampart proxy --to URL`: the config a sidecar would write, built as a model value from the
//! command line (no TOML text, so nothing in an argument is ever read as TOML or expanded) and
//! validated like a file.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::model::{self, unspanned};
use super::units::ByteSize;

/// What `rampart proxy` is told.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// The app server: `http://host:port` or `unix:/path.sock`.
    pub to: String,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    /// The https port clients see in redirects; `None`: the port of `https`.
    pub https_port_public: Option<u16>,
    pub admin: Option<SocketAddr>,
    /// `[headers] preset`: strict, basic or off.
    pub headers_preset: &'static str,
    pub csp: Option<String>,
    pub max_body: Option<ByteSize>,
}

/// The upstream's and the route's name.
const APP: &str = "app";

impl Sidecar {
    /// The config: one upstream, one route for every path, the https listener with a
    /// development certificate held in memory (`MissingCert::InMemory`: the paths are never
    /// read or written).
    pub fn model(&self) -> model::File {
        let listen = model::Listen {
            https: unspanned(self.https.to_string()),
            http: self.http.map(|addr| unspanned(addr.to_string())),
            admin: self.admin.map(|addr| unspanned(addr.to_string())),
            // Port 0 (tests): validation wants 1..=65535; the caller sets the bound port.
            https_port_public: self.https_port_public.unwrap_or(self.https.port()).max(1),
            ..model::Listen::default()
        };
        let tls = model::Tls {
            cert: unspanned("(in memory)".into()),
            key: unspanned("(in memory)".into()),
            self_signed_if_missing: true,
            ..model::Tls::default()
        };
        let headers = model::Headers {
            preset: unspanned(self.headers_preset.to_string()),
            content_security_policy: self.csp.clone().map(unspanned),
            ..model::Headers::default()
        };
        let mut client = model::Client::default();
        if let Some(max_body) = self.max_body {
            client.max_body = max_body;
        }
        let upstream = model::Upstream {
            servers: vec![unspanned(self.to.clone())],
            ..model::Upstream::default()
        };
        let route = model::Route {
            name: Some(APP.to_string()),
            upstream: Some(unspanned(APP.to_string())),
            ..model::Route::default()
        };
        model::File {
            listen,
            tls: Some(tls),
            client,
            headers,
            cookies: model::Cookies::default(),
            log: model::Log::default(),
            rate_limit: model::RateLimitStore::default(),
            acme: None,
            ban: None,
            upstreams: BTreeMap::from([(APP.to_string(), upstream)]),
            routes: vec![unspanned(route)],
        }
    }
}
