//! CORS per route (a route's `cors`). On a route with a `cors` table the proxy owns CORS:
//!
//! - a **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   by the proxy and never forwarded: 204 with the CORS headers when the origin and the method
//!   are allowed, otherwise a plain 403 through the proxy's error path, with no CORS headers;
//! - the response to an **actual request** from an allowed origin gets
//!   `Access-Control-Allow-Origin` = that origin (the request's value echoed, replacing the
//!   upstream's) and `Access-Control-Allow-Credentials: true` when configured; from any other
//!   origin, or without `Origin`, every `Access-Control-*` header is stripped from it;
//! - every such response varies on `Origin` (`Vary: Origin` is appended unless present), so a
//!   cache never hands one origin's answer to another.
//!
//! `"*"` is allowed only without credentials (browsers refuse `*` with credentials, and echoing
//! every origin with credentials would let any site read the user's data); with it the answer
//! is `Access-Control-Allow-Origin: *`.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::body::ResponseBody;
use crate::errors::ProxyError;

/// `allow_methods` when not written.
pub const DEFAULT_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// `allow_headers` when not written: what Django / typical SPAs send, nothing echoed blindly.
pub const DEFAULT_HEADERS: &[&str] = &[
    "Content-Type",
    "Authorization",
    "X-Requested-With",
    "X-CSRFToken",
];
/// `max_age` when not written.
pub const DEFAULT_MAX_AGE_SECS: u64 = 600;

/// The `Vary` of a preflight answer: it depends on all three request headers.
const VARY_PREFLIGHT: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// A route's `cors`, compiled.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Origins,
    credentials: bool,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    /// `None`: an empty `allow_headers` list, so no header is sent.
    allow_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    /// `["*"]`, without credentials.
    Any,
    /// Serialized origins (`https://app.example.com`, lowercase, no default port), compared
    /// byte for byte with the request's `Origin`, which browsers send in that form.
    Exact(Vec<String>),
}

/// One error in a route's `cors` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfigError {
    /// The key inside `cors`: `allow_origins`, `allow_methods` or `allow_headers`.
    pub key: &'static str,
    /// For `allow_origins`: which origin (0-based), when the error is about one.
    pub index: Option<usize>,
    pub message: String,
}

impl CorsConfigError {
    fn new(key: &'static str, index: Option<usize>, message: impl Into<String>) -> Self {
        CorsConfigError {
            key,
            index,
            message: message.into(),
        }
    }
}

/// A route's `cors` as written, in plain values (config/validate.rs reads the file).
#[derive(Debug, Clone, Default)]
pub struct CorsRules {
    pub allow_origins: Vec<String>,
    /// `None`: [`DEFAULT_METHODS`].
    pub allow_methods: Option<Vec<String>>,
    /// `None`: [`DEFAULT_HEADERS`].
    pub allow_headers: Option<Vec<String>>,
    pub allow_credentials: bool,
    /// `None`: [`DEFAULT_MAX_AGE_SECS`].
    pub max_age: Option<std::time::Duration>,
}

