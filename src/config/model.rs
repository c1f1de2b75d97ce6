//! The raw serde model of the config file (DESIGN §2): what the user wrote, nothing runtime.
//!
//! Field names are exactly the TOML keys and every table refuses unknown keys. Values that can
//! only be judged later (addresses, header values, names that refer to other tables) stay
//! strings wrapped in [`Spanned`], so validation can point at the line that holds them.
//!
//! # Spans
//!
//! Checked against toml 0.8 (see `tests::spanned_*`):
//! - a `Spanned<T>` element of an array of tables (`[[routes]]`) spans from its `[[routes]]`
//!   header to the end of its last key/value: the reported line is the header's line.
//!   A sub-table written later with its own header (`[routes.x]`) is not inside that span;
//! - a `Spanned<T>` standard table (`[t]`) likewise starts at its `[t]` header;
//! - a `Spanned<T>` inline table or array element spans the `{ … }` itself;
//! - a `Spanned<T>` scalar spans the value, quotes included.
//!
//! A `Spanned` field that was not written and took its default has the empty span `0..0`
//! (line 1): validation should name the key rather than trust that line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
pub use toml::Spanned;

use super::units::{ByteSize, Cidr, Duration, Rate};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listen: Listen,
    /// Absent: validation decides (no HTTPS listener without a certificate).
    pub tls: Option<Tls>,
    #[serde(default)]
    pub client: Client,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub cookies: Cookies,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub rate_limit: RateLimitStore,
    /// `[acme]`: certificates obtained and renewed from an ACME CA (DESIGN §5b).
    pub acme: Option<Spanned<Acme>>,
    /// `[ban]`: the jail (DESIGN §5b "Bans").
    pub ban: Option<Spanned<Ban>>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Spanned so that errors about a whole route (two actions, none) name its `[[routes]]` line.
    #[serde(default)]
    pub routes: Vec<Spanned<Route>>,
}

/// `[listen]`: the sockets. Addresses stay strings so validation can name the key it rejects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub https: Spanned<String>,
    pub http: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    #[serde(default = "default_http_redirect_status")]
    pub http_redirect_status: Spanned<u16>,
    #[serde(default = "default_https_port_public")]
    pub https_port_public: u16,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// Worker threads serving the https listener, one runtime each; absent or 0: one per core
    /// the process may use (a container's CPU quota respected).
    pub workers: Option<Spanned<u32>>,
    /// Peers that must open with a PROXY protocol v1/v2 header, whose source is the client.
    #[serde(default)]
    pub proxy_protocol_from: Vec<Cidr>,
}

/// `[tls]`: the default certificate and the SNI-selected extra ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Absent only with `acme = true`; validation names the key either way.
    #[serde(default = "empty_path")]
    pub cert: Spanned<PathBuf>,
    #[serde(default = "empty_path")]
    pub key: Spanned<PathBuf>,
    /// `acme = true`: the default certificate comes from the `[acme]` CA, for `hosts`.
    #[serde(default = "no_acme")]
    pub acme: Spanned<bool>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default = "default_min_version")]
    pub min_version: Spanned<String>,
    #[serde(default)]
    pub self_signed_if_missing: bool,
    #[serde(default)]
    pub certificates: Vec<Spanned<TlsCertificate>>,
}

/// One `[[tls.certificates]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    pub hosts: Vec<String>,
    #[serde(default = "empty_path")]
    pub cert: Spanned<PathBuf>,
    #[serde(default = "empty_path")]
    pub key: Spanned<PathBuf>,
    /// Instead of cert/key: obtained and renewed from the `[acme]` CA.
    #[serde(default)]
    pub acme: bool,
}

/// `[acme]`: the CA, the account and where its state is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    pub directory: Spanned<String>,
    pub email: Option<Spanned<String>>,
    /// A directory path, or "redis" (through `[rate_limit].redis_url`).
    pub storage: Spanned<String>,
    #[serde(default = "default_acme_challenge")]
    pub challenge: Spanned<String>,
    /// Trust for the directory's own TLS (a private CA, tests).
    pub ca_certificates: Option<Spanned<PathBuf>>,
    pub eab: Option<Spanned<Eab>>,
    /// After a failed order: the first wait, doubled each failure up to `retry_max`.
    #[serde(default = "default_acme_retry_min")]
    pub retry_min: Duration,
    #[serde(default = "default_acme_retry_max")]
    pub retry_max: Duration,
}

/// `eab = { kid, hmac_key }`: external account binding (RFC 8555 §7.3.4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eab {
    pub kid: String,
    /// Base64url, as CAs hand it out.
    pub hmac_key: String,
}

fn default_acme_retry_min() -> Duration {
    secs(60)
}

