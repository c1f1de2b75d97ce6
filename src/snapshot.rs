//! The compiled, immutable runtime configuration. Everything a request needs is reached from
//! one `Arc<Snapshot>`, so a reload is one atomic swap (see [`crate::Shared`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use ipnet::IpNet;

use crate::actions::{RedirectTemplate, Respond};
use crate::listener::tls::TlsSettings;
use crate::policy::access::IpRules;
use crate::policy::cookies::CookiePolicy;
use crate::policy::cors::CorsPolicy;
use crate::policy::headers::HeaderPolicy;
use crate::policy::ratelimit::RouteLimiter;
use crate::router::Router;
use crate::static_files::StaticFiles;
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Snapshot {
    pub listen: Listen,
    pub tls: TlsSettings,
    pub client: ClientLimits,
    pub router: Router<Route>,
    /// `[headers]`: used for responses made before a route is known (400, 404, 421, 431…).
    pub default_headers: HeaderPolicy,
    /// `[cookies]`: hardening of the upstream's Set-Cookie (proxied responses only).
    pub cookies: CookiePolicy,
    /// `[log]`: the access log and the default level of the other log lines.
    pub log: LogSettings,
    pub upstreams: Vec<Arc<Upstream>>,
    /// The config file and every certificate and key it names (what a reload watches).
    pub files: Vec<PathBuf>,
    /// `[acme]`, when certificates come from an ACME CA.
    pub acme: Option<Arc<crate::acme::config::AcmeSettings>>,
    /// `[ban]`: the jail (the server's own once it runs: bans outlive reloads) and its rule.
    pub bans: crate::policy::ban::Bans,
    /// Config sections accepted but not implemented in this version (logged at start).
    pub warnings: Vec<String>,
    /// A development certificate validation generated for a missing `tls.cert`/`tls.key`
    /// (`self_signed_if_missing`, [`crate::config::MissingCert::Generate`]): served from
    /// memory; `rampart run` writes it to those paths before it starts serving.
    pub development_certificate: Option<DevelopmentCertificate>,
    /// `[headers] csp_reports`: the https listener answers the CSP report endpoint, within
    /// this rate.
    pub csp_reports: Option<governor::DefaultDirectRateLimiter>,
    /// Some header policy holds `{nonce}`: requests get a nonce before routing.
    pub nonces: bool,
}

/// A self-signed certificate for `localhost`, to be written where the config names the
/// certificate and key.
pub struct DevelopmentCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generated: crate::certgen::Generated,
}

impl std::fmt::Debug for DevelopmentCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("DevelopmentCertificate")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl DevelopmentCertificate {
    pub fn write(&self) -> Result<(), crate::certgen::CertGenError> {
        self.generated.write(&self.cert, &self.key)
    }
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub http_redirect_status: StatusCode,
    pub https_port_public: u16,
    pub shutdown_grace: Duration,
    /// Worker threads serving the https listener (resolved: never 0).
    pub workers: usize,
    /// Peers that must open with a PROXY protocol header (`listen.proxy_protocol_from`).
    pub proxy_protocol_from: Arc<[IpNet]>,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// One JSON line per request on stdout.
    pub access: bool,
    /// Keep the query string in the access log's `path` (queries can carry tokens).
    pub log_query: bool,
    /// The filter of the other log lines (an `EnvFilter` directive, validated) unless
    /// `RUST_LOG` is set.
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Shared, so the per-connection copy of these limits allocates nothing.
    pub trusted_proxies: Arc<[IpNet]>,
    pub max_body: u64,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long fails with 408.
    pub body_timeout: Duration,
    /// A write to the client that makes no progress for this long closes the connection (an
    /// HTTP/2 stream whose window stays shut that long is reset).
    pub send_timeout: Duration,
    /// `max_connections` and `max_connections_per_ip`, enforced at accept.
    pub connection_caps: crate::listener::limit::Caps,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// The path prefix it matched on (normalized form), for `{rest}`.
    pub prefix: String,
    pub action: Action,
    pub headers: HeaderPolicy,
    pub ip_rules: IpRules,
    pub max_body: u64,
    /// `None`: the route leaves CORS to the upstream.
    pub cors: Option<CorsPolicy>,
    /// `None`: the route is not rate limited.
    pub rate_limit: Option<RouteLimiter>,
    /// Compress proxied responses (`compress`, on by default for upstream routes).
    pub compress: bool,
    /// `forward_path = "raw"`: the upstream gets the request path exactly as sent (and encoded
    /// separators pass); otherwise the normalized path the route matched.
    pub raw_path: bool,
    /// The route's `response_timeout`; `None`: the upstream's.
    pub response_timeout: Option<Duration>,
    /// The jail rule its responses count under (`[ban]` or its own); `None`: no jail here.
    pub ban: Option<Arc<crate::policy::ban::BanRule>>,
    /// `basic_auth` or `forward_auth`; `None`: the route asks for no credentials.
    pub auth: Option<Auth>,
    /// Its `rampart_requests_total` and `rampart_request_duration_seconds` handles, kept.
    pub metrics: crate::metrics::RouteMetrics,
}

/// A route's authentication (DESIGN §5b).
#[derive(Debug)]
pub enum Auth {
    Basic(crate::policy::auth::basic::BasicAuth),
    Forward(Box<crate::policy::auth::forward::ForwardAuth>),
}

#[derive(Debug)]
pub enum Action {
    Proxy(Arc<Upstream>),
    Redirect {
        to: RedirectTemplate,
        status: StatusCode,
    },
    Respond(Respond),
    Static(Arc<StaticFiles>),
}
