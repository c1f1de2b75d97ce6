//! Raw model → compiled [`Snapshot`]: every semantic check, with errors pointing at the key.
//!
//! All errors are collected (not just the first) so `rampart check` can list them at once.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, StatusCode};

use super::model::{self, Spanned};
use super::source::{ConfigError, ConfigErrors, Source};
use crate::acme::config::{AcmeSettings, Challenge, Eab, StorageKind};
use crate::actions::{RedirectTemplate, Respond};
use crate::listener::limit::Caps;
use crate::listener::tls::{self, CertSource};
use crate::path;
use crate::policy::access::IpRules;
use crate::policy::cookies::CookiePolicy;
use crate::policy::cors::CorsPolicy;
use crate::policy::headers::{HeaderPolicyBuilder, Preset, SECURITY_HEADER_KEYS};
use crate::policy::ratelimit::{LocalStore, OnStoreError, RedisStore, RouteLimiter};
use crate::router::{Entry, HostPattern, Router};
use crate::snapshot::{Action, Auth, ClientLimits, Listen, LogSettings, Route, Snapshot};
use crate::static_files::StaticFiles;
use crate::upstream::health_state::HealthCheck;
use crate::upstream::{Balance, ServerAddr, Upstream, UpstreamSettings};

/// What to do about a missing certificate when `tls.self_signed_if_missing` is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingCert {
    /// `rampart run`: write a development certificate (with a loud warning).
    Generate,
    /// `rampart check`: accept with a warning; nothing is written.
    Warn,
    /// `rampart proxy`: a development certificate that lives in memory only.
    InMemory,
    /// A reload: a certificate that vanished (mid-rotation, say) is an error, so the running
    /// config stays rather than a self-signed certificate replacing a real one.
    Refuse,
    /// `rampart check --skip-missing-paths` (CI without the volumes): a certificate, key or
    /// static root that does not exist is a warning naming it, and everything else is checked
    /// (against an in-memory certificate). Nothing is written; the snapshot is not for serving.
    Unseen,
}

struct Validator<'a> {
    source: &'a Source,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    missing_cert: MissingCert,
    /// Files read besides the config and certificates (users files): a reload watches them.
    files: Vec<PathBuf>,
    /// Some header policy holds `{nonce}`.
    nonces: bool,
}

impl Validator<'_> {
    /// `--skip-missing-paths`: a path that does not exist is reported as unseen, not an error.
    fn skips_missing(&self) -> bool {
        self.missing_cert == MissingCert::Unseen
    }

    /// A path `--skip-missing-paths` let through, as a warning line with file:line:col.
    fn unseen<T>(&mut self, spanned: &Spanned<T>, key: &str, path: &Path) {
        let line = self.source.error_at(
            spanned.span(),
            key,
            format!(
                "{} does not exist here; not checked (--skip-missing-paths)",
                path.display()
            ),
        );
        self.warnings.push(line.to_string());
    }

    fn at<T>(&mut self, spanned: &Spanned<T>, key: &str, message: impl Into<String>) {
        let error = self.source.error_at(spanned.span(), key, message);
        self.errors.push(error);
    }

    /// For keys whose value carries no span (defaults, plain types): the error names the key,
    /// and the line of the enclosing item when known.
    fn near(&mut self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) {
        let span = if span.is_empty() && span.start == 0 {
            self.source.span_of_key(key)
        } else {
            span
        };
        let error = self.source.error_at(span, key, message);
        self.errors.push(error);
    }
}

pub fn validate(
    source: &Source,
    file: model::File,
    config_path: Option<&Path>,
    missing_cert: MissingCert,
) -> Result<Snapshot, ConfigErrors> {
    let mut v = Validator {
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
        missing_cert,
        files: Vec::new(),
        nonces: false,
    };

    let listen = listen(&mut v, &file.listen);
    let client = client_limits(&mut v, &file.client);
    let tls = tls_settings(&mut v, file.tls.as_ref(), missing_cert);
    let (default_builder, default_headers) = headers(&mut v, &file.headers);
    let cookies = CookiePolicy::from_config(&file.cookies).unwrap_or_else(|err| {
        v.near(0..0, err.key(), err.to_string());
        CookiePolicy::OFF
    });
    let limit_store = rate_limit_store(&mut v, &file.rate_limit);
    let upstreams = upstreams(&mut v, &file.upstreams);
    let router = routes(
        &mut v,
        &file.routes,
        &upstreams,
        &file.upstreams,
        &default_builder,
        &client,
        &limit_store,
    );

    let log = log_settings(&mut v, &file.log);
    let acme = acme_settings(&mut v, &file);

    if !v.errors.is_empty() {
        return Err(ConfigErrors(v.errors));
    }
    let (Some(listen), Some((tls, cert_files))) = (listen, tls) else {
        // Unreachable in practice: a `None` above always pushed an error.
        return Err(ConfigErrors(vec![source.error_at_line(
            1,
            "",
            "invalid configuration",
        )]));
    };
    let mut files: Vec<PathBuf> = config_path.map(Path::to_path_buf).into_iter().collect();
    files.extend(cert_files);
    files.extend(v.files.iter().cloned());
    let nonces = v.nonces || default_headers.needs_nonce();
    Ok(Snapshot {
        listen,
        tls,
        client,
        router,
        default_headers,
        cookies,
        log,
        upstreams: upstreams.into_values().collect(),
        files,
        acme,
        warnings: v.warnings,
        csp_reports: file
            .headers
            .csp_reports
            .then(crate::policy::csp::report_rate_limiter),
        nonces,
    })
}

fn socket_addr(v: &mut Validator<'_>, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            v.at(
                value,
                key,
                "expected an address with a port, like \"0.0.0.0:8443\" or \"[::]:8443\"",
            );
            None
        }
    }
}