fn default_acme_retry_max() -> Duration {
    secs(6 * 3600)
}

fn empty_path() -> Spanned<PathBuf> {
    Spanned::new(0..0, PathBuf::new())
}

fn no_acme() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn default_acme_challenge() -> Spanned<String> {
    Spanned::new(0..0, "http-01".to_string())
}

/// `[client]`: what clients may send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: ByteSize,
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Duration,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body (nginx's `client_body_timeout`).
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Duration,
    /// Longest a write to the client may make no progress (nginx's `send_timeout`).
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Duration,
    /// Open connections of the https and http listeners together; more are closed at accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Open connections from one client address (IPv6: one /64); 0 means no per-address cap.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: u64,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            trusted_proxies: Vec::new(),
            max_body: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            body_timeout: default_body_timeout(),
            send_timeout: default_send_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
        }
    }
}

/// `[headers]`: security headers added to every response. A key left out takes the preset's
/// value; `""` means "do not add this header".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    #[serde(default = "default_preset")]
    pub preset: Spanned<String>,
    pub strict_transport_security: Option<Spanned<String>>,
    pub content_security_policy: Option<Spanned<String>>,
    pub content_security_policy_report_only: Option<Spanned<String>>,
    pub x_frame_options: Option<Spanned<String>>,
    pub x_content_type_options: Option<Spanned<String>>,
    pub referrer_policy: Option<Spanned<String>>,
    pub permissions_policy: Option<Spanned<String>>,
    pub cross_origin_opener_policy: Option<Spanned<String>>,
    /// Any other header, by its HTTP name.
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    /// Stripped from upstream responses. `None`: the preset's list.
    pub remove: Option<Vec<String>>,
    /// CSP violation reports collected at `/.well-known/rampart/csp-report` (DESIGN §5b).
    #[serde(default)]
    pub csp_reports: bool,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            preset: default_preset(),
            strict_transport_security: None,
            content_security_policy: None,
            content_security_policy_report_only: None,
            x_frame_options: None,
            x_content_type_options: None,
            referrer_policy: None,
            permissions_policy: None,
            cross_origin_opener_policy: None,
            set: BTreeMap::new(),
            remove: None,
            csp_reports: false,
        }
    }
}

/// The named security headers as `(TOML key, value)`, in a fixed order. The HTTP name is the key
/// with `_` replaced by `-`.
pub type SecurityHeaders<'a> = [(&'static str, Option<&'a Spanned<String>>); 8];

impl Headers {
    /// The named security-header keys, so validation handles them in one loop.
    pub fn security_headers(&self) -> SecurityHeaders<'_> {
        [
            (
                "strict_transport_security",
                self.strict_transport_security.as_ref(),
            ),
            (
                "content_security_policy",
                self.content_security_policy.as_ref(),
            ),
            (
                "content_security_policy_report_only",
                self.content_security_policy_report_only.as_ref(),
            ),
            ("x_frame_options", self.x_frame_options.as_ref()),
            (
                "x_content_type_options",
                self.x_content_type_options.as_ref(),
            ),
            ("referrer_policy", self.referrer_policy.as_ref()),
            ("permissions_policy", self.permissions_policy.as_ref()),
            (
                "cross_origin_opener_policy",
                self.cross_origin_opener_policy.as_ref(),
            ),
        ]
    }
}

/// A route's `headers`: merges over `[headers]`, so it has no preset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteHeaders {
    pub strict_transport_security: Option<Spanned<String>>,
    pub content_security_policy: Option<Spanned<String>>,
    pub content_security_policy_report_only: Option<Spanned<String>>,
    pub x_frame_options: Option<Spanned<String>>,
    pub x_content_type_options: Option<Spanned<String>>,
    pub referrer_policy: Option<Spanned<String>>,
    pub permissions_policy: Option<Spanned<String>>,
    pub cross_origin_opener_policy: Option<Spanned<String>>,
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    pub remove: Option<Vec<String>>,
}

impl RouteHeaders {
    /// Same keys and order as [`Headers::security_headers`].
    pub fn security_headers(&self) -> SecurityHeaders<'_> {
        [
            (
                "strict_transport_security",
                self.strict_transport_security.as_ref(),
            ),
            (
                "content_security_policy",
                self.content_security_policy.as_ref(),
            ),
            (
                "content_security_policy_report_only",
                self.content_security_policy_report_only.as_ref(),
            ),
            ("x_frame_options", self.x_frame_options.as_ref()),
            (
                "x_content_type_options",
                self.x_content_type_options.as_ref(),
            ),
            ("referrer_policy", self.referrer_policy.as_ref()),
            ("permissions_policy", self.permissions_policy.as_ref()),
            (
                "cross_origin_opener_policy",
                self.cross_origin_opener_policy.as_ref(),
            ),
        ]
    }
}

