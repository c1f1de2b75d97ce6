//! `rampart check --diff OLD FILE`: what loading FILE over OLD would change, section by section,
//! in a stable order (the sections below, then keys sorted, routes in file order).
//!
//! Values are compared as written (`${NAME}` unexpanded), so a value from the environment is
//! shown as `${NAME}`, never as its value. Certificates are compared by what their files hold:
//! the names (SANs) and the expiry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::env;
use super::source::Source;

/// Sections compared key by key, in output order, and whether a change needs a restart.
const SECTIONS: [(&str, Restart); 7] = [
    ("listen", Restart::Addresses),
    ("tls", Restart::Never),
    ("acme", Restart::Always),
    ("client", Restart::Never),
    ("headers", Restart::Never),
    ("cookies", Restart::Never),
    ("rate_limit", Restart::Never),
];

#[derive(Clone, Copy, PartialEq)]
enum Restart {
    Never,
    /// `listen.https`, `listen.http`, `listen.admin`, `listen.workers`.
    Addresses,
    /// `[acme]` is read at start.
    Always,
}

const RESTART_KEYS: [&str; 4] = ["https", "http", "admin", "workers"];

/// One config file as written: its raw table and its certificates.
pub struct Side {
    table: toml::Table,
    certificates: BTreeMap<String, CertSummary>,
}

#[derive(Debug, Clone, PartialEq)]
struct CertSummary {
    file: String,
    /// DNS names of the leaf, sorted; empty when the file cannot be read.
    names: Vec<String>,
    /// notAfter, RFC 3339; `None` when the file cannot be read as a certificate.
    expires: Option<String>,
}

impl Side {
    /// Reads a config file for comparison. `Err` is one line saying why it cannot be read.
    pub fn read(path: &Path) -> Result<Side, String> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("{label}: cannot read the config file: {err}"))?;
        Side::from_text(&label, &text)
    }

    pub fn from_text(label: &str, text: &str) -> Result<Side, String> {
        let source = Source::new(label, text.to_string());
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            source
                .error_at(e.span().unwrap_or(0..0), "", e.message().trim())
                .to_string()
        })?;
        // Certificate paths may come from the environment: expanded to read the files (never
        // shown).
        let certificates = match env::expand(&source, &env::from_process) {
            Ok((expanded, redactions)) => toml::from_str::<toml::Table>(&expanded.text)
                .map(|t| certificates(&t))
                .unwrap_or_default()
                .into_iter()
                .map(|(label, mut cert)| {
                    cert.file = redactions.apply(&cert.file);
                    (redactions.apply(&label), cert)
                })
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        Ok(Side {
            table,
            certificates,
        })
    }
}

/// The changes from `old` to `new`, one line each, or "no changes".
pub fn describe(old: &Side, new: &Side) -> String {
    let mut out = String::new();
    for (section, restart) in SECTIONS {
        let mut before = BTreeMap::new();
        let mut after = BTreeMap::new();
        if let Some(v) = old.table.get(section) {
            flatten(section, v, &mut before, section == "tls");
        }
        if let Some(v) = new.table.get(section) {
            flatten(section, v, &mut after, section == "tls");
        }
        for line in compare(&before, &after) {
            let needs_restart = match restart {
                Restart::Never => false,
                Restart::Always => true,
                Restart::Addresses => RESTART_KEYS
                    .iter()
                    .any(|k| line.key == format!("listen.{k}")),
            };
            out.push_str(&line.text);
            if needs_restart {
                out.push_str(" (needs restart)");
            }
            out.push('\n');
        }
    }
    log_section(old, new, &mut out);
    upstreams(old, new, &mut out);
    routes(old, new, &mut out);
    certificate_changes(&old.certificates, &new.certificates, &mut out);
    if out.is_empty() {
        out.push_str("no changes\n");
    }
    out
}

/// `[log]`: compared like the sections above (no key needs a restart).
fn log_section(old: &Side, new: &Side, out: &mut String) {
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    if let Some(v) = old.table.get("log") {
        flatten("log", v, &mut before, false);
    }
    if let Some(v) = new.table.get("log") {
        flatten("log", v, &mut after, false);
    }
    for line in compare(&before, &after) {
        let _ = writeln!(out, "{}", line.text);
    }
}