fn listen(v: &mut Validator<'_>, listen: &model::Listen) -> Option<Listen> {
    let https = socket_addr(v, &listen.https, "listen.https");
    let http = listen
        .http
        .as_ref()
        .and_then(|addr| socket_addr(v, addr, "listen.http"));
    let admin = listen
        .admin
        .as_ref()
        .and_then(|addr| socket_addr(v, addr, "listen.admin"));
    if listen.https_port_public == 0 {
        v.near(
            0..0,
            "listen.https_port_public",
            "must be a port from 1 to 65535",
        );
    }
    let status = *listen.http_redirect_status.get_ref();
    if status != 301 && status != 308 {
        v.at(
            &listen.http_redirect_status,
            "listen.http_redirect_status",
            "must be 301 or 308 (both keep clients on the redirect; 308 also keeps the method)",
        );
    }
    if let (Some(https), Some(http)) = (https, http) {
        if https == http && https.port() != 0 {
            v.at(
                listen.http.as_ref()?,
                "listen.http",
                "same address as listen.https",
            );
        }
    }
    Some(Listen {
        https: https?,
        http,
        admin,
        http_redirect_status: StatusCode::from_u16(status).ok()?,
        https_port_public: listen.https_port_public,
        shutdown_grace: listen.shutdown_grace.0,
        workers: workers(v, listen.workers.as_ref()),
    })
}

/// Most workers a config may ask for: far above any machine this runs on, low enough that a
/// typo cannot start a million threads.
const MAX_WORKERS: u32 = 256;

/// `listen.workers`: absent or 0 is one per core the process may use
/// (`available_parallelism` reads the affinity mask and a cgroup's CPU quota).
fn workers(v: &mut Validator<'_>, workers: Option<&Spanned<u32>>) -> usize {
    let auto = || std::thread::available_parallelism().map_or(1, |n| n.get());
    match workers {
        None => auto(),
        Some(n) if *n.get_ref() == 0 => auto(),
        Some(n) if *n.get_ref() > MAX_WORKERS => {
            v.at(
                n,
                "listen.workers",
                format!("at most {MAX_WORKERS} (0 or absent: one per core)"),
            );
            1
        }
        Some(n) => *n.get_ref() as usize,
    }
}

fn log_settings(v: &mut Validator<'_>, log: &model::Log) -> LogSettings {
    // A level ("info") or a tracing filter ("warn,rampart=debug"). A lone word is only taken as
    // a level: `EnvFilter` would read a typo like "verbose" as a target name and log nothing.
    let level = log.level.as_str();
    let valid = if level.trim().is_empty() {
        false
    } else if level.contains(['=', ',', '[']) {
        tracing_subscriber::EnvFilter::builder()
            .parse(level)
            .is_ok()
    } else {
        level.parse::<tracing::level_filters::LevelFilter>().is_ok()
    };
    if !valid {
        v.near(
            0..0,
            "log.level",
            "expected trace, debug, info, warn, error, off, or a filter like \"warn,rampart=debug\"",
        );
    }
    LogSettings {
        access: log.access,
        log_query: log.log_query,
        level: log.level.clone(),
    }
}

/// Beyond a day a client timeout protects nothing, and a deadline that far can overflow the
/// clock (`now + timeout` panics near the end of `Instant`'s range).
const MAX_CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(86_400);

fn client_limits(v: &mut Validator<'_>, client: &model::Client) -> ClientLimits {
    let max_header_bytes = client.max_header_bytes.0;
    if max_header_bytes < 1024 {
        v.near(0..0, "client.max_header_bytes", "must be at least 1KiB");
    }
    for (value, key) in [
        (client.header_timeout.0, "client.header_timeout"),
        (client.idle_timeout.0, "client.idle_timeout"),
        (client.body_timeout.0, "client.body_timeout"),
        (client.send_timeout.0, "client.send_timeout"),
    ] {
        if value.is_zero() {
            v.near(0..0, key, "must be more than 0s");
        } else if value > MAX_CLIENT_TIMEOUT {
            v.near(0..0, key, "must be at most 1d");
        }
    }
    if client.max_connections == 0 {
        v.near(0..0, "client.max_connections", "must be at least 1");
    }
    ClientLimits {
        trusted_proxies: client
            .trusted_proxies
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>()
            .into(),
        max_body: client.max_body.0,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        header_timeout: client.header_timeout.0,
        idle_timeout: client.idle_timeout.0,
        body_timeout: client.body_timeout.0,
        send_timeout: client.send_timeout.0,
        connection_caps: Caps {
            total: usize::try_from(client.max_connections).unwrap_or(usize::MAX),
            per_ip: usize::try_from(client.max_connections_per_ip).unwrap_or(usize::MAX),
        },
    }
}