/// `[cookies]`: attributes added to upstream `Set-Cookie` when absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookies {
    #[serde(default = "default_true")]
    pub secure: bool,
    #[serde(default)]
    pub http_only: bool,
    /// `""` leaves SameSite alone.
    #[serde(default = "default_same_site")]
    pub same_site: String,
}

impl Default for Cookies {
    fn default() -> Self {
        Cookies {
            secure: true,
            http_only: false,
            same_site: default_same_site(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default = "default_true")]
    pub access: bool,
    #[serde(default)]
    pub log_query: bool,
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            access: true,
            log_query: false,
            level: default_log_level(),
        }
    }
}

/// `[rate_limit]`: where the per-route quotas are counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitStore {
    #[serde(default = "default_store")]
    pub store: Spanned<String>,
    pub redis_url: Option<String>,
    /// Bound on one Redis decision, connecting included; beyond it `on_store_error` decides.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout: Duration,
    #[serde(default = "default_store")]
    pub on_store_error: Spanned<String>,
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
}

impl Default for RateLimitStore {
    fn default() -> Self {
        RateLimitStore {
            store: default_store(),
            redis_url: None,
            redis_timeout: default_redis_timeout(),
            on_store_error: default_store(),
            max_keys: default_max_keys(),
        }
    }
}

/// `[upstreams.NAME]`: a pool of servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `"http://host:port"` or `"unix:/path.sock"`.
    pub servers: Vec<Spanned<String>>,
    #[serde(default = "default_balance")]
    pub balance: Spanned<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
    pub health_check: Option<HealthCheck>,
    #[serde(default = "default_passive_failures")]
    pub passive_failures: u32,
    /// Idle keep-alive connections kept per server and worker (nginx's `keepalive`).
    #[serde(default = "default_keepalive")]
    pub keepalive: u32,
    /// How long an idle keep-alive connection is kept (nginx's `keepalive_timeout`).
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: Duration,
}

/// An upstream's active health check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_healthy")]
    pub healthy: u32,
    #[serde(default = "default_unhealthy")]
    pub unhealthy: u32,
}

/// One `[[routes]]`. Exactly one action (`upstream`, `static`, `redirect`, `respond`) is
/// required; validation checks that, since serde cannot say it with a useful message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<String>,
    /// One host pattern: `"api.example.com"` or `"*.example.org"`.
    pub host: Option<Spanned<String>>,
    /// Several host patterns; validation refuses `host` and `hosts` together.
    pub hosts: Option<Vec<Spanned<String>>>,
    #[serde(default = "default_route_path")]
    pub path: Spanned<String>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub upstream: Option<Spanned<String>>,
    #[serde(rename = "static")]
    pub static_files: Option<StaticFiles>,
    pub redirect: Option<Redirect>,
    pub respond: Option<Respond>,
    pub rate_limit: Option<RouteRateLimit>,
    pub allow: Option<Vec<Cidr>>,
    pub deny: Option<Vec<Cidr>>,
    pub cors: Option<Cors>,
    pub headers: Option<RouteHeaders>,
    pub compress: Option<Spanned<bool>>,
    /// Overrides `client.max_body` for this route.
    pub max_body: Option<ByteSize>,
    /// `"normalized"` (default): the upstream gets the path the route matched (dot segments
    /// resolved, `//` merged, encoded separators refused); `"raw"`: the bytes as sent.
    pub forward_path: Option<Spanned<String>>,
    /// Overrides the upstream's `response_timeout` for this route (nginx's
    /// `proxy_read_timeout` in a `location`).
    pub response_timeout: Option<Spanned<Duration>>,
    /// `ban = { … }` tightens the `[ban]` jail for this route (its own strike count);
    /// `ban = false` turns it off here.
    pub ban: Option<Spanned<RouteBan>>,
    /// HTTP Basic authentication against a users file (DESIGN §5b).
    pub basic_auth: Option<Spanned<BasicAuth>>,
    /// An auth server asked before the request goes on (DESIGN §5b).
    pub forward_auth: Option<Spanned<ForwardAuth>>,
}

/// `[ban]`: strikes, their window, the ban length, where bans are kept, who is never banned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ban {
    #[serde(default = "default_ban_strikes")]
    pub strikes: Vec<Spanned<u16>>,
    #[serde(default = "default_ban_after")]
    pub after: Spanned<u32>,
    #[serde(default = "default_ban_within")]
    pub within: Spanned<Duration>,
    #[serde(rename = "for", default = "default_ban_for")]
    pub ban_for: Spanned<Duration>,
    /// `"local"` or `"redis"` (through `[rate_limit].redis_url`).
    #[serde(default = "default_store")]
    pub store: Spanned<String>,
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// The local jail's memory bound: this many strike counters and this many bans at most.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
}

