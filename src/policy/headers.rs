//! Security headers (`[headers]` and a route's `headers`): added to every response of the
//! https listener, replacing the upstream's copy, so there is never two of a security header.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::csp::{self, Nonce, NonceTemplate};

/// The headers a route sets and strips, compiled once per snapshot.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    set: Vec<(HeaderName, HeaderValue)>,
    /// Values holding `{nonce}`: filled with the response's nonce.
    templated: Vec<(HeaderName, NonceTemplate)>,
    remove: Vec<HeaderName>,
}

impl HeaderPolicy {
    /// Applies to a response that is about to leave: strip, then set (insert replaces every copy).
    /// A `{nonce}` value gets a fresh nonce (see [`apply_with_nonce`](Self::apply_with_nonce)
    /// to give the one the upstream was told).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let nonce = self.needs_nonce().then(Nonce::generate);
        self.apply_with_nonce(headers, nonce.as_ref());
    }

    /// [`apply`](Self::apply) with the request's nonce (`None`: a fresh one if needed).
    pub fn apply_with_nonce(&self, headers: &mut HeaderMap, nonce: Option<&Nonce>) {
        for name in &self.remove {
            headers.remove(name);
        }
        headers.reserve(self.set.len() + self.templated.len());
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        if self.templated.is_empty() {
            return;
        }
        let fresh;
        let nonce = match nonce {
            Some(nonce) => nonce,
            None => {
                fresh = Nonce::generate();
                &fresh
            }
        };
        for (name, template) in &self.templated {
            // No nonce (the OS's random source failed): a policy that runs no script at all,
            // rather than none (which would run every script) or a guessable nonce.
            let mut value = template
                .render(nonce)
                .unwrap_or_else(|| HeaderValue::from_static(csp::NO_SCRIPT_POLICY));
            // A new value on every response: never indexed by HPACK (see
            // `request_id::for_response`), and a nonce is better kept out of shared tables.
            value.set_sensitive(true);
            headers.insert(name.clone(), value);
        }
    }

    /// True when a value holds `{nonce}`: the request then gets a nonce to pass upstream.
    pub fn needs_nonce(&self) -> bool {
        !self.templated.is_empty()
    }

    pub fn sets(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.set.iter().map(|(n, v)| (n, v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Strict,
    Basic,
    Off,
}

impl Preset {
    pub fn parse(name: &str) -> Option<Preset> {
        match name {
            "strict" => Some(Preset::Strict),
            "basic" => Some(Preset::Basic),
            "off" => Some(Preset::Off),
            _ => None,
        }
    }
}

/// The config keys naming a security header, with the header they set.
pub const SECURITY_HEADER_KEYS: &[(&str, &str)] = &[
    ("strict_transport_security", "strict-transport-security"),
    ("content_security_policy", "content-security-policy"),
    (
        "content_security_policy_report_only",
        "content-security-policy-report-only",
    ),
    ("x_frame_options", "x-frame-options"),
    ("x_content_type_options", "x-content-type-options"),
    ("referrer_policy", "referrer-policy"),
    ("permissions_policy", "permissions-policy"),
    ("cross_origin_opener_policy", "cross-origin-opener-policy"),
];

const HSTS: &str = "max-age=31536000; includeSubDomains";
const STRICT_CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

fn preset_values(preset: Preset) -> &'static [(&'static str, &'static str)] {
    match preset {
        Preset::Strict => &[
            ("strict-transport-security", HSTS),
            ("content-security-policy", STRICT_CSP),
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
            (
                "permissions-policy",
                "camera=(), microphone=(), geolocation=()",
            ),
            ("cross-origin-opener-policy", "same-origin"),
        ],
        Preset::Basic => &[
            ("strict-transport-security", HSTS),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "SAMEORIGIN"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
        ],
        Preset::Off => &[],
    }
}

fn preset_removes(preset: Preset) -> &'static [&'static str] {
    match preset {
        Preset::Strict | Preset::Basic => &["server", "x-powered-by"],
        Preset::Off => &[],
    }
}

/// Builds a [`HeaderPolicy`] layer by layer: preset, then `[headers]`, then a route's table.
/// A header given the value `""` is not added, and the upstream's own value passes through.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicyBuilder {
    /// In the order first set; `None`: explicitly left to the upstream.
    set: Vec<(HeaderName, Option<HeaderValue>)>,
    remove: Vec<HeaderName>,
    /// `[headers] csp_reports`: the CSP headers report to the proxy's own endpoint.
    csp_reports: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("`{0}` is not a valid header name")]
    Name(String),
    #[error("not a valid header value (control characters or non-ASCII)")]
    Value,
}

impl HeaderPolicyBuilder {
    pub fn from_preset(preset: Preset) -> Self {
        let mut builder = HeaderPolicyBuilder::default();
        for (name, value) in preset_values(preset) {
            builder.set.push((
                HeaderName::from_static(name),
                Some(HeaderValue::from_static(value)),
            ));
        }
        builder.remove = preset_removes(preset)
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        builder
    }

