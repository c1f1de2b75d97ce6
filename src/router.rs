//! Host + path + method → route.
//!
//! Most specific wins: exact host > wildcard host > any host, then the longest path prefix,
//! then file order. The table is sorted once when the snapshot is built, so a lookup is the
//! first entry that matches.

use std::sync::Arc;

use http::{HeaderValue, Method};

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com` (stored lowercase, without port)
    Exact(String),
    /// `*.example.org`, stored as `.example.org`: any depth of subdomain, not the apex.
    Wildcard(String),
    Any,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<Self, &'static str> {
        let pattern = pattern.trim().to_ascii_lowercase();
        if pattern.is_empty() || pattern == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(suffix) = pattern.strip_prefix("*.") {
            if suffix.is_empty() || !is_hostname(suffix) {
                return Err("a wildcard host is written \"*.example.org\"");
            }
            return Ok(HostPattern::Wildcard(format!(".{suffix}")));
        }
        if pattern.contains('*') {
            return Err("`*` is only allowed as the first label (\"*.example.org\")");
        }
        if !is_hostname(&pattern) {
            return Err("not a host name");
        }
        Ok(HostPattern::Exact(pattern))
    }

    /// `host` is lowercase and without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            HostPattern::Any => true,
        }
    }

    /// Sort key: lower is more specific; among wildcards the longer suffix first.
    fn specificity(&self) -> (u8, usize) {
        match self {
            HostPattern::Exact(_) => (0, 0),
            HostPattern::Wildcard(suffix) => (1, usize::MAX - suffix.len()),
            HostPattern::Any => (2, 0),
        }
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// One routing entry: where it applies, and the route it leads to.
#[derive(Debug)]
pub struct Entry<T> {
    pub host: HostPattern,
    pub prefix: String,
    /// `None`: every method. A list with GET also accepts HEAD.
    pub methods: Option<Vec<Method>>,
    pub target: Arc<T>,
}

impl<T> Entry<T> {
    fn accepts(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(list) => {
                list.contains(method) || (*method == Method::HEAD && list.contains(&Method::GET))
            }
        }
    }
}

#[derive(Debug)]
pub enum Lookup<'a, T> {
    Found(&'a Arc<T>),
    /// The path is a route's prefix without its trailing slash (`/admin` for `/admin/`), and
    /// that route would win: redirect to the slashed path rather than serve it elsewhere.
    AddSlash,
    /// Routes match the host and path, but none accepts the method: 405 with this `Allow`.
    MethodNotAllowed(HeaderValue),
    NotFound,
}

#[derive(Debug)]
pub struct Router<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Router<T> {
    /// `entries` in file order.
    pub fn new(entries: Vec<Entry<T>>) -> Self {
        let mut indexed: Vec<(usize, Entry<T>)> = entries.into_iter().enumerate().collect();
        indexed.sort_by_key(|(index, entry)| {
            (
                entry.host.specificity(),
                usize::MAX - entry.prefix.len(),
                *index,
            )
        });
        Router {
            entries: indexed.into_iter().map(|(_, entry)| entry).collect(),
        }
    }

    /// `host`: lowercase, no port. `path`: normalized (see [`crate::path::normalize`]).
    pub fn lookup(&self, host: &str, path: &str, method: &Method) -> Lookup<'_, T> {
        let mut method_mismatch = false;
        let mut add_slash = false;
        for entry in &self.entries {
            if !entry.host.matches(host) {
                continue;
            }
            if path.starts_with(entry.prefix.as_str()) {
                // A route for the slashed path came first: it wins over any shorter prefix,
                // not over a route written for this very path.
                if add_slash && entry.prefix.len() < path.len() {
                    return Lookup::AddSlash;
                }
                if entry.accepts(method) {
                    return Lookup::Found(&entry.target);
                }
                method_mismatch = true;
            } else if entry.prefix.len() == path.len() + 1
                && entry.prefix.ends_with('/')
                && entry.prefix.starts_with(path)
                && entry.accepts(method)
            {
                add_slash = true;
            }
        }
        if add_slash {
            return Lookup::AddSlash;
        }
        if method_mismatch {
            Lookup::MethodNotAllowed(self.allowed_methods(host, path))
        } else {
            Lookup::NotFound
        }
    }

    /// Cold path (405 only): the methods some matching route accepts.
    fn allowed_methods(&self, host: &str, path: &str) -> HeaderValue {
        let mut allowed: Vec<&str> = Vec::new();
        for entry in &self.entries {
            if entry.host.matches(host) && path.starts_with(entry.prefix.as_str()) {
                for method in entry.methods.iter().flatten() {
                    if !allowed.contains(&method.as_str()) {
                        allowed.push(method.as_str());
                    }
                    if *method == Method::GET && !allowed.contains(&"HEAD") {
                        allowed.push("HEAD");
                    }
                }
            }
        }
        HeaderValue::from_str(&allowed.join(", ")).unwrap_or(HeaderValue::from_static(""))
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        host: &str,
        prefix: &str,
        methods: Option<&[Method]>,
        name: &'static str,
    ) -> Entry<&'static str> {
        Entry {
            host: HostPattern::parse(host).unwrap(),
            prefix: prefix.to_string(),
            methods: methods.map(|m| m.to_vec()),
            target: Arc::new(name),
        }
    }

    fn found(
        router: &Router<&'static str>,
        host: &str,
        path: &str,
        method: Method,
    ) -> &'static str {
        match router.lookup(host, path, &method) {
            Lookup::Found(target) => target,
            other => panic!("expected a route for {host}{path}, got {other:?}"),
        }
    }

    #[test]
    fn host_specificity_then_longest_prefix_then_file_order() {
        let router = Router::new(vec![
            entry("", "/", None, "any-root"),
            entry("", "/api/", None, "any-api"),
            entry("", "/api/", None, "any-api-second"),
            entry("*.example.org", "/", None, "wild-root"),
            entry("*.b.example.org", "/", None, "wild-longer"),
            entry("api.example.org", "/", None, "exact-root"),
        ]);
        assert_eq!(found(&router, "other", "/api/x", Method::GET), "any-api");
        assert_eq!(found(&router, "other", "/x", Method::GET), "any-root");
        assert_eq!(
            found(&router, "a.example.org", "/api/x", Method::GET),
            "wild-root"
        );
        assert_eq!(
            found(&router, "a.b.example.org", "/", Method::GET),
            "wild-longer"
        );
        assert_eq!(
            found(&router, "api.example.org", "/api/", Method::GET),
            "exact-root"
        );
        // the apex is not matched by its wildcard
        assert_eq!(found(&router, "example.org", "/", Method::GET), "any-root");
    }

    #[test]
    fn method_filter_falls_through_then_405() {
        let router = Router::new(vec![
            entry("", "/login/", Some(&[Method::POST]), "login"),
            entry("", "/", None, "app"),
        ]);
        assert_eq!(found(&router, "h", "/login/", Method::POST), "login");
        assert_eq!(found(&router, "h", "/login/", Method::GET), "app");

        let only = Router::new(vec![entry(
            "",
            "/login/",
            Some(&[Method::POST, Method::GET]),
            "login",
        )]);
        assert_eq!(found(&only, "h", "/login/", Method::HEAD), "login");
        match only.lookup("h", "/login/", &Method::DELETE) {
            Lookup::MethodNotAllowed(allow) => assert_eq!(allow, "POST, GET, HEAD"),
            other => panic!("expected 405, got {other:?}"),
        }
        assert!(matches!(
            only.lookup("h", "/other", &Method::GET),
            Lookup::NotFound
        ));
    }

    #[test]
    fn a_prefix_without_its_slash_redirects_to_the_route() {
        let router = Router::new(vec![
            entry("", "/admin/", None, "admin"),
            entry("", "/login/", Some(&[Method::POST]), "login"),
            entry("", "/", None, "app"),
        ]);
        assert!(matches!(
            router.lookup("h", "/admin", &Method::GET),
            Lookup::AddSlash
        ));
        assert!(matches!(
            router.lookup("h", "/login", &Method::POST),
            Lookup::AddSlash
        ));
        // the slashed path would not reach that route either
        assert_eq!(found(&router, "h", "/login", Method::GET), "app");
        assert_eq!(found(&router, "h", "/adminx", Method::GET), "app");
        assert_eq!(found(&router, "h", "/admi", Method::GET), "app");
        // a route written without the slash keeps its own path
        let exact = Router::new(vec![
            entry("", "/admin/", None, "admin"),
            entry("", "/admin", None, "admin-bare"),
            entry("", "/", None, "app"),
        ]);
        assert_eq!(found(&exact, "h", "/admin", Method::GET), "admin-bare");
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            HostPattern::parse("API.Example.com"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("bad host").is_err());
    }
}