fn upstreams(old: &Side, new: &Side, out: &mut String) {
    let table = |side: &Side| -> BTreeMap<String, toml::Value> {
        side.table
            .get("upstreams")
            .and_then(toml::Value::as_table)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let (before, after) = (table(old), table(new));
    for (name, value) in &after {
        match before.get(name) {
            None => {
                let servers = value
                    .get("servers")
                    .map_or(String::new(), |s| format!(" with servers {}", display(s)));
                let _ = writeln!(out, "upstream {}: added{servers}", quoted(name));
            }
            Some(old_value) => {
                let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
                flatten("", old_value, &mut a, false);
                flatten("", value, &mut b, false);
                for line in compare(&a, &b) {
                    let _ = writeln!(out, "upstream {}: {}", quoted(name), line.text);
                }
            }
        }
    }
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        let _ = writeln!(out, "upstream {}: removed", quoted(name));
    }
}

/// A route's identity across the two files: its `name`, else its hosts and path.
fn route_id(route: &toml::Value) -> String {
    if let Some(name) = route.get("name").and_then(toml::Value::as_str) {
        return format!("route {}", quoted(name));
    }
    let path = route
        .get("path")
        .map_or_else(|| "\"/\"".to_string(), display);
    let hosts = route
        .get("host")
        .or_else(|| route.get("hosts"))
        .map_or(String::new(), |h| format!(" host {}", display(h)));
    format!("route (unnamed) path {path}{hosts}")
}

fn routes(old: &Side, new: &Side, out: &mut String) {
    let list = |side: &Side| -> Vec<(String, toml::Value)> {
        side.table
            .get("routes")
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().map(|r| (route_id(r), r.clone())).collect())
            .unwrap_or_default()
    };
    let (before, after) = (list(old), list(new));
    let find = |list: &[(String, toml::Value)], id: &str| {
        list.iter().find(|(i, _)| i == id).map(|(_, v)| v.clone())
    };
    for (position, (id, route)) in after.iter().enumerate() {
        match find(&before, id) {
            None => {
                let what = action(route);
                let _ = writeln!(out, "{id}: added (position {}, {what})", position + 1);
            }
            Some(old_route) => {
                let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
                flatten("", &old_route, &mut a, false);
                flatten("", route, &mut b, false);
                for line in compare(&a, &b) {
                    let _ = writeln!(out, "{id}: {}", line.text);
                }
            }
        }
    }
    for (id, _) in before.iter().filter(|(id, _)| find(&after, id).is_none()) {
        let _ = writeln!(out, "{id}: removed");
    }
    let order = |list: &[(String, toml::Value)], other: &[(String, toml::Value)]| {
        list.iter()
            .filter(|(id, _)| other.iter().any(|(o, _)| o == id))
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
    };
    if order(&before, &after) != order(&after, &before) {
        let _ = writeln!(out, "routes: reordered (routes are tried in file order)");
    }
}

/// What a route does, for an added route's line.
fn action(route: &toml::Value) -> String {
    let path = route.get("path").map_or("\"/\"".to_string(), display);
    for key in ["upstream", "static", "redirect", "respond"] {
        if let Some(v) = route.get(key) {
            let target = match v {
                toml::Value::String(_) => format!(" {}", display(v)),
                _ => String::new(),
            };
            return format!("path {path}, {key}{target}");
        }
    }
    format!("path {path}")
}

fn certificates(table: &toml::Table) -> BTreeMap<String, CertSummary> {
    let mut out = BTreeMap::new();
    let Some(tls) = table.get("tls") else {
        return out;
    };
    if let Some(cert) = tls.get("cert").and_then(toml::Value::as_str) {
        out.insert("default".to_string(), summary(cert));
    }
    if tls.get("acme").and_then(toml::Value::as_bool) == Some(true) {
        out.insert("default".to_string(), acme_summary(tls.get("hosts")));
    }
    for entry in tls
        .get("certificates")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(label) = entry
            .get("hosts")
            .and_then(toml::Value::as_array)
            .and_then(|h| h.first())
            .and_then(toml::Value::as_str)
        else {
            continue;
        };
        let summary = match entry.get("cert").and_then(toml::Value::as_str) {
            Some(cert) => summary(cert),
            None => acme_summary(entry.get("hosts")),
        };
        out.insert(label.to_string(), summary);
    }
    out
}