impl CorsPolicy {
    /// Compiles a route's `cors`, or lists every error in it.
    pub fn new(cors: &CorsRules) -> Result<CorsPolicy, Vec<CorsConfigError>> {
        let mut errors = Vec::new();
        let credentials = cors.allow_credentials;

        let star = cors.allow_origins.iter().position(|o| o == "*");
        let origins = if let Some(index) = star {
            if credentials {
                errors.push(CorsConfigError::new(
                    "allow_origins",
                    Some(index),
                    "\"*\" cannot be used with allow_credentials = true (browsers refuse it, and it would let every site read your users' data); list the exact origins",
                ));
            }
            if cors.allow_origins.len() > 1 {
                errors.push(CorsConfigError::new(
                    "allow_origins",
                    Some(index),
                    "\"*\" already allows every origin: write it alone, or list exact origins",
                ));
            }
            Origins::Any
        } else {
            let mut list = Vec::new();
            for (index, origin) in cors.allow_origins.iter().enumerate() {
                match parse_origin(origin) {
                    Ok(origin) => {
                        if !list.contains(&origin) {
                            list.push(origin);
                        }
                    }
                    Err(message) => {
                        errors.push(CorsConfigError::new("allow_origins", Some(index), message))
                    }
                }
            }
            if cors.allow_origins.is_empty() {
                errors.push(CorsConfigError::new(
                    "allow_origins",
                    None,
                    "list at least one origin, like [\"https://app.example.com\"]",
                ));
            }
            Origins::Exact(list)
        };

        let method_names: Vec<&str> = match &cors.allow_methods {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_METHODS.to_vec(),
        };
        let mut methods = Vec::new();
        for name in &method_names {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase()) {
                errors.push(CorsConfigError::new(
                    "allow_methods",
                    None,
                    format!("`{name}` is not a method (write it uppercase, like \"PUT\")"),
                ));
            } else if let Ok(method) = Method::from_bytes(name.as_bytes()) {
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
        }
        if method_names.is_empty() {
            errors.push(CorsConfigError::new(
                "allow_methods",
                None,
                "list at least one method (or remove the key for the default list)",
            ));
        }

        let header_names: Vec<&str> = match &cors.allow_headers {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_HEADERS.to_vec(),
        };
        for name in &header_names {
            if *name == "*" {
                if credentials {
                    errors.push(CorsConfigError::new(
                        "allow_headers",
                        None,
                        "with allow_credentials = true browsers read \"*\" as a header named `*`, not as a wildcard; list the headers",
                    ));
                }
            } else if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(CorsConfigError::new(
                    "allow_headers",
                    None,
                    format!("`{name}` is not a header name"),
                ));
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let max_age = cors.max_age.map_or(DEFAULT_MAX_AGE_SECS, |d| d.as_secs());
        let join = |names: &[&str]| HeaderValue::from_str(&names.join(", ")).ok();
        let method_list: Vec<&str> = methods.iter().map(Method::as_str).collect();
        Ok(CorsPolicy {
            origins,
            credentials,
            allow_methods: join(&method_list).unwrap_or(HeaderValue::from_static("GET")),
            methods,
            allow_headers: if header_names.is_empty() {
                None
            } else {
                join(&header_names)
            },
            max_age: HeaderValue::from(max_age),
        })
    }

    /// The `Access-Control-Allow-Origin` to send for a request's `Origin`, or `None` when that
    /// origin is not allowed. An allowed origin is echoed exactly; `"*"` answers `*`.
    pub fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::Exact(list) => list
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes())
                .then(|| origin.clone()),
        }
    }

    /// Whether a preflight's `Access-Control-Request-Method` is allowed (case-sensitive, as
    /// methods are: browsers send `patch` as written).
    fn allows_method(&self, requested: &HeaderValue) -> bool {
        self.methods
            .iter()
            .any(|method| method.as_str().as_bytes() == requested.as_bytes())
    }

    /// The proxy's answer to a preflight (see [`is_preflight`]): 204 with the CORS headers, or
    /// [`ProxyError::CorsRefused`] (403, no CORS headers) when the origin or method is not
    /// allowed.
    pub fn preflight(&self, request: &HeaderMap) -> Result<Response<ResponseBody>, ProxyError> {
        let allow_origin = request_origin(request).and_then(|origin| self.allow_origin(origin));
        let method_ok = request
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|method| self.allows_method(method));
        let (Some(allow_origin), true) = (allow_origin, method_ok) else {
            return Err(ProxyError::CorsRefused);
        };
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        if let Some(allow_headers) = &self.allow_headers {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allow_headers.clone());
        }
        headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        headers.insert(VARY, HeaderValue::from_static(VARY_PREFLIGHT));
        Ok(response)
    }

    /// CORS on the response to an actual request whose `Origin` was `origin` (see
    /// [`request_origin`]). The upstream's own CORS headers are replaced or stripped.
    pub fn apply(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        match origin.and_then(|origin| self.allow_origin(origin)) {
            Some(allow_origin) => {
                response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
                if self.credentials {
                    response.insert(
                        ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                } else {
                    response.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
                }
            }
            None => strip_cors_headers(response),
        }
        vary_on_origin(response);
    }
}