impl Default for Ban {
    fn default() -> Self {
        Ban {
            strikes: default_ban_strikes(),
            after: default_ban_after(),
            within: default_ban_within(),
            ban_for: default_ban_for(),
            store: default_store(),
            allow: Vec::new(),
            max_keys: default_max_keys(),
        }
    }
}

/// A route's `ban`: `false` (no jail here), `true` (the `[ban]` jail) or its own rule.
#[derive(Debug, Clone)]
pub enum RouteBan {
    Switch(bool),
    Rule(RouteBanRule),
}

/// By hand rather than `#[serde(untagged)]`: untagged buffers the value, which loses the spans
/// of the rule's keys (and says only "did not match any variant").
impl<'de> Deserialize<'de> for RouteBan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RouteBanVisitor;
        impl<'de> serde::de::Visitor<'de> for RouteBanVisitor {
            type Value = RouteBan;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("false, true, or a table like { strikes = [401, 429], after = 5 }")
            }
            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<RouteBan, E> {
                Ok(RouteBan::Switch(value))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RouteBan, A::Error> {
                RouteBanRule::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RouteBan::Rule)
            }
        }
        deserializer.deserialize_any(RouteBanVisitor)
    }
}

/// A route's own `ban` rule: the keys written replace `[ban]`'s.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBanRule {
    pub strikes: Option<Vec<Spanned<u16>>>,
    pub after: Option<Spanned<u32>>,
    pub within: Option<Spanned<Duration>>,
    #[serde(rename = "for")]
    pub ban_for: Option<Spanned<Duration>>,
}

fn default_ban_strikes() -> Vec<Spanned<u16>> {
    vec![unspanned(429)]
}

fn default_ban_after() -> Spanned<u32> {
    unspanned(10)
}

fn default_ban_within() -> Spanned<Duration> {
    unspanned(Duration(std::time::Duration::from_secs(60)))
}

fn default_ban_for() -> Spanned<Duration> {
    unspanned(Duration(std::time::Duration::from_secs(3600)))
}

/// A route's `basic_auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub realm: Spanned<String>,
    /// Lines `name:$argon2id$…` or `name:$2y$…` (bcrypt).
    pub users: Spanned<PathBuf>,
}

/// A route's `forward_auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuth {
    pub url: Spanned<String>,
    /// Headers of the auth server's 2xx answer put on the request (client copies removed).
    #[serde(default)]
    pub copy_headers: Vec<String>,
    #[serde(default = "default_forward_auth_timeout")]
    pub timeout: Duration,
}

fn default_forward_auth_timeout() -> Duration {
    secs(5)
}

/// A route's `static`: files served from `root`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFiles {
    pub root: Spanned<PathBuf>,
    pub cache_control: Option<String>,
    #[serde(default)]
    pub deny_extensions: Vec<String>,
    pub index: Option<String>,
    /// Served for a path that names nothing (a single-page app's shell), relative to `root`.
    pub fallback: Option<Spanned<String>>,
}

/// A route's `redirect`; `to` may hold `{path}` `{rest}` `{query}` `{host}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub to: Spanned<String>,
    #[serde(default = "default_redirect_status")]
    pub status: Spanned<u16>,
}

/// A route's `respond`: a fixed answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    #[serde(default = "default_respond_status")]
    pub status: Spanned<u16>,
    #[serde(default)]
    pub body: String,
    pub content_type: Option<String>,
}

/// A route's `rate_limit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimit {
    pub rate: Rate,
    /// Use [`RouteRateLimit::burst`]: the default depends on `rate`.
    pub burst: Option<u32>,
    /// `None`: the client IP. Otherwise e.g. `"header:X-Api-Key"`.
    pub key: Option<Spanned<String>>,
}

impl RouteRateLimit {
    /// The burst written, or by default the rate's count (`"10/s"` allows 10 at once); at least 1.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate.count).max(1)
    }
}

/// A route's `cors`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Spanned so that an error names the line of the origin it is about.
    pub allow_origins: Vec<Spanned<String>>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_headers: Option<Vec<String>>,
    #[serde(default)]
    pub allow_credentials: bool,
    pub max_age: Option<Duration>,
}

// Values for configs built in code (`rampart proxy`, config::sidecar): what the file's
// defaults are, with the required keys empty (validation names them if left so).