/// Loads certificates (generating a development one when allowed) and builds the TLS config.
fn tls_settings(
    v: &mut Validator<'_>,
    tls: Option<&model::Tls>,
    missing_cert: MissingCert,
) -> Option<(tls::TlsSettings, Vec<PathBuf>)> {
    let Some(tls) = tls else {
        v.near(
            0..0,
            "tls",
            "the https listener needs a [tls] section with cert and key",
        );
        return None;
    };
    let min_tls13 = match tls.min_version.get_ref().as_str() {
        "1.2" => false,
        "1.3" => true,
        "1.0" | "1.1" => {
            v.at(
                &tls.min_version,
                "tls.min_version",
                "TLS 1.0 and 1.1 are never offered (RFC 8996); use \"1.2\" or \"1.3\"",
            );
            return None;
        }
        _ => {
            v.at(
                &tls.min_version,
                "tls.min_version",
                "expected \"1.2\" or \"1.3\"",
            );
            return None;
        }
    };

    let cert = tls.cert.get_ref();
    let key = tls.key.get_ref();
    let default_acme = *tls.acme.get_ref();
    let mut ok = true;
    if default_acme {
        if !cert.as_os_str().is_empty() || !key.as_os_str().is_empty() {
            v.at(
                &tls.acme,
                "tls.acme",
                "acme = true replaces cert and key: remove them, or remove acme",
            );
            ok = false;
        }
        if tls.hosts.is_empty() {
            v.at(
                &tls.acme,
                "tls.hosts",
                "acme = true needs the names to obtain the certificate for: hosts = [\"example.org\"]",
            );
            ok = false;
        }
    } else if !tls.hosts.is_empty() {
        v.near(
            0..0,
            "tls.hosts",
            "hosts on [tls] are only for acme = true (the default certificate's own names are in the file)",
        );
        ok = false;
    }
    let mut in_memory = None;
    if !default_acme
        && tls.self_signed_if_missing
        && missing_cert != MissingCert::Refuse
        && !cert.exists()
        && !key.exists()
    {
        let hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        match missing_cert {
            MissingCert::Generate => match crate::certgen::write_self_signed(&hosts, cert, key) {
                Ok(_) => tracing::warn!(
                    cert = %cert.display(),
                    key = %key.display(),
                    "GENERATED A SELF-SIGNED DEVELOPMENT CERTIFICATE (tls.self_signed_if_missing = true): browsers will not trust it; configure a real certificate for production"
                ),
                Err(err) => {
                    v.at(
                        &tls.cert,
                        "tls.cert",
                        format!("missing, and generating a development certificate failed: {err}"),
                    );
                    return None;
                }
            },
            MissingCert::Warn
            | MissingCert::Unseen
            | MissingCert::InMemory
            | MissingCert::Refuse => {
                v.warnings.push(if matches!(missing_cert, MissingCert::Warn | MissingCert::Unseen) {
                    format!(
                        "tls.cert: {} does not exist; `rampart run` will generate a self-signed development certificate",
                        cert.display()
                    )
                } else {
                    "SERVING A SELF-SIGNED DEVELOPMENT CERTIFICATE held in memory: browsers will not trust it; use `rampart run` with a real certificate for production".to_string()
                });
                // Check everything else against a certificate that is never written.
                match crate::certgen::generate(&hosts) {
                    Ok(generated) => in_memory = Some(generated),
                    Err(err) => {
                        v.at(&tls.cert, "tls.cert", err.to_string());
                        return None;
                    }
                }
            }
        }
    }

    if in_memory.is_none() && !default_acme && v.skips_missing() {
        let mut unseen = false;
        for (path, spanned, key_name) in [(cert, &tls.cert, "tls.cert"), (key, &tls.key, "tls.key")]
        {
            if is_missing(path) {
                v.unseen(spanned, key_name, path);
                unseen = true;
            }
        }
        if unseen {
            // The rest is checked against a certificate that is never written.
            match crate::certgen::generate(&["localhost".to_string()]) {
                Ok(generated) => in_memory = Some(generated),
                Err(err) => {
                    v.at(&tls.cert, "tls.cert", err.to_string());
                    return None;
                }
            }
        }
    }
    // `--skip-missing-paths`: extra certificates whose files are not here are left out.
    let mut unseen_extras = Vec::new();
    if v.skips_missing() {
        for (index, extra) in tls.certificates.iter().enumerate() {
            let extra = extra.get_ref();
            if extra.acme {
                continue;
            }
            let prefix = format!("tls.certificates[{index}]");
            let mut unseen = false;
            for (spanned, name) in [(&extra.cert, "cert"), (&extra.key, "key")] {
                if is_missing(spanned.get_ref()) {
                    v.unseen(spanned, &format!("{prefix}.{name}"), spanned.get_ref());
                    unseen = true;
                }
            }
            if unseen {
                unseen_extras.push(index);
            }
        }
    }

    for (path, spanned, key_name) in [(cert, &tls.cert, "tls.cert"), (key, &tls.key, "tls.key")] {
        if in_memory.is_some() || default_acme {
            break;
        }
        if path.as_os_str().is_empty() {
            v.near(
                0..0,
                key_name,
                "missing: give cert and key, or acme = true with [acme]",
            );
            ok = false;
        } else if let Err(err) = std::fs::metadata(path) {
            v.at(
                spanned,
                key_name,
                format!("cannot read {}: {}", path.display(), io_reason(&err)),
            );
            ok = false;
        }
    }
    for (index, extra) in tls.certificates.iter().enumerate() {
        let prefix = format!("tls.certificates[{index}]");
        if extra.get_ref().hosts.is_empty() {
            v.at(
                extra,
                &format!("{prefix}.hosts"),
                "list the host names this certificate is for",
            );
            ok = false;
        }
        for host in &extra.get_ref().hosts {
            if HostPattern::parse(host).is_err() || host.trim().is_empty() || host.trim() == "*" {
                v.at(
                    extra,
                    &format!("{prefix}.hosts"),
                    format!("`{host}` is not a host name or \"*.example.org\""),
                );
                ok = false;
            }
        }
        if extra.get_ref().acme {
            let written = !extra.get_ref().cert.get_ref().as_os_str().is_empty()
                || !extra.get_ref().key.get_ref().as_os_str().is_empty();
            if written {
                v.at(
                    extra,
                    &format!("{prefix}.acme"),
                    "acme = true replaces cert and key: remove them, or remove acme",
                );
                ok = false;
            }
            continue;
        }
        if unseen_extras.contains(&index) {
            continue;
        }
        for (path, spanned, name) in [
            (
                extra.get_ref().cert.get_ref(),
                &extra.get_ref().cert,
                "cert",
            ),
            (extra.get_ref().key.get_ref(), &extra.get_ref().key, "key"),
        ] {
            if path.as_os_str().is_empty() {
                v.at(
                    extra,
                    &format!("{prefix}.{name}"),
                    "missing: give cert and key, or acme = true with [acme]",
                );
                ok = false;
            } else if let Err(err) = std::fs::metadata(path) {
                v.at(
                    spanned,
                    &format!("{prefix}.{name}"),
                    format!("cannot read {}: {}", path.display(), io_reason(&err)),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }

    let extras: Vec<CertSource<'_>> = tls
        .certificates
        .iter()
        .enumerate()
        .filter(|(index, _)| !unseen_extras.contains(index))
        .map(|(_, c)| CertSource {
            hosts: &c.get_ref().hosts,
            cert: c.get_ref().cert.get_ref(),
            key: c.get_ref().key.get_ref(),
            inline_pem: None,
            acme: c.get_ref().acme,
        })
        .collect();
    let default = CertSource {
        hosts: &tls.hosts,
        acme: default_acme,
        cert,
        key,
        inline_pem: in_memory
            .as_ref()
            .map(|g| (g.cert_pem.as_bytes(), g.key_pem.as_bytes())),
    };
    match tls::build(default, &extras, min_tls13) {
        Ok(settings) => {
            let mut files = Vec::new();
            if !default_acme {
                files.extend([cert.clone(), key.clone()]);
            }
            for c in tls.certificates.iter().filter(|c| !c.get_ref().acme) {
                files.push(c.get_ref().cert.get_ref().clone());
                files.push(c.get_ref().key.get_ref().clone());
            }
            // An expired certificate is served (as nginx does) but never silently.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for info in &settings.certificates {
                if info.not_after.is_some_and(|t| t < now) {
                    v.warnings.push(format!(
                        "the certificate for `{}` has expired: clients will refuse it",
                        info.label
                    ));
                }
            }
            Some((settings, files))
        }
        Err(err) => {
            // Point at the file the error is about.
            let (spanned, key_name) = match &err {
                tls::TlsError::Key { path, .. } => find_path(tls, path, false),
                tls::TlsError::Cert { path, .. } => find_path(tls, path, true),
                tls::TlsError::Config(_) => (&tls.cert, "tls.cert".to_string()),
            };
            v.at(spanned, &key_name, err.to_string());
            None
        }
    }
}

fn find_path<'t>(tls: &'t model::Tls, path: &str, cert: bool) -> (&'t Spanned<PathBuf>, String) {
    let pick = |c: &'t Spanned<PathBuf>, k: &'t Spanned<PathBuf>| if cert { c } else { k };
    let name = if cert { "cert" } else { "key" };
    for (index, extra) in tls.certificates.iter().enumerate() {
        let spanned = pick(&extra.get_ref().cert, &extra.get_ref().key);
        if spanned.get_ref().display().to_string() == path {
            return (spanned, format!("tls.certificates[{index}].{name}"));
        }
    }
    (pick(&tls.cert, &tls.key), format!("tls.{name}"))
}

/// The path does not exist (a permission problem is not "missing": it stays an error).
fn is_missing(path: &Path) -> bool {
    std::fs::metadata(path).is_err_and(|err| err.kind() == std::io::ErrorKind::NotFound)
}

fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

/// The `[headers]` layer: preset, then the keys written. Returns the builder (routes merge over
/// it) and the compiled default policy.
fn headers(
    v: &mut Validator<'_>,
    headers: &model::Headers,
) -> (HeaderPolicyBuilder, crate::policy::headers::HeaderPolicy) {
    let preset = Preset::parse(headers.preset.get_ref()).unwrap_or_else(|| {
        v.at(
            &headers.preset,
            "headers.preset",
            "expected \"strict\", \"basic\" or \"off\"",
        );
        Preset::Strict
    });
    let mut builder = HeaderPolicyBuilder::from_preset(preset);
    builder.csp_reports(headers.csp_reports);
    apply_header_layer(
        v,
        &mut builder,
        "headers",
        &headers.security_headers(),
        &headers.set,
        headers.remove.as_deref(),
    );
    let policy = builder.build();
    (builder, policy)
}

fn apply_header_layer(
    v: &mut Validator<'_>,
    builder: &mut HeaderPolicyBuilder,
    prefix: &str,
    security: &model::SecurityHeaders<'_>,
    set: &BTreeMap<String, Spanned<String>>,
    remove: Option<&[String]>,
) {
    for (key, value) in security.iter() {
        let Some(value) = value else { continue };
        let name = SECURITY_HEADER_KEYS
            .iter()
            .find(|(k, _)| k == key)
            .map_or(*key, |(_, name)| *name);
        if *key == "strict_transport_security"
            && !value.get_ref().is_empty()
            && !value.get_ref().to_ascii_lowercase().contains("max-age=")
        {
            v.at(value, &format!("{prefix}.{key}"), "HSTS needs max-age (RFC 6797 §6.1.1), e.g. \"max-age=31536000; includeSubDomains\"");
            continue;
        }
        if let Err(err) = builder.set(name, value.get_ref()) {
            v.at(value, &format!("{prefix}.{key}"), err.to_string());
        }
    }
    for (name, value) in set {
        if let Err(err) = builder.set(name, value.get_ref()) {
            v.at(value, &format!("{prefix}.set.{name}"), err.to_string());
        }
    }
    if let Some(remove) = remove {
        if let Err(err) = builder.remove(remove) {
            v.near(0..0, &format!("{prefix}.remove"), err.to_string());
        }
    }
}

/// Bounds below which `max_keys` would evict live clients under ordinary traffic, and above
/// which the store could take gigabytes.
const MAX_KEYS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=100_000_000;

/// Where the limited routes of a snapshot count: the local store, and with `store = "redis"`
/// the shared store in front of it (the local one is then the `on_store_error = "local"`
/// fallback).
pub(crate) struct LimitStores {
    local: Arc<LocalStore>,
    redis: Option<Arc<RedisStore>>,
}

/// `[rate_limit]`: the stores all the limited routes of the snapshot count in. Connects nowhere:
/// the Redis connection is opened by the first decision.
fn rate_limit_store(v: &mut Validator<'_>, store: &model::RateLimitStore) -> LimitStores {
    let on_error = OnStoreError::parse(store.on_store_error.get_ref());
    if on_error.is_none() {
        v.at(
            &store.on_store_error,
            "rate_limit.on_store_error",
            "expected \"local\", \"allow\" or \"deny\"",
        );
    }
    let mut redis = None;
    match store.store.get_ref().as_str() {
        "local" => {}
        "redis" => match &store.redis_url {
            None => v.at(
                &store.store,
                "rate_limit.redis_url",
                "store = \"redis\" needs redis_url",
            ),
            Some(url) => match RedisStore::new(
                url,
                on_error.unwrap_or(OnStoreError::Local),
                store.redis_timeout.0,
            ) {
                Ok(shared) => redis = Some(Arc::new(shared)),
                Err(err) => v.near(
                    0..0,
                    "rate_limit.redis_url",
                    format!("not a Redis URL (like \"redis://127.0.0.1:6379\"): {err}"),
                ),
            },
        },
        _ => v.at(
            &store.store,
            "rate_limit.store",
            "expected \"local\" or \"redis\"",
        ),
    }
    if !MAX_KEYS_RANGE.contains(&store.max_keys) {
        v.near(
            0..0,
            "rate_limit.max_keys",
            "must be between 1000 and 100000000 (the local store's memory bound, about 100 bytes a key)",
        );
    }
    let max_keys = store
        .max_keys
        .clamp(*MAX_KEYS_RANGE.start(), *MAX_KEYS_RANGE.end());
    let local = Arc::new(LocalStore::new(
        usize::try_from(max_keys).unwrap_or(usize::MAX),
        Default::default(),
    ));
    LimitStores { local, redis }
}

/// A route's `rate_limit`, counted in the snapshot's local store under the route's index, and
/// in the Redis store (if any) under the route's name.
fn route_rate_limit(
    v: &mut Validator<'_>,
    limit: &model::RouteRateLimit,
    (index, name): (usize, &str),
    span: std::ops::Range<usize>,
    prefix: &str,
    stores: &LimitStores,
) -> Option<RouteLimiter> {
    let route = u32::try_from(index).unwrap_or(u32::MAX);
    match RouteLimiter::new(limit, route, &stores.local) {
        Ok(limiter) => Some(match &stores.redis {
            Some(shared) => limiter.shared(shared.clone(), name),
            None => limiter,
        }),
        Err(err) => {
            let key = format!("{prefix}.rate_limit.{}", err.key);
            match (&limit.key, err.key) {
                (Some(written), "key") => v.at(written, &key, err.message),
                _ => v.near(span, &key, err.message),
            }
            None
        }
    }
}

fn upstreams(
    v: &mut Validator<'_>,
    upstreams: &BTreeMap<String, model::Upstream>,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut compiled = BTreeMap::new();
    for (name, upstream) in upstreams {
        let prefix = format!("upstreams.{name}");
        if upstream.servers.is_empty() {
            v.near(
                0..0,
                &format!("{prefix}.servers"),
                "list at least one server",
            );
            continue;
        }
        let mut addrs = Vec::new();
        for server in &upstream.servers {
            match ServerAddr::parse(server.get_ref()) {
                Ok(addr) => addrs.push(addr),
                Err(message) => v.at(server, &format!("{prefix}.servers"), message),
            }
        }
        let balance = match upstream.balance.get_ref().as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            _ => {
                v.at(
                    &upstream.balance,
                    &format!("{prefix}.balance"),
                    "expected \"round_robin\" or \"least_conn\"",
                );
                Balance::RoundRobin
            }
        };
        let health_check = upstream
            .health_check
            .as_ref()
            .and_then(|check| health_check(v, &prefix, check));
        if upstream.connect_timeout.0.is_zero() || upstream.response_timeout.0.is_zero() {
            v.near(
                0..0,
                &format!("{prefix}.connect_timeout"),
                "timeouts must be more than 0s",
            );
        }
        if addrs.len() == upstream.servers.len() {
            let settings = UpstreamSettings {
                connect_timeout: upstream.connect_timeout.0,
                response_timeout: upstream.response_timeout.0,
                retries: upstream.retries,
                balance,
                health_check,
                passive_failures: upstream.passive_failures,
                keepalive: upstream.keepalive as usize,
                keepalive_timeout: upstream.keepalive_timeout.0,
            };
            compiled.insert(
                name.clone(),
                Arc::new(Upstream::new(name.clone(), addrs, settings)),
            );
        }
    }
    compiled
}

