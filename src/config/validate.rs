//! Raw model → compiled [`Snapshot`]: every semantic check, with errors pointing at the key.
//!
//! All errors are collected (not just the first) so `rampart check` can list them at once.
//! This file holds the [`Validator`], [`validate`] (the order of the sections) and the routes
//! table; each section is a file of `validate/` (listen, client, log, certificates, headers,
//! rate_limit, ban, upstreams, route_settings, actions, acme) with its unit tests. The sections share
//! this file's imports and helpers (`use super::*`).

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
use crate::policy::cors::{CorsPolicy, CorsRules};
use crate::policy::headers::{HeaderPolicyBuilder, Preset, SECURITY_HEADER_KEYS};
use crate::policy::ratelimit::{LimitRule, LocalStore, OnStoreError, RedisStore, RouteLimiter};
use crate::router::{Entry, HostPattern, Router};
use crate::snapshot::{Action, Auth, ClientLimits, Listen, LogSettings, Route, Snapshot};
use crate::static_files::StaticFiles;
use crate::upstream::health_state::HealthCheck;
use crate::upstream::{Balance, ServerAddr, Upstream, UpstreamSettings};

mod acme;
mod actions;
mod auth;
mod ban;
mod certificates;
mod client;
mod headers;
mod listen;
mod log;
mod rate_limit;
mod route_settings;
mod upstreams;

use self::acme::*;
use self::actions::*;
use self::auth::*;
use self::ban::*;
use self::certificates::*;
use self::client::*;
use self::headers::*;
use self::listen::*;
use self::log::*;
use self::rate_limit::*;
use self::route_settings::*;
use self::upstreams::*;

/// What to do about a missing certificate when `tls.self_signed_if_missing` is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingCert {
    /// `rampart run`: generate a development certificate, which the snapshot carries for
    /// `run` to write (validation itself writes nothing).
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
    let mut development_certificate = None;
    let tls = tls_settings(
        &mut v,
        file.tls.as_ref(),
        missing_cert,
        &mut development_certificate,
    );
    let (default_builder, default_headers) = headers(&mut v, &file.headers);
    let cookies = CookiePolicy::new(
        file.cookies.secure,
        file.cookies.http_only,
        &file.cookies.same_site,
    )
    .unwrap_or_else(|err| {
        v.near(0..0, err.key(), err.to_string());
        CookiePolicy::OFF
    });
    let limit_store = rate_limit_store(&mut v, &file.rate_limit);
    let bans = ban_settings(&mut v, &file);
    let upstreams = upstreams(&mut v, &file.upstreams);
    let router = routes(
        &mut v,
        &file.routes,
        &upstreams,
        &file.upstreams,
        &default_builder,
        &client,
        &limit_store,
        &bans,
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
        bans,
        warnings: v.warnings,
        development_certificate,
        csp_reports: file
            .headers
            .csp_reports
            .then(crate::policy::csp::report_rate_limiter),
        nonces,
    })
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

#[allow(clippy::too_many_arguments)]
fn routes(
    v: &mut Validator<'_>,
    routes: &[Spanned<model::Route>],
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    written_upstreams: &BTreeMap<String, model::Upstream>,
    default_headers: &HeaderPolicyBuilder,
    client: &ClientLimits,
    limit_store: &LimitStores,
    bans: &crate::policy::ban::Bans,
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
        let auth = route_auth(v, route, &prefix);
        let ban = route_ban(v, route, &name, &prefix, bans);

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
            ban,
            auth,
            metrics: Default::default(),
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

/// For the sections' unit tests: a config that validates, with `extra` appended.
#[cfg(test)]
pub(crate) mod test_config {
    use super::MissingCert;

    /// `[listen]` and `[tls]` (a development certificate held in memory), one route.
    pub fn with(extra: &str) -> String {
        format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = \"/nonexistent/dev.crt\"\nkey = \"/nonexistent/dev.key\"\nself_signed_if_missing = true\n\n{extra}\n\n[[routes]]\nname = \"last\"\npath = \"/\"\nrespond = {{ status = 200 }}\n"
        )
    }

    /// The compiled snapshot, or the keys of the errors (with their messages).
    pub fn load(text: &str) -> Result<crate::Snapshot, Vec<(String, String)>> {
        crate::config::load_str_with(text, "t.toml", MissingCert::InMemory).map_err(|errors| {
            errors
                .0
                .into_iter()
                .map(|e| (e.key.unwrap_or_default(), e.message))
                .collect()
        })
    }

    /// The error keys of `with(extra)`: empty when it validates.
    pub fn error_keys(extra: &str) -> Vec<String> {
        match load(&with(extra)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|(key, _)| key).collect(),
        }
    }
}