    /// Sets `name` to `value` over whatever an earlier layer said; `""` leaves it to the upstream.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name(name.into()))?;
        let value = if value.is_empty() {
            None
        } else {
            Some(HeaderValue::from_str(value).map_err(|_| HeaderError::Value)?)
        };
        self.remove.retain(|n| *n != name);
        match self.set.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.set.push((name, value)),
        }
        Ok(())
    }

    /// Replaces the list of headers stripped from upstream responses.
    pub fn remove(&mut self, names: &[String]) -> Result<(), HeaderError> {
        let mut parsed = Vec::with_capacity(names.len());
        for name in names {
            parsed.push(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| HeaderError::Name(name.clone()))?,
            );
        }
        self.remove = parsed;
        Ok(())
    }

    /// `csp_reports = true`: every CSP header built gets `report-uri` and `report-to` for the
    /// proxy's endpoint, and the responses that carry one get `Reporting-Endpoints`.
    pub fn csp_reports(&mut self, on: bool) {
        self.csp_reports = on;
    }

    pub fn build(&self) -> HeaderPolicy {
        let mut set = Vec::new();
        let mut templated = Vec::new();
        let mut has_csp = false;
        for (name, value) in &self.set {
            let Some(value) = value else { continue };
            let is_csp = *name == http::header::CONTENT_SECURITY_POLICY
                || *name == http::header::CONTENT_SECURITY_POLICY_REPORT_ONLY;
            has_csp |= is_csp;
            let value = if is_csp && self.csp_reports {
                csp::with_report_directives(value)
            } else {
                value.clone()
            };
            match NonceTemplate::parse(&value) {
                Some(template) => templated.push((name.clone(), template)),
                None => set.push((name.clone(), value)),
            }
        }
        if has_csp && self.csp_reports {
            set.push((
                csp::REPORTING_ENDPOINTS.clone(),
                HeaderValue::from_static(csp::REPORTING_ENDPOINTS_VALUE),
            ));
        }
        HeaderPolicy {
            set,
            templated,
            remove: self
                .remove
                .iter()
                .filter(|n| !self.set.iter().any(|(set, _)| set == *n))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_replaces_upstream_copies_and_strips_server() {
        let policy = HeaderPolicyBuilder::from_preset(Preset::Strict).build();
        let mut headers = HeaderMap::new();
        headers.append("x-frame-options", HeaderValue::from_static("ALLOWALL"));
        headers.append("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        headers.insert("server", HeaderValue::from_static("gunicorn"));
        headers.insert("x-powered-by", HeaderValue::from_static("PHP"));
        policy.apply(&mut headers);
        assert_eq!(headers.get_all("x-frame-options").iter().count(), 1);
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(headers.get("server").is_none());
        assert!(headers.get("x-powered-by").is_none());
        assert_eq!(headers["content-security-policy"], STRICT_CSP);
    }

    #[test]
    fn layers_override_and_empty_passes_upstream_through() {
        let mut builder = HeaderPolicyBuilder::from_preset(Preset::Basic);
        assert!(builder
            .build()
            .sets()
            .all(|(n, _)| n != "content-security-policy"));
        builder
            .set("content-security-policy", "default-src 'none'")
            .unwrap();
        builder.set("x-frame-options", "").unwrap();
        let policy = builder.build();
        let mut headers = HeaderMap::new();
        headers.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        policy.apply(&mut headers);
        assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
        assert_eq!(headers["content-security-policy"], "default-src 'none'");
        assert!(builder.set("bad name", "x").is_err());
        assert!(builder.set("x-ok", "bad\r\nvalue").is_err());
    }

    #[test]
    fn nonce_templates_fill_and_fail_closed() {
        let mut builder = HeaderPolicyBuilder::from_preset(Preset::Strict);
        builder
            .set("content-security-policy", "script-src 'nonce-{nonce}'")
            .unwrap();
        builder.csp_reports(true);
        let policy = builder.build();
        assert!(policy.needs_nonce());
        let nonce = Nonce::generate();
        let mut headers = HeaderMap::new();
        policy.apply_with_nonce(&mut headers, Some(&nonce));
        let n = std::str::from_utf8(nonce.as_bytes()).unwrap();
        assert_eq!(
            headers["content-security-policy"],
            format!("script-src 'nonce-{n}'; report-uri /.well-known/rampart/csp-report; report-to rampart-csp").as_str()
        );
        // New on every response: kept out of HPACK's table (request_id::for_response).
        assert!(headers["content-security-policy"].is_sensitive());
        assert!(!headers["x-frame-options"].is_sensitive());
        assert_eq!(
            headers["reporting-endpoints"],
            "rampart-csp=\"/.well-known/rampart/csp-report\""
        );
        // No random bytes: no script may run, rather than a guessable nonce.
        let mut headers = HeaderMap::new();
        policy.apply_with_nonce(&mut headers, Some(&Nonce::unavailable()));
        assert_eq!(headers["content-security-policy"], csp::NO_SCRIPT_POLICY);
    }

    #[test]
    fn off_sets_nothing() {
        let policy = HeaderPolicyBuilder::from_preset(Preset::Off).build();
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("x"));
        policy.apply(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