/// An upstream's `health_check`. Its fields carry no span: errors point at the
/// `health_check` line and name the field.
fn health_check(
    v: &mut Validator<'_>,
    prefix: &str,
    check: &model::HealthCheck,
) -> Option<HealthCheck> {
    let span = v.source.span_of_key(&format!("{prefix}.health_check"));
    let errors = v.errors.len();
    let key = |field: &str| format!("{prefix}.health_check.{field}");
    let path = match check.path.parse::<PathAndQuery>() {
        Ok(path) if check.path.starts_with('/') => Some(path),
        _ => {
            v.near(
                span.clone(),
                &key("path"),
                "expected a path like \"/health/\" (starting with /)",
            );
            None
        }
    };
    if check.interval.0.is_zero() {
        v.near(span.clone(), &key("interval"), "must be more than 0s");
    }
    if check.timeout.0.is_zero() {
        v.near(span.clone(), &key("timeout"), "must be more than 0s");
    } else if check.timeout.0 > check.interval.0 {
        v.near(
            span.clone(),
            &key("timeout"),
            "must not be longer than interval (a check ends before the next one is due)",
        );
    }
    for (field, value) in [("healthy", check.healthy), ("unhealthy", check.unhealthy)] {
        if value == 0 {
            v.near(
                span.clone(),
                &key(field),
                "must be at least 1 (consecutive checks that change the state)",
            );
        }
    }
    if v.errors.len() > errors {
        return None;
    }
    Some(HealthCheck {
        path: path?,
        interval: check.interval.0,
        timeout: check.timeout.0,
        healthy: check.healthy,
        unhealthy: check.unhealthy,
    })
}