impl Default for Listen {
    fn default() -> Self {
        Listen {
            https: unspanned(String::new()),
            http: None,
            admin: None,
            http_redirect_status: default_http_redirect_status(),
            https_port_public: default_https_port_public(),
            shutdown_grace: default_shutdown_grace(),
            workers: None,
            proxy_protocol_from: Vec::new(),
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            cert: empty_path(),
            key: empty_path(),
            acme: no_acme(),
            hosts: Vec::new(),
            min_version: default_min_version(),
            self_signed_if_missing: false,
            certificates: Vec::new(),
        }
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            servers: Vec::new(),
            balance: default_balance(),
            connect_timeout: default_connect_timeout(),
            response_timeout: default_response_timeout(),
            retries: default_retries(),
            health_check: None,
            passive_failures: default_passive_failures(),
            keepalive: default_keepalive(),
            keepalive_timeout: default_keepalive_timeout(),
        }
    }
}

impl Default for Route {
    fn default() -> Self {
        Route {
            name: None,
            host: None,
            hosts: None,
            path: default_route_path(),
            methods: None,
            upstream: None,
            static_files: None,
            redirect: None,
            respond: None,
            rate_limit: None,
            allow: None,
            deny: None,
            cors: None,
            headers: None,
            compress: None,
            max_body: None,
            forward_path: None,
            response_timeout: None,
            ban: None,
            basic_auth: None,
            forward_auth: None,
        }
    }
}

/// A value as if written in the file, at no position (configs built in code).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

// Defaults, named so that `#[serde(default = …)]` and the `Default` impls share them.
// A defaulted `Spanned` gets the empty span 0..0: nothing was written.

fn secs(n: u64) -> Duration {
    Duration(std::time::Duration::from_secs(n))
}

fn default_true() -> bool {
    true
}

fn default_http_redirect_status() -> Spanned<u16> {
    unspanned(308)
}

fn default_https_port_public() -> u16 {
    443
}

fn default_shutdown_grace() -> Duration {
    secs(30)
}

fn default_min_version() -> Spanned<String> {
    unspanned("1.2".to_owned())
}

fn default_max_body() -> ByteSize {
    ByteSize(50 << 20)
}

fn default_max_header_bytes() -> ByteSize {
    ByteSize(16 << 10)
}

fn default_header_timeout() -> Duration {
    secs(10)
}

fn default_idle_timeout() -> Duration {
    secs(60)
}

/// Half of nginx's 60 s and of the default `response_timeout`, so a stalled upload is cut (408)
/// before its upstream exchange times out (504), and about when Gunicorn's default 30 s worker
/// timeout would kill a sync worker blocked on it anyway.
fn default_body_timeout() -> Duration {
    secs(30)
}

/// nginx's `send_timeout` default.
fn default_send_timeout() -> Duration {
    secs(60)
}

fn default_max_connections() -> u64 {
    10_000
}

fn default_max_connections_per_ip() -> u64 {
    256
}

fn default_preset() -> Spanned<String> {
    unspanned("strict".to_owned())
}

fn default_same_site() -> String {
    "Lax".to_owned()
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// Both `store` and `on_store_error` default to `"local"`.
fn default_store() -> Spanned<String> {
    unspanned("local".to_owned())
}

fn default_redis_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(100))
}

fn default_max_keys() -> u64 {
    1_000_000
}

fn default_balance() -> Spanned<String> {
    unspanned("round_robin".to_owned())
}

fn default_connect_timeout() -> Duration {
    secs(5)
}

fn default_response_timeout() -> Duration {
    secs(60)
}

fn default_retries() -> u32 {
    1
}

fn default_passive_failures() -> u32 {
    3
}

/// Above the concurrency a busy site keeps in flight per worker (the load bench's 640 HTTP/2
/// streams included): connections are reused instead of closed and reopened under load.
fn default_keepalive() -> u32 {
    1024
}

fn default_keepalive_timeout() -> Duration {
    secs(60)
}

fn default_health_interval() -> Duration {
    secs(10)
}

fn default_health_timeout() -> Duration {
    secs(2)
}

fn default_healthy() -> u32 {
    2
}

fn default_unhealthy() -> u32 {
    3
}

fn default_route_path() -> Spanned<String> {
    unspanned("/".to_owned())
}

fn default_redirect_status() -> Spanned<u16> {
    unspanned(302)
}