fn acme_summary(hosts: Option<&toml::Value>) -> CertSummary {
    let mut names: Vec<String> = hosts
        .and_then(toml::Value::as_array)
        .map(|h| {
            h.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    CertSummary {
        file: "(ACME)".to_string(),
        names,
        expires: None,
    }
}

fn summary(file: &str) -> CertSummary {
    let leaf = CertificateDer::pem_file_iter(PathBuf::from(file))
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok);
    let parsed = leaf.as_ref().and_then(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => {
                            Some(d.to_ascii_lowercase())
                        }
                        x509_parser::extensions::GeneralName::IPAddress(ip) => {
                            ip_text(ip).map(|ip| ip.to_string())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let not_after = cert.validity().not_after.timestamp();
        Some((names, rfc3339(not_after)))
    });
    match parsed {
        Some((names, expires)) => CertSummary {
            file: file.to_string(),
            names,
            expires,
        },
        None => CertSummary {
            file: file.to_string(),
            names: Vec::new(),
            expires: None,
        },
    }
}

fn ip_text(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

fn rfc3339(unix: i64) -> Option<String> {
    let secs = u64::try_from(unix).ok()?;
    let time = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

fn certificate_changes(
    before: &BTreeMap<String, CertSummary>,
    after: &BTreeMap<String, CertSummary>,
    out: &mut String,
) {
    let names = |c: &CertSummary| {
        if c.names.is_empty() {
            "(unreadable)".to_string()
        } else {
            c.names.join(", ")
        }
    };
    let expiry = |c: &CertSummary| c.expires.clone().unwrap_or_else(|| "unknown".to_string());
    for (label, cert) in after {
        match before.get(label) {
            None => {
                let _ = writeln!(
                    out,
                    "certificate {}: added (names {}; expires {})",
                    quoted(label),
                    names(cert),
                    expiry(cert)
                );
            }
            Some(old) if old != cert => {
                let mut parts = Vec::new();
                if old.file != cert.file {
                    parts.push(format!("file {:?} → {:?}", old.file, cert.file));
                }
                if old.names != cert.names {
                    parts.push(format!("names {} → {}", names(old), names(cert)));
                }
                if old.expires != cert.expires {
                    parts.push(format!("expires {} → {}", expiry(old), expiry(cert)));
                }
                let _ = writeln!(out, "certificate {}: {}", quoted(label), parts.join("; "));
            }
            Some(_) => {}
        }
    }
    for label in before.keys().filter(|l| !after.contains_key(*l)) {
        let _ = writeln!(out, "certificate {}: removed", quoted(label));
    }
}

struct Line {
    key: String,
    text: String,
}

/// Added, removed and changed keys of two flattened tables, sorted by key.
fn compare(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<Line> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let text = match (before.get(key), after.get(key)) {
                (Some(a), Some(b)) if a == b => return None,
                (Some(a), Some(b)) => format!("{key}: {a} → {b}"),
                (None, Some(b)) => format!("{key}: (default) → {b}"),
                (Some(a), None) => format!("{key}: {a} → (default)"),
                (None, None) => return None,
            };
            Some(Line {
                key: key.clone(),
                text,
            })
        })
        .collect()
}

/// Dotted keys → displayed values. Tables are walked; arrays and scalars are leaves. With
/// `skip_certificates`, `[[tls.certificates]]` is left to the certificate comparison.
fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut BTreeMap<String, String>,
    skip_certificates: bool,
) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                if skip_certificates && key == "certificates" {
                    continue;
                }
                let key = render_key(key);
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out, false);
            }
        }
        other => {
            out.insert(prefix.to_string(), display(other));
        }
    }
}

fn display(value: &toml::Value) -> String {
    value.to_string()
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn render_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(text: &str) -> Side {
        Side::from_text("t.toml", text).unwrap()
    }

    #[test]
    fn keys_sorted_sections_in_order_restart_marked() {
        let old = side("[listen]\nhttps = \"0.0.0.0:8443\"\n[client]\nmax_body = \"1MiB\"\n");
        let new = side(
            "[listen]\nhttps = \"0.0.0.0:9443\"\nshutdown_grace = \"5s\"\n[client]\nmax_body = \"2MiB\"\nheader_timeout = \"5s\"\n",
        );
        assert_eq!(
            describe(&old, &new),
            "listen.https: \"0.0.0.0:8443\" → \"0.0.0.0:9443\" (needs restart)\n\
             listen.shutdown_grace: (default) → \"5s\"\n\
             client.header_timeout: (default) → \"5s\"\n\
             client.max_body: \"1MiB\" → \"2MiB\"\n"
        );
        assert_eq!(describe(&old, &old), "no changes\n");
    }

    #[test]
    fn acme_changes_need_a_restart_and_log_changes_do_not() {
        let old = side("[acme]\nemail = \"a@example.com\"\n[log]\nlevel = \"info\"\n");
        let new = side("[acme]\nemail = \"b@example.com\"\n[log]\nlevel = \"debug\"\n");
        assert_eq!(
            describe(&old, &new),
            "acme.email: \"a@example.com\" → \"b@example.com\" (needs restart)\n\
             log.level: \"info\" → \"debug\"\n"
        );
    }
}