fn routes(
    v: &mut Validator<'_>,
    routes: &[Spanned<model::Route>],
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    written_upstreams: &BTreeMap<String, model::Upstream>,
    default_headers: &HeaderPolicyBuilder,
    client: &ClientLimits,
    limit_store: &LimitStores,
) -> Router<Route> {
    let mut entries = Vec::new();
    let mut names = HashSet::new();
    for (index, spanned) in routes.iter().enumerate() {
        let route = spanned.get_ref();
        let span = spanned.span();
        let prefix = format!("routes[{index}]");
        let name = route
            .name
            .clone()
            .unwrap_or_else(|| format!("route{index}"));
        if !names.insert(name.clone()) {
            v.near(
                span.clone(),
                &format!("{prefix}.name"),
                format!("a route named `{name}` already exists (names label metrics)"),
            );
        }

        let path = route.path.get_ref();
        match path::normalize(path) {
            Ok(normalized) if normalized == *path || normalized.trim_end_matches('/') == path.as_str() => {}
            Ok(normalized) => v.at(&route.path, &format!("{prefix}.path"), format!("write the path in normalized form (\"{normalized}\"): routes match decoded, dot-free paths")),
            Err(err) => v.at(&route.path, &format!("{prefix}.path"), format!("not a path prefix: {err}")),
        }

        let mut hosts = Vec::new();
        for host in route.host.iter().chain(route.hosts.iter().flatten()) {
            match HostPattern::parse(host.get_ref()) {
                Ok(pattern) => hosts.push(pattern),
                Err(message) => v.at(host, &format!("{prefix}.host"), message),
            }
        }
        if hosts.is_empty() {
            hosts.push(HostPattern::Any);
        }

        let methods = route.methods.as_ref().map(|list| {
            list.iter()
                .filter_map(|m| {
                    let text = m.get_ref();
                    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase()) {
                        v.at(
                            m,
                            &format!("{prefix}.methods"),
                            format!("`{text}` is not a method (write it uppercase, like \"POST\")"),
                        );
                        return None;
                    }
                    Method::from_bytes(text.as_bytes()).ok()
                })
                .collect::<Vec<_>>()
        });

        // Features of later versions: refused rather than silently not enforced.
        let rate_limit = route.rate_limit.as_ref().and_then(|limit| {
            route_rate_limit(v, limit, (index, &name), span.clone(), &prefix, limit_store)
        });
        let cors = route
            .cors
            .as_ref()
            .and_then(|cors| route_cors(v, cors, span.clone(), &prefix));
        let compress = route_compress(v, route, &prefix);
        let raw_path = route_forward_path(v, route, &prefix);

        let action = route_action(
            v,
            route,
            span.clone(),
            &prefix,
            upstreams,
            written_upstreams,
        );
        let response_timeout = route_response_timeout(v, route, &prefix);
        let auth = route_auth(v, route, span.clone(), &prefix);

        let mut builder = default_headers.clone();
        if let Some(headers) = &route.headers {
            apply_header_layer(
                v,
                &mut builder,
                &format!("{prefix}.headers"),
                &headers.security_headers(),
                &headers.set,
                headers.remove.as_deref(),
            );
        }
        let ip_rules = IpRules {
            allow: route.allow.iter().flatten().map(|c| c.0).collect(),
            deny: route.deny.iter().flatten().map(|c| c.0).collect(),
        };
        if route.allow.as_ref().is_some_and(Vec::is_empty) {
            v.near(
                span.clone(),
                &format!("{prefix}.allow"),
                "an empty allow list would refuse everyone; remove it or list networks",
            );
        }

        let Some(action) = action else { continue };
        let headers = builder.build();
        v.nonces |= headers.needs_nonce();
        let compiled = Arc::new(Route {
            name,
            prefix: path.clone(),
            action,
            headers,
            ip_rules,
            max_body: route.max_body.map_or(client.max_body, |b| b.0),
            cors,
            rate_limit,
            compress,
            raw_path,
            response_timeout,
            auth,
        });
        for host in hosts {
            entries.push(Entry {
                host,
                prefix: path.clone(),
                methods: methods.clone(),
                target: compiled.clone(),
            });
        }
    }
    Router::new(entries)
}