/// The request's `Origin`, when it sent exactly one (two are nobody's origin).
pub fn request_origin(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(ORIGIN).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight announces, when the request is one: the router finds the route that
/// will serve the actual request with it (a route limited to `POST` answers its preflights).
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if !is_preflight(method, headers) {
        return None;
    }
    Method::from_bytes(headers.get(ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()
}

/// Removes every `Access-Control-*` response header. Allocates only when there are some.
fn strip_cors_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Appends `Vary: Origin` unless the response already varies on it (or on everything).
fn vary_on_origin(headers: &mut HeaderMap) {
    let varies = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|token| {
                let token = token.trim();
                token == "*" || token.eq_ignore_ascii_case("origin")
            })
        })
    });
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// A configured origin, checked and serialized the way browsers send `Origin`: lowercase
/// `scheme://host[:port]`, without the scheme's default port.
pub fn parse_origin(text: &str) -> Result<String, String> {
    const FORM: &str = "an origin is scheme://host[:port], like \"https://app.example.com\"";
    if text == "null" {
        return Err("\"null\" is not allowed: sandboxed iframes and file: pages send it, so any site can produce it".into());
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("`{text}` is not an origin: {FORM}"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !scheme.starts_with(|c: char| c.is_ascii_lowercase())
        || !scheme.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        })
    {
        return Err(format!("`{text}` is not an origin: {FORM}"));
    }
    if let Some(at) = rest.find(['/', '?', '#']) {
        let origin = &text[..text.len() - rest.len() + at];
        return Err(format!(
            "an origin has no path, query or fragment (not even \"/\"): write \"{origin}\""
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "`{text}` is not an origin: no user name or password"
        ));
    }
    if rest.contains('*') {
        return Err(
            "wildcards in an origin are not supported: list each origin (or \"*\" alone, without credentials)"
                .into(),
        );
    }
    if !rest.is_ascii() {
        return Err(
            "write an internationalized host name in punycode (xn--…), as browsers send it".into(),
        );
    }
    let (host, port) = if let Some(inside) = rest.strip_prefix('[') {
        let Some((address, after)) = inside.split_once(']') else {
            return Err(format!("`{text}` is not an origin: {FORM}"));
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{address}` is not an IPv6 address"));
        }
        (&rest[..address.len() + 2], after)
    } else {
        match rest.find(':') {
            Some(colon) => (&rest[..colon], &rest[colon..]),
            None => (rest, ""),
        }
    };
    let host = host.to_ascii_lowercase();
    if !host.starts_with('[')
        && (host.is_empty()
            || host.len() > 253
            || !host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
    {
        return Err(format!(
            "`{text}` is not an origin: `{host}` is not a host name"
        ));
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(format!("`{digits}` is not a port")),
            }
        }
        _ => return Err(format!("`{text}` is not an origin: {FORM}")),
    };
    let default_port = match scheme.as_str() {
        "https" | "wss" => Some(443),
        "http" | "ws" => Some(80),
        _ => None,
    };
    Ok(match port {
        Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn cors(origins: &[&str], credentials: bool) -> CorsRules {
        CorsRules {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: credentials,
            ..CorsRules::default()
        }
    }

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&cors(origins, credentials)).unwrap()
    }

    fn errors(cors: &CorsRules) -> Vec<(&'static str, Option<usize>, String)> {
        CorsPolicy::new(cors)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.key, e.index, e.message))
            .collect()
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn preflight_request(origin: &str, method: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, hv(origin));
        headers.insert(ACCESS_CONTROL_REQUEST_METHOD, hv(method));
        headers
    }

    fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn origins_are_validated_and_serialized_like_browsers_send_them() {
        for (written, serialized) in [
            ("https://app.example.com", "https://app.example.com"),
            ("https://App.Example.COM", "https://app.example.com"),
            ("HTTPS://app.example.com", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("https://[::1]", "https://[::1]"),
            ("capacitor://localhost", "capacitor://localhost"),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(
                parse_origin(written).as_deref(),
                Ok(serialized),
                "{written}"
            );
        }
    }

    #[test]
    fn non_origins_are_refused_with_a_reason() {
        let refused = |s: &str| parse_origin(s).unwrap_err();
        assert!(refused("https://app.example.com/").contains("write \"https://app.example.com\""));
        assert!(refused("https://app.example.com/path").contains("no path"));
        assert!(refused("https://app.example.com?x=1").contains("no path, query"));
        assert!(refused("https://app.example.com#f").contains("fragment"));
        assert!(refused("null").contains("\"null\" is not allowed"));
        assert!(refused("app.example.com").contains("scheme://host"));
        assert!(refused("https://*.example.com").contains("wildcards"));
        assert!(refused("https://user:pw@app.example.com").contains("user name"));
        assert!(refused("https://bücher.example").contains("punycode"));
        assert!(refused("https://").contains("not a host name"));
        assert!(refused("https://a..b").contains("not a host name"));
        assert!(refused("https://a b").contains("not a host name"));
        assert!(refused("https://app.example.com:0").contains("not a port"));
        assert!(refused("https://app.example.com:99999").contains("not a port"));
        assert!(refused("https://app.example.com:").contains("scheme://host"));
        assert!(refused("https://[zz]").contains("IPv6"));
        assert!(refused("1https://a").contains("scheme://host"));
        assert!(refused("://a").contains("scheme://host"));
        assert!(refused(" https://a").contains("scheme://host"));
    }

    #[test]
    fn star_only_without_credentials_and_alone() {
        let with_credentials = errors(&cors(&["*"], true));
        assert_eq!(with_credentials.len(), 1);
        assert_eq!(with_credentials[0].0, "allow_origins");
        assert_eq!(with_credentials[0].1, Some(0));
        assert!(with_credentials[0].2.contains("allow_credentials"));

        let mixed = errors(&cors(&["https://a.example", "*"], false));
        assert_eq!(mixed.len(), 1);
        assert_eq!(mixed[0].1, Some(1));
        assert!(mixed[0].2.contains("alone"));

        assert_eq!(policy(&["*"], false).origins, Origins::Any);
    }

    #[test]
    fn every_error_is_listed() {
        let mut bad = cors(&["https://ok.example", "https://a.example/", "nope"], false);
        bad.allow_methods = Some(vec!["get".into(), "PUT".into()]);
        bad.allow_headers = Some(vec!["X Bad".into(), "X-Good".into()]);
        let found: Vec<_> = errors(&bad).into_iter().map(|(k, i, _)| (k, i)).collect();
        assert_eq!(
            found,
            [
                ("allow_origins", Some(1)),
                ("allow_origins", Some(2)),
                ("allow_methods", None),
                ("allow_headers", None)
            ]
        );

        assert_eq!(errors(&cors(&[], false))[0].0, "allow_origins");
        let mut no_methods = cors(&["https://a.example"], false);
        no_methods.allow_methods = Some(vec![]);
        assert_eq!(errors(&no_methods)[0].0, "allow_methods");
        let mut star_headers = cors(&["https://a.example"], true);
        star_headers.allow_headers = Some(vec!["*".into()]);
        assert_eq!(errors(&star_headers)[0].0, "allow_headers");
        star_headers.allow_credentials = false;
        assert!(CorsPolicy::new(&star_headers).is_ok());
    }

    #[test]
    fn allowed_origins_are_echoed_exactly_others_get_nothing() {
        let p = policy(&["https://App.example.com", "http://localhost:3000"], true);
        assert_eq!(
            p.allow_origin(&hv("https://app.example.com")),
            Some(hv("https://app.example.com"))
        );
        assert_eq!(
            p.allow_origin(&hv("http://localhost:3000")),
            Some(hv("http://localhost:3000"))
        );
        for other in [
            "https://evil.example.com",
            "https://app.example.com.evil.com",
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://APP.example.com",
            "https://app.example.com/",
            "null",
            "",
        ] {
            assert_eq!(p.allow_origin(&hv(other)), None, "{other}");
        }
        assert_eq!(
            policy(&["*"], false).allow_origin(&hv("https://any.example")),
            Some(hv("*"))
        );
    }

    #[test]
    fn preflight_allowed_has_exactly_the_cors_headers() {
        let p = policy(&["https://app.example.com"], true);
        let response = p
            .preflight(&preflight_request("https://app.example.com", "PUT"))
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h.len(), 6);
        assert_eq!(
            all(h, "access-control-allow-origin"),
            ["https://app.example.com"]
        );
        assert_eq!(all(h, "access-control-allow-credentials"), ["true"]);
        assert_eq!(
            all(h, "access-control-allow-methods"),
            ["GET, HEAD, POST, PUT, PATCH, DELETE"]
        );
        assert_eq!(
            all(h, "access-control-allow-headers"),
            ["Content-Type, Authorization, X-Requested-With, X-CSRFToken"]
        );
        assert_eq!(all(h, "access-control-max-age"), ["600"]);
        assert_eq!(
            all(h, "vary"),
            ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
        );
    }

    #[test]
    fn preflight_with_configured_lists() {
        let mut config = cors(&["*"], false);
        config.allow_methods = Some(vec!["GET".into(), "POST".into()]);
        config.allow_headers = Some(vec![]);
        config.max_age = Some(std::time::Duration::from_secs(7200));
        let p = CorsPolicy::new(&config).unwrap();
        let response = p
            .preflight(&preflight_request("https://x.example", "POST"))
            .unwrap();
        let h = response.headers();
        assert_eq!(all(h, "access-control-allow-origin"), ["*"]);
        assert!(h.get("access-control-allow-credentials").is_none());
        assert_eq!(all(h, "access-control-allow-methods"), ["GET, POST"]);
        assert!(h.get("access-control-allow-headers").is_none());
        assert_eq!(all(h, "access-control-max-age"), ["7200"]);
        assert!(matches!(
            p.preflight(&preflight_request("https://x.example", "PUT")),
            Err(ProxyError::CorsRefused)
        ));
    }

    #[test]
    fn preflight_refused_for_other_origins_and_methods() {
        let p = policy(&["https://app.example.com"], true);
        for (origin, method) in [
            ("https://evil.example.com", "PUT"),
            ("https://app.example.com", "TRACE"),
            ("https://app.example.com", "put"),
            ("https://app.example.com", "PUT "),
        ] {
            let refused = p.preflight(&preflight_request(origin, method));
            assert!(
                matches!(refused, Err(ProxyError::CorsRefused)),
                "{origin} {method}"
            );
        }
        // two Origin headers are nobody's origin
        let mut two = preflight_request("https://app.example.com", "GET");
        two.append(ORIGIN, hv("https://app.example.com"));
        assert!(p.preflight(&two).is_err());
        assert_eq!(ProxyError::CorsRefused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn preflight_detection() {
        let headers = preflight_request("https://a.example", "PATCH");
        assert!(is_preflight(&Method::OPTIONS, &headers));
        assert_eq!(
            preflight_method(&Method::OPTIONS, &headers),
            Some(Method::PATCH)
        );
        assert!(!is_preflight(&Method::GET, &headers));
        assert_eq!(preflight_method(&Method::GET, &headers), None);
        let mut no_acrm = headers.clone();
        no_acrm.remove(ACCESS_CONTROL_REQUEST_METHOD);
        assert!(!is_preflight(&Method::OPTIONS, &no_acrm));
        let mut no_origin = headers.clone();
        no_origin.remove(ORIGIN);
        assert!(!is_preflight(&Method::OPTIONS, &no_origin));
        let bad_method = preflight_request("https://a.example", "B@D");
        assert!(is_preflight(&Method::OPTIONS, &bad_method));
        assert_eq!(preflight_method(&Method::OPTIONS, &bad_method), None);
    }

    fn upstream_response() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("access-control-allow-origin", hv("*"));
        h.insert("access-control-allow-credentials", hv("true"));
        h.insert("access-control-expose-headers", hv("X-Total"));
        h.insert("content-type", hv("application/json"));
        h
    }

    #[test]
    fn actual_request_from_an_allowed_origin() {
        let p = policy(&["https://app.example.com"], true);
        let mut h = upstream_response();
        p.apply(Some(&hv("https://app.example.com")), &mut h);
        assert_eq!(
            all(&h, "access-control-allow-origin"),
            ["https://app.example.com"]
        );
        assert_eq!(all(&h, "access-control-allow-credentials"), ["true"]);
        assert_eq!(all(&h, "access-control-expose-headers"), ["X-Total"]);
        assert_eq!(all(&h, "vary"), ["Origin"]);

        // without credentials configured, the upstream's claim is removed
        let p = policy(&["https://app.example.com"], false);
        let mut h = upstream_response();
        p.apply(Some(&hv("https://app.example.com")), &mut h);
        assert_eq!(
            all(&h, "access-control-allow-origin"),
            ["https://app.example.com"]
        );
        assert!(h.get("access-control-allow-credentials").is_none());

        let p = policy(&["*"], false);
        let mut h = HeaderMap::new();
        p.apply(Some(&hv("https://whoever.example")), &mut h);
        assert_eq!(all(&h, "access-control-allow-origin"), ["*"]);
        assert_eq!(all(&h, "vary"), ["Origin"]);
    }

    #[test]
    fn actual_request_from_another_or_no_origin_gets_no_cors_headers() {
        let p = policy(&["https://app.example.com"], true);
        for origin in [Some(hv("https://evil.example.com")), None] {
            let mut h = upstream_response();
            p.apply(origin.as_ref(), &mut h);
            assert!(
                h.keys().all(|n| !n.as_str().starts_with("access-control-")),
                "{origin:?}: {h:?}"
            );
            assert_eq!(all(&h, "vary"), ["Origin"]);
            assert_eq!(all(&h, "content-type"), ["application/json"]);
        }
        // "*" answers only requests that have an Origin
        let mut h = HeaderMap::new();
        policy(&["*"], false).apply(None, &mut h);
        assert!(h.get("access-control-allow-origin").is_none());
    }

    #[test]
    fn vary_origin_is_not_duplicated() {
        let p = policy(&["https://app.example.com"], false);
        let origin = hv("https://app.example.com");
        for (existing, expected) in [
            (vec!["Accept-Encoding"], vec!["Accept-Encoding", "Origin"]),
            (vec!["origin"], vec!["origin"]),
            (
                vec!["Accept-Encoding, Origin"],
                vec!["Accept-Encoding, Origin"],
            ),
            (vec!["Cookie", " ORIGIN "], vec!["Cookie", " ORIGIN "]),
            (vec!["*"], vec!["*"]),
            (vec!["Origin-Agent"], vec!["Origin-Agent", "Origin"]),
        ] {
            let mut h = HeaderMap::new();
            for value in &existing {
                h.append(VARY, hv(value));
            }
            p.apply(Some(&origin), &mut h);
            assert_eq!(all(&h, "vary"), expected, "{existing:?}");
        }
    }
}