fn default_respond_status() -> Spanned<u16> {
    unspanned(200)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration as Std;

    /// The example of DESIGN §2, verbatim.
    pub(crate) const DESIGN_EXAMPLE: &str = r#"[listen]
https = "0.0.0.0:8443"          # TLS listener (HTTP/1.1 and HTTP/2 by ALPN)
http  = "0.0.0.0:8080"          # optional: every request is redirected to https
admin = "127.0.0.1:9090"        # optional: /metrics, /healthz, /readyz; never on the public ports
http_redirect_status = 308      # 301 or 308
https_port_public = 443         # the https port clients see (compose maps 443:8443); in Location unless 443
shutdown_grace = "30s"          # SIGTERM: stop accepting, finish in-flight requests

[tls]
cert = "certs/dev.crt"          # PEM chain
key  = "certs/dev.key"          # PEM key (PKCS#8, PKCS#1 or SEC1)
min_version = "1.2"             # "1.2" or "1.3"; 1.0/1.1 are never offered
self_signed_if_missing = true

[[tls.certificates]]            # more certificates, chosen by SNI; the default above is the fallback
hosts = ["api.example.com", "*.example.org"]
cert = "certs/api.crt"
key  = "certs/api.key"

[client]                        # what clients may send
trusted_proxies = []            # CIDRs whose X-Forwarded-For / Forwarded is believed (client IP)
max_body = "50MiB"              # 413 beyond it (streamed: counted, not buffered)
max_header_bytes = "16KiB"      # request line + headers; 431 beyond it
header_timeout = "10s"          # slow-client (slowloris) protection
idle_timeout = "60s"

[headers]                       # added to EVERY response of the https listener: proxied, static,
preset = "strict"               # redirects, 404, 413, 429, 502 … ("strict" | "basic" | "off")
strict_transport_security = "max-age=31536000; includeSubDomains"
content_security_policy = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
# content_security_policy_report_only = "…"
x_frame_options = "DENY"
x_content_type_options = "nosniff"
referrer_policy = "strict-origin-when-cross-origin"
permissions_policy = "camera=(), microphone=(), geolocation=()"
cross_origin_opener_policy = "same-origin"
set = { "X-Robots-Tag" = "noindex" }   # any other header
remove = ["Server", "X-Powered-By"]    # stripped from upstream responses

[cookies]                       # hardening of upstream Set-Cookie
secure = true                   # add Secure when absent
http_only = false               # add HttpOnly when absent (off: Django's csrftoken is read by JS)
same_site = "Lax"               # add SameSite=Lax when absent; "" to leave alone

[log]
access = true                   # one JSON line per request on stdout
log_query = false               # query strings can carry tokens: dropped unless true
level = "info"                  # or RUST_LOG

[rate_limit]
store = "local"                 # "local" (in-process, default) | "redis" (shared by all replicas)
redis_url = "redis://127.0.0.1:6379"
on_store_error = "local"        # when redis is unreachable: "local" | "allow" | "deny"
max_keys = 1000000              # memory bound of the local store; idle keys are evicted

[upstreams.app]
servers = ["http://127.0.0.1:8000"]   # or "unix:/run/gunicorn.sock"
balance = "round_robin"               # or "least_conn"
connect_timeout = "5s"
response_timeout = "60s"              # 504 beyond it
retries = 1                           # idempotent requests, connect failures only
health_check = { path = "/health/", interval = "10s", timeout = "2s", healthy = 2, unhealthy = 3 }
passive_failures = 3                  # consecutive failures that eject a server until it is healthy again

[[routes]]                      # most specific wins: exact host > wildcard host > any host,
name = "login"                  # then the longest path prefix, then file order
path = "/api/auth/login/"
methods = ["POST"]
upstream = "app"
rate_limit = { rate = "5/min", burst = 3 }          # key defaults to the client IP
# rate_limit = { rate = "100/min", burst = 20, key = "header:X-Api-Key" }

[[routes]]
name = "api"
path = "/api/"
upstream = "app"
rate_limit = { rate = "10/s", burst = 20 }
cors = { allow_origins = ["https://app.example.com"], allow_credentials = true }

[[routes]]
name = "admin"
path = "/admin/"
upstream = "app"
allow = ["10.0.0.0/8", "127.0.0.1/32"]   # others get 403

[[routes]]
name = "static"
path = "/static/"
static = { root = "/app/staticfiles", cache_control = "public, max-age=31536000, immutable" }

[[routes]]
name = "media"
path = "/media/"
static = { root = "/app/media", cache_control = "public, max-age=3600", deny_extensions = ["php", "py", "sh", "pl", "cgi"] }
headers = { content_security_policy = "default-src 'none'; sandbox" }   # merges over [headers]

[[routes]]
name = "old-blog"
path = "/blog/"
redirect = { to = "https://blog.example.com/{rest}", status = 301 }   # {path} {rest} {query} {host}

[[routes]]
name = "app"
path = "/"
upstream = "app"
compress = true                 # gzip/br for compressible responses the upstream left uncompressed
"#;

    fn parse(text: &str) -> File {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn line_of(text: &str, span: std::ops::Range<usize>) -> usize {
        text[..span.start].lines().count() + 1
    }

    #[test]
    fn design_example_parses() {
        let f = parse(DESIGN_EXAMPLE);
        assert_eq!(f.listen.https.get_ref(), "0.0.0.0:8443");
        assert_eq!(
            f.listen.http.as_ref().map(|s| s.get_ref().as_str()),
            Some("0.0.0.0:8080")
        );
        assert_eq!(*f.listen.http_redirect_status.get_ref(), 308);
        assert_eq!(f.listen.shutdown_grace.0, Std::from_secs(30));

        let tls = f.tls.as_ref().unwrap();
        assert!(tls.self_signed_if_missing);
        assert_eq!(tls.certificates.len(), 1);
        assert_eq!(
            tls.certificates[0].get_ref().hosts,
            ["api.example.com", "*.example.org"]
        );

        assert_eq!(f.client.max_body.0, 50 << 20);
        assert_eq!(f.client.max_header_bytes.0, 16 << 10);
        assert!(f.client.trusted_proxies.is_empty());

        assert_eq!(f.headers.preset.get_ref(), "strict");
        assert_eq!(
            f.headers.x_frame_options.as_ref().unwrap().get_ref(),
            "DENY"
        );
        assert!(f.headers.content_security_policy_report_only.is_none());
        assert_eq!(f.headers.set["X-Robots-Tag"].get_ref(), "noindex");
        assert_eq!(
            f.headers.remove.as_deref(),
            Some(&["Server".to_owned(), "X-Powered-By".to_owned()][..])
        );

        assert_eq!(
            f.rate_limit.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        let app = &f.upstreams["app"];
        assert_eq!(app.servers[0].get_ref(), "http://127.0.0.1:8000");
        assert_eq!(app.health_check.as_ref().unwrap().path, "/health/");

        let names: Vec<_> = f
            .routes
            .iter()
            .map(|r| r.get_ref().name.as_deref().unwrap())
            .collect();
        assert_eq!(
            names,
            ["login", "api", "admin", "static", "media", "old-blog", "app"]
        );
        let login = f.routes[0].get_ref();
        let rl = login.rate_limit.as_ref().unwrap();
        assert_eq!(
            (rl.rate.count, rl.rate.per, rl.burst()),
            (5, Std::from_secs(60), 3)
        );
        assert_eq!(login.methods.as_ref().unwrap()[0].get_ref(), "POST");
        assert!(
            f.routes[1]
                .get_ref()
                .cors
                .as_ref()
                .unwrap()
                .allow_credentials
        );
        let admin = f.routes[2].get_ref();
        assert_eq!(admin.allow.as_ref().unwrap()[0].to_string(), "10.0.0.0/8");
        let media = f.routes[4].get_ref();
        assert_eq!(
            media.static_files.as_ref().unwrap().deny_extensions.len(),
            5
        );
        let csp = media.headers.as_ref().unwrap().security_headers()[1];
        assert_eq!(
            (csp.0, csp.1.map(|s| s.get_ref().as_str())),
            (
                "content_security_policy",
                Some("default-src 'none'; sandbox")
            )
        );
        assert_eq!(
            *f.routes[5]
                .get_ref()
                .redirect
                .as_ref()
                .unwrap()
                .status
                .get_ref(),
            301
        );
        let compress = f.routes[6].get_ref().compress.as_ref();
        assert_eq!(compress.map(|c| *c.get_ref()), Some(true));
        assert_eq!(line_of(DESIGN_EXAMPLE, f.routes[6].span()), 102);
    }

    #[test]
    fn defaults_of_a_minimal_file() {
        let f = parse("[listen]\nhttps = \"0.0.0.0:8443\"\n");
        assert!(f.listen.http.is_none() && f.listen.admin.is_none() && f.tls.is_none());
        assert_eq!(*f.listen.http_redirect_status.get_ref(), 308);
        assert_eq!(f.listen.http_redirect_status.span(), 0..0);
        assert_eq!(f.listen.https_port_public, 443);
        assert_eq!(f.listen.shutdown_grace.0, Std::from_secs(30));
        assert_eq!(f.client.max_body.0, 50 << 20);
        assert_eq!(f.client.max_header_bytes.0, 16 << 10);
        assert_eq!(f.client.header_timeout.0, Std::from_secs(10));
        assert_eq!(f.client.idle_timeout.0, Std::from_secs(60));
        assert_eq!(f.client.body_timeout.0, Std::from_secs(30));
        assert_eq!(f.client.send_timeout.0, Std::from_secs(60));
        assert_eq!(f.headers.preset.get_ref(), "strict");
        assert!(f
            .headers
            .security_headers()
            .iter()
            .all(|(_, v)| v.is_none()));
        assert!(f.headers.set.is_empty() && f.headers.remove.is_none());
        assert!(f.cookies.secure && !f.cookies.http_only);
        assert_eq!(f.cookies.same_site, "Lax");
        assert!(f.log.access && !f.log.log_query);
        assert_eq!(f.log.level, "info");
        assert_eq!(f.rate_limit.store.get_ref(), "local");
        assert_eq!(f.rate_limit.on_store_error.get_ref(), "local");
        assert_eq!(f.rate_limit.max_keys, 1_000_000);
        assert!(f.upstreams.is_empty() && f.routes.is_empty());
    }

    #[test]
    fn defaults_of_nested_tables() {
        let f = parse(
            r#"
[listen]
https = ":8443"
[tls]
cert = "c"
key = "k"
[upstreams.a]
servers = ["unix:/run/app.sock"]
health_check = { path = "/" }
[[routes]]
upstream = "a"
rate_limit = { rate = "10/s" }
[[routes]]
redirect = { to = "https://x/" }
[[routes]]
respond = { body = "hi" }
"#,
        );
        let tls = f.tls.unwrap();
        assert_eq!(tls.min_version.get_ref(), "1.2");
        assert!(!tls.self_signed_if_missing && tls.certificates.is_empty());
        let a = &f.upstreams["a"];
        assert_eq!(a.balance.get_ref(), "round_robin");
        assert_eq!(
            (a.connect_timeout.0, a.response_timeout.0),
            (Std::from_secs(5), Std::from_secs(60))
        );
        assert_eq!((a.retries, a.passive_failures), (1, 3));
        let hc = a.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.interval.0, hc.timeout.0, hc.healthy, hc.unhealthy),
            (Std::from_secs(10), Std::from_secs(2), 2, 3)
        );
        let r0 = f.routes[0].get_ref();
        assert_eq!(r0.path.get_ref(), "/");
        assert_eq!(r0.rate_limit.as_ref().unwrap().burst(), 10);
        assert_eq!(
            *f.routes[1]
                .get_ref()
                .redirect
                .as_ref()
                .unwrap()
                .status
                .get_ref(),
            302
        );
        let respond = f.routes[2].get_ref().respond.as_ref().unwrap();
        assert_eq!(
            (*respond.status.get_ref(), respond.body.as_str()),
            (200, "hi")
        );
    }

    #[test]
    fn hosts_and_bare_ips() {
        let f = parse(
            r#"
[listen]
https = ":8443"
[client]
trusted_proxies = ["10.0.0.1", "fd00::/8"]
[[routes]]
host = "api.example.com"
respond = {}
[[routes]]
hosts = ["a.example.com", "*.example.org"]
deny = ["192.0.2.7"]
respond = {}
"#,
        );
        let proxies: Vec<_> = f
            .client
            .trusted_proxies
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(proxies, ["10.0.0.1/32", "fd00::/8"]);
        assert_eq!(
            f.routes[0].get_ref().host.as_ref().unwrap().get_ref(),
            "api.example.com"
        );
        assert_eq!(f.routes[1].get_ref().hosts.as_ref().unwrap().len(), 2);
        assert_eq!(
            f.routes[1].get_ref().deny.as_ref().unwrap()[0].to_string(),
            "192.0.2.7/32"
        );
    }

    /// The finding documented at the top of this module.
    #[test]
    fn spanned_array_of_tables_starts_at_its_header() {
        let text = "[listen]\nhttps = \":1\"\n\n# first\n[[routes]]\nname = \"a\"\nrespond = { }\n\n[[routes]]\n# c\nname = \"b\"\nrespond = { }\n";
        let f = parse(text);
        let spans: Vec<_> = f.routes.iter().map(|r| &text[r.span()]).collect();
        assert_eq!(
            spans,
            [
                "[[routes]]\nname = \"a\"\nrespond = { }",
                "[[routes]]\n# c\nname = \"b\"\nrespond = { }"
            ]
        );
        assert_eq!(line_of(text, f.routes[1].span()), 9);
    }

    #[test]
    fn spanned_inline_table_and_scalar() {
        #[derive(Debug, Deserialize)]
        struct T {
            a: Vec<Spanned<Redirect>>,
            b: Spanned<Redirect>,
        }
        let text = "a = [ { to = \"x\" }, {to=\"y\", status = 301} ]\nb = { to = \"z\" }\n";
        let t: T = toml::from_str(text).unwrap();
        assert_eq!(&text[t.a[1].span()], "{to=\"y\", status = 301}");
        assert_eq!(&text[t.a[1].get_ref().to.span()], "\"y\"");
        assert_eq!(&text[t.b.span()], "{ to = \"z\" }");
    }
}