/// A route's `basic_auth` or `forward_auth` (not both). The users file is read here, so a
/// reload rereads it; an unreadable file or a line that is not `name:argon2-or-bcrypt-hash` is
/// an error naming the users file and its line.
fn route_auth(
    v: &mut Validator<'_>,
    route: &model::Route,
    span: std::ops::Range<usize>,
    prefix: &str,
) -> Option<Auth> {
    use crate::policy::auth::{basic, forward};
    if let (Some(_), Some(forward)) = (&route.basic_auth, &route.forward_auth) {
        v.at(
            forward,
            &format!("{prefix}.forward_auth"),
            "a route takes basic_auth or forward_auth, not both",
        );
        return None;
    }
    if let Some(spanned) = &route.basic_auth {
        let auth = spanned.get_ref();
        let key = format!("{prefix}.basic_auth.users");
        let path = auth.users.get_ref();
        if v.skips_missing() && is_missing(path) {
            v.unseen(&auth.users, &key, path);
            return None;
        }
        v.files.push(path.clone());
        let users = match basic::read_users_file(path) {
            Ok(users) => users,
            Err(errors) => {
                for error in errors {
                    if error.line == 0 {
                        v.at(
                            &auth.users,
                            &key,
                            format!("{}: {}", path.display(), error.message),
                        );
                    } else {
                        let line = v.source.error_at(auth.users.span(), "", "").line;
                        v.errors.push(ConfigError {
                            file: path.display().to_string(),
                            line: error.line,
                            column: 1,
                            key: Some(key.clone()),
                            message: format!(
                                "{} (users file of {}:{line})",
                                error.message, v.source.file
                            ),
                        });
                    }
                }
                return None;
            }
        };
        return match basic::BasicAuth::new(auth.realm.get_ref(), users) {
            Ok(basic) => Some(Auth::Basic(basic)),
            Err(message) => {
                v.at(&auth.realm, &format!("{prefix}.basic_auth.realm"), message);
                None
            }
        };
    }
    if let Some(spanned) = &route.forward_auth {
        let auth = spanned.get_ref();
        return match forward::ForwardAuth::new(
            auth.url.get_ref(),
            &auth.copy_headers,
            auth.timeout.0,
        ) {
            Ok(forward) => Some(Auth::Forward(Box::new(forward))),
            Err(message) => {
                let _ = span;
                v.at(&auth.url, &format!("{prefix}.forward_auth"), message);
                None
            }
        };
    }
    None
}

/// A route's `response_timeout`: only for an upstream route, and more than 0s.
fn route_response_timeout(
    v: &mut Validator<'_>,
    route: &model::Route,
    prefix: &str,
) -> Option<std::time::Duration> {
    let timeout = route.response_timeout.as_ref()?;
    let key = format!("{prefix}.response_timeout");
    if route.upstream.is_none() {
        v.at(
            timeout,
            &key,
            "only an upstream route waits for a response; remove it here",
        );
        return None;
    }
    if timeout.get_ref().0.is_zero() {
        v.at(timeout, &key, "must be more than 0s");
        return None;
    }
    Some(timeout.get_ref().0)
}

/// A route's `cors`; every error names its key (`routes[0].cors.allow_origins`) and, for an
/// origin, that origin's line.
fn route_cors(
    v: &mut Validator<'_>,
    cors: &model::Cors,
    span: std::ops::Range<usize>,
    prefix: &str,
) -> Option<CorsPolicy> {
    let errors = match CorsPolicy::from_config(cors) {
        Ok(policy) => return Some(policy),
        Err(errors) => errors,
    };
    for error in errors {
        let key = format!("{prefix}.cors.{}", error.key);
        match error.index.and_then(|i| cors.allow_origins.get(i)) {
            Some(origin) if origin.span() != (0..0) => v.at(origin, &key, error.message),
            _ => v.near(span.clone(), &key, error.message),
        }
    }
    None
}

/// `compress`: on by default for upstream routes. Only proxied responses are compressed, so
/// `compress = true` elsewhere is refused rather than silently doing nothing.
fn route_compress(v: &mut Validator<'_>, route: &model::Route, prefix: &str) -> bool {
    let proxied = route.upstream.is_some();
    match &route.compress {
        None => proxied,
        Some(compress) if *compress.get_ref() && !proxied => {
            v.at(
                compress,
                &format!("{prefix}.compress"),
                "only responses from an upstream are compressed; a static route serves precompressed .br/.gz files, and redirect and respond answers are small",
            );
            false
        }
        Some(compress) => *compress.get_ref(),
    }
}

/// `forward_path`: `"normalized"` (the default) or `"raw"`, on upstream routes only (the other
/// actions never forward a path).
fn route_forward_path(v: &mut Validator<'_>, route: &model::Route, prefix: &str) -> bool {
    let Some(mode) = &route.forward_path else {
        return false;
    };
    let key = format!("{prefix}.forward_path");
    if route.upstream.is_none() {
        v.at(mode, &key, "only an upstream route forwards a path");
        return false;
    }
    match mode.get_ref().as_str() {
        "normalized" => false,
        "raw" => true,
        other => {
            v.at(
                mode,
                &key,
                format!("`{other}` is not a mode: \"normalized\" (the default) or \"raw\""),
            );
            false
        }
    }
}

fn route_action(
    v: &mut Validator<'_>,
    route: &model::Route,
    span: std::ops::Range<usize>,
    prefix: &str,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    written_upstreams: &BTreeMap<String, model::Upstream>,
) -> Option<Action> {
    let count = [
        route.upstream.is_some(),
        route.static_files.is_some(),
        route.redirect.is_some(),
        route.respond.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count != 1 {
        v.near(
            span,
            prefix,
            "a route has exactly one action: upstream, static, redirect or respond",
        );
        return None;
    }
    if let Some(name) = &route.upstream {
        return match upstreams.get(name.get_ref()) {
            Some(upstream) => Some(Action::Proxy(upstream.clone())),
            // Defined, but invalid: its own error says why, once.
            None if written_upstreams.contains_key(name.get_ref()) => None,
            None => {
                v.at(
                    name,
                    &format!("{prefix}.upstream"),
                    format!("no [upstreams.{}] is defined", name.get_ref()),
                );
                None
            }
        };
    }
    if let Some(files) = &route.static_files {
        return route_static(v, files, &route.path, span, prefix);
    }
    if let Some(redirect) = &route.redirect {
        let status = *redirect.status.get_ref();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            v.at(
                &redirect.status,
                &format!("{prefix}.redirect.status"),
                "a redirect status is 301, 302, 303, 307 or 308",
            );
        }
        return match RedirectTemplate::parse(redirect.to.get_ref()) {
            Ok(to) => Some(Action::Redirect {
                to,
                status: StatusCode::from_u16(status).ok()?,
            }),
            Err(message) => {
                v.at(&redirect.to, &format!("{prefix}.redirect.to"), message);
                None
            }
        };
    }
    if let Some(respond) = &route.respond {
        let status = *respond.status.get_ref();
        let Some(status) = (200..=599)
            .contains(&status)
            .then(|| StatusCode::from_u16(status).ok())
            .flatten()
        else {
            v.at(
                &respond.status,
                &format!("{prefix}.respond.status"),
                "a status between 200 and 599",
            );
            return None;
        };
        let content_type = respond
            .content_type
            .as_deref()
            .unwrap_or("text/plain; charset=utf-8");
        let Ok(content_type) = HeaderValue::from_str(content_type) else {
            v.at(
                &respond.status,
                &format!("{prefix}.respond.content_type"),
                "not a valid header value",
            );
            return None;
        };
        return Some(Action::Respond(Respond {
            status,
            body: Bytes::from(respond.body.clone()),
            content_type,
        }));
    }
    None
}

/// A route's `static`: the root resolved once (every served file's real path must start with
/// it), `deny_extensions` normalized, `index` a plain file name, `fallback` a file in the root.
fn route_static(
    v: &mut Validator<'_>,
    files: &model::StaticFiles,
    path: &Spanned<String>,
    span: std::ops::Range<usize>,
    prefix: &str,
) -> Option<Action> {
    let key = format!("{prefix}.static");
    let mut ok = true;
    if !path.get_ref().ends_with('/') {
        v.at(
            path,
            &format!("{prefix}.path"),
            format!(
                "a static route's path ends with '/' (\"{}/\"): the rest of the path names the file",
                path.get_ref()
            ),
        );
        ok = false;
    }
    let root = files.root.get_ref();
    let root = match std::fs::canonicalize(root) {
        Ok(canonical) if canonical.is_dir() => Some(canonical),
        // Checked without the volume: the rest of the route is still validated.
        Err(err) if v.skips_missing() && err.kind() == std::io::ErrorKind::NotFound => {
            v.unseen(&files.root, &format!("{key}.root"), root);
            Some(root.clone())
        }
        Ok(_) => {
            v.at(
                &files.root,
                &format!("{key}.root"),
                format!("{} is not a directory", root.display()),
            );
            None
        }
        Err(err) => {
            v.at(
                &files.root,
                &format!("{key}.root"),
                format!("cannot read {}: {}", root.display(), io_reason(&err)),
            );
            None
        }
    };
    let cache_control = match files.cache_control.as_deref() {
        None | Some("") => None,
        Some(value) => match HeaderValue::from_str(value) {
            Ok(value) => Some(value),
            Err(_) => {
                v.near(
                    span.clone(),
                    &format!("{key}.cache_control"),
                    "not a valid header value",
                );
                ok = false;
                None
            }
        },
    };
    let mut deny_extensions = Vec::new();
    for extension in &files.deny_extensions {
        let normalized = extension
            .trim()
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if normalized.is_empty() || normalized.contains(['/', '\\', '\0']) {
            v.near(
                span.clone(),
                &format!("{key}.deny_extensions"),
                format!("`{extension}` is not a file extension (like \"php\" or \"tar.gz\")"),
            );
            ok = false;
        } else if !deny_extensions.contains(&normalized) {
            deny_extensions.push(normalized);
        }
    }
    if let Some(index) = &files.index {
        if index.is_empty() || index.starts_with('.') || index.contains(['/', '\\', '\0']) {
            v.near(
                span,
                &format!("{key}.index"),
                format!("`{index}` is not a plain file name (like \"index.html\")"),
            );
            ok = false;
        }
    }
    let fallback = match (&files.fallback, &root) {
        (Some(fallback), Some(root)) => {
            let checked = static_fallback(v, fallback, root, &deny_extensions, &key);
            ok &= checked.is_some();
            checked
        }
        _ => None,
    };
    if !ok {
        return None;
    }
    Some(Action::Static(Arc::new(
        StaticFiles::new(root?, cache_control, &deny_extensions, files.index.clone())
            .with_fallback(fallback),
    )))
}

/// A static route's `fallback`: a relative path to a regular file inside the root, neither
/// hidden nor denied, that exists now (a typo would otherwise turn every deep link into a 404
/// only once deployed).
fn static_fallback(
    v: &mut Validator<'_>,
    fallback: &Spanned<String>,
    root: &Path,
    deny_extensions: &[String],
    key: &str,
) -> Option<PathBuf> {
    let key = format!("{key}.fallback");
    let text = fallback.get_ref();
    let segments: Vec<&str> = text.split('/').collect();
    let plain = !text.is_empty()
        && !text.contains(['\\', '\0'])
        && segments
            .iter()
            .all(|s| !s.is_empty() && !s.starts_with('.'));
    if !plain {
        v.at(
            fallback,
            &key,
            format!(
                "`{text}` is not a file path relative to the root (like \"index.html\" or \"app/index.html\"): no leading '/', no '.' or '..' segments, no hidden names"
            ),
        );
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if deny_extensions
        .iter()
        .any(|ext| lower.ends_with(&format!(".{ext}")))
    {
        v.at(fallback, &key, format!("`{text}` has a denied extension"));
        return None;
    }
    let path = root.join(text);
    match std::fs::canonicalize(&path) {
        Ok(real) if real.starts_with(root) && real.is_file() => Some(PathBuf::from(text)),
        Ok(real) if !real.starts_with(root) => {
            v.at(
                fallback,
                &key,
                format!("{} leads outside the root", path.display()),
            );
            None
        }
        Ok(_) => {
            v.at(
                fallback,
                &key,
                format!("{} is not a regular file", path.display()),
            );
            None
        }
        Err(err) => {
            v.at(
                fallback,
                &key,
                format!("cannot read {}: {}", path.display(), io_reason(&err)),
            );
            None
        }
    }
}

/// `[acme]` and the certificates that use it (DESIGN §5b).
fn acme_settings(v: &mut Validator<'_>, file: &model::File) -> Option<Arc<AcmeSettings>> {
    // (key, hosts) of every certificate with acme = true.
    let mut wanted: Vec<(String, &[String])> = Vec::new();
    if let Some(tls) = &file.tls {
        if *tls.acme.get_ref() {
            wanted.push(("tls.hosts".to_string(), &tls.hosts));
        }
        for (index, extra) in tls.certificates.iter().enumerate() {
            if extra.get_ref().acme {
                wanted.push((
                    format!("tls.certificates[{index}].hosts"),
                    &extra.get_ref().hosts,
                ));
            }
        }
    }
    let Some(acme) = &file.acme else {
        if let Some((key, _)) = wanted.first() {
            v.near(
                0..0,
                key,
                "acme = true needs an [acme] section (directory, storage)",
            );
        }
        return None;
    };
    let acme = acme.get_ref();
    if wanted.is_empty() {
        v.warnings.push(
            "[acme] is configured but no certificate has acme = true: nothing will be obtained"
                .to_string(),
        );
    }
    let directory = acme.directory.get_ref().trim().to_string();
    match directory.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
        _ => v.at(
            &acme.directory,
            "acme.directory",
            "expected the CA's https:// directory URL (the ACME protocol runs over https only)",
        ),
    }
    let challenge = Challenge::parse(acme.challenge.get_ref());
    match challenge {
        None => v.near(
            acme.challenge.span(),
            "acme.challenge",
            "expected \"http-01\" or \"tls-alpn-01\" (DNS-01 is not implemented)",
        ),
        Some(Challenge::Http01) if file.listen.http.is_none() => v.near(
            acme.challenge.span(),
            "acme.challenge",
            "http-01 is answered on the plain-http listener: set listen.http (port 80), or use \"tls-alpn-01\"",
        ),
        Some(_) => {}
    }
    let challenge = challenge.unwrap_or(Challenge::Http01);
    for (key, hosts) in &wanted {
        for host in hosts.iter() {
            if let Some(reason) = crate::acme::config::refuse_host(host, challenge) {
                v.near(0..0, key, reason);
            }
        }
    }
    let storage = match acme.storage.get_ref().trim() {
        "redis" => match &file.rate_limit.redis_url {
            Some(url) => Some(StorageKind::Redis(url.clone())),
            None => {
                v.at(
                    &acme.storage,
                    "acme.storage",
                    "storage = \"redis\" uses [rate_limit].redis_url, which is not set",
                );
                None
            }
        },
        "" => {
            v.at(
                &acme.storage,
                "acme.storage",
                "expected a directory path or \"redis\"",
            );
            None
        }
        path => {
            let path = PathBuf::from(path);
            let usable = match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err("exists and is not a directory".to_string()),
                Err(_) => match path.parent().map(std::fs::metadata) {
                    Some(Ok(parent)) if parent.is_dir() => Ok(()),
                    _ => Err("neither it nor its parent directory exists".to_string()),
                },
            };
            match usable {
                Ok(()) => Some(StorageKind::Dir(path)),
                Err(reason) => {
                    v.at(
                        &acme.storage,
                        "acme.storage",
                        format!("{}: {reason}", path.display()),
                    );
                    None
                }
            }
        }
    };
    if let Some(ca) = &acme.ca_certificates {
        if let Err(err) = std::fs::metadata(ca.get_ref()) {
            v.at(
                ca,
                "acme.ca_certificates",
                format!(
                    "cannot read {}: {}",
                    ca.get_ref().display(),
                    io_reason(&err)
                ),
            );
        }
    }
    let eab = match &acme.eab {
        None => None,
        Some(eab) => match crate::acme::config::decode_base64(&eab.get_ref().hmac_key) {
            Some(hmac_key) if !eab.get_ref().kid.is_empty() => Some(Eab {
                kid: eab.get_ref().kid.clone(),
                hmac_key,
            }),
            _ => {
                v.at(
                    eab,
                    "acme.eab",
                    "expected { kid = \"…\", hmac_key = \"base64url…\" } as the CA gave them",
                );
                None
            }
        },
    };
    let email = acme.email.as_ref().map(|email| {
        let text = email.get_ref().trim();
        let plausible = text
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !plausible {
            v.at(
                email,
                "acme.email",
                "expected an address like \"ops@example.com\"",
            );
        }
        text.to_string()
    });
    if acme.retry_min.0.is_zero() || acme.retry_max.0 < acme.retry_min.0 {
        v.near(
            0..0,
            "acme.retry_min",
            "expected 0 < retry_min <= retry_max (the back-off after a failed order)",
        );
    }
    Some(Arc::new(AcmeSettings {
        timing: crate::acme::Timing {
            backoff_min: acme.retry_min.0,
            backoff_max: acme.retry_max.0,
        },
        directory,
        email,
        storage: storage?,
        challenge,
        ca_certificates: acme.ca_certificates.as_ref().map(|c| c.get_ref().clone()),
        eab,
    }))
}
