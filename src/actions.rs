//! The route actions the proxy answers itself: `redirect` and `respond`.

#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::path::{encode_path, encode_query};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Path,
    Rest,
    Query,
    Host,
}

/// A `redirect.to` template such as `"https://blog.example.com/{rest}"`.
///
/// What the client sends cannot move the redirect off-site: a placeholder may stand in the
/// authority only as the whole `{host}` (which must be a valid host name), substituted paths
/// and queries are percent-encoded, and a relative result never starts with `//`.
#[derive(Debug, Clone)]
pub struct RedirectTemplate {
    parts: Vec<Part>,
    relative: bool,
}

/// What a template is filled with. `path` is the normalized request path.
pub struct RedirectInput<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub rest: &'a str,
    pub query: Option<&'a str>,
}

impl RedirectTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| "unclosed `{` in redirect template".to_string())?;
            let part = match &rest[open + 1..open + close] {
                "path" => Part::Path,
                "rest" => Part::Rest,
                "query" => Part::Query,
                "host" => Part::Host,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` (use {{path}}, {{rest}}, {{query}} or {{host}})"
                    ))
                }
            };
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if parts.iter().any(
            |p| matches!(p, Part::Literal(l) if l.contains('}') || l.chars().any(char::is_control)),
        ) {
            return Err("stray `}` or control character in redirect template".into());
        }

        let relative = match parts.first() {
            // Browsers read `/\host` as `//host`, another site (found by fuzzing).
            Some(Part::Literal(first)) if first.starts_with("/\\") => {
                return Err("a path redirect target cannot start with \"/\\\"".into())
            }
            Some(Part::Literal(first)) if first.starts_with('/') && !first.starts_with("//") => {
                true
            }
            Some(Part::Literal(first)) => {
                let Some((scheme, after)) = first.split_once("://") else {
                    return Err("a redirect target is \"https://host/…\" or a path \"/…\"".into());
                };
                if scheme != "https" && scheme != "http" {
                    return Err("a redirect target's scheme is https or http".into());
                }
                // The authority must be fixed text, or exactly `{host}` followed by a path.
                if after.contains(['/', '?', '#']) {
                    // authority complete within the literal
                } else if after.is_empty() {
                    let host_then_sep = matches!(parts.get(1), Some(Part::Host))
                        && match parts.get(2) {
                            None | Some(Part::Path) => true,
                            Some(Part::Literal(next)) => match next.strip_prefix(':') {
                                // `{host}:8443` must end the authority: in `{host}:8443{rest}`
                                // a rest of `@evil.example` would make the host userinfo.
                                Some(port) => {
                                    let end = port.find(['/', '?', '#']);
                                    let digits = &port[..end.unwrap_or(port.len())];
                                    !digits.is_empty()
                                        && digits.bytes().all(|b| b.is_ascii_digit())
                                        && (end.is_some()
                                            || matches!(parts.get(3), None | Some(Part::Path)))
                                }
                                None => next.starts_with(['/', '?', '#']),
                            },
                            _ => false,
                        };
                    if !host_then_sep {
                        return Err("only {host} may stand in a redirect's host, and it must be followed by '/' or ':port/'".into());
                    }
                } else if !matches!(
                    parts.get(1),
                    None | Some(Part::Literal(_)) | Some(Part::Path)
                ) {
                    // `{path}` always starts with '/', so it cannot extend the host.
                    return Err(
                        "a placeholder cannot follow the host of a redirect without '/' in between"
                            .into(),
                    );
                }
                false
            }
            _ => {
                return Err(
                    "a redirect target starts with \"https://\", \"http://\" or \"/\"".into(),
                )
            }
        };
        Ok(RedirectTemplate { parts, relative })
    }

    /// The `Location` value, or `None` if it would not be a valid header value.
    pub fn render(&self, input: &RedirectInput<'_>) -> Option<HeaderValue> {
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Path => encode_path(input.path, &mut out),
                Part::Rest => encode_path(input.rest, &mut out),
                Part::Query => {
                    if let Some(query) = input.query {
                        encode_query(query, &mut out);
                    }
                }
                Part::Host => out.push_str(input.host),
            }
        }
        if input.query.is_none_or(str::is_empty) && out.ends_with('?') {
            out.pop();
        }
        if self.relative {
            // `/{rest}` with rest = "/evil.example" must not become a scheme-relative URL, nor
            // `/{rest}\x` with an empty rest the `/\x` that browsers read as `//x`.
            let trimmed = out.trim_start_matches(['/', '\\']);
            out = format!("/{trimmed}");
        }
        HeaderValue::from_str(&out).ok()
    }
}

/// `respond = { status, body, content_type }`.
#[derive(Debug, Clone)]
pub struct Respond {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: HeaderValue,
}

impl Respond {
    pub fn response(&self) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::full(self.body.clone()));
        *response.status_mut() = self.status;
        if !self.body.is_empty() {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, self.content_type.clone());
        }
        response
    }
}

pub fn redirect_response(status: StatusCode, location: HeaderValue) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// The redirect from `/admin` to `/admin/` for a route `path = "/admin/"` (nginx answers a
/// `location /admin/` the same way). 301 for GET and HEAD, as nginx; 308 for other methods, so
/// that a POST is sent again as a POST to the route (and meets its rules) instead of becoming
/// a GET. `path` is the normalized path with its encodings as sent; it is encoded again where
/// it is not a plain `pchar` (a `\` never reaches a Location, where browsers read `/\` as `//`).
pub fn add_slash_redirect(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Response<ResponseBody> {
    let status = if matches!(*method, http::Method::GET | http::Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut location = String::with_capacity(path.len() + 2);
    crate::path::encode_query(path, &mut location);
    location.push('/');
    if let Some(query) = query {
        location.push('?');
        encode_query(query, &mut location);
    }
    // Every byte outside the kept set was percent-encoded: always a valid value.
    let location = HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/"));
    redirect_response(status, location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_slash_redirects_keep_the_query_and_the_method() {
        let get = add_slash_redirect(&http::Method::GET, "/admin", Some("next=%2Fx&a=b"));
        assert_eq!(get.status(), 301);
        assert_eq!(get.headers()[header::LOCATION], "/admin/?next=%2Fx&a=b");
        let post = add_slash_redirect(&http::Method::POST, "/api/auth/login", None);
        assert_eq!(post.status(), 308);
        assert_eq!(post.headers()[header::LOCATION], "/api/auth/login/");
        let odd = add_slash_redirect(&http::Method::GET, "/a\\b c", None);
        assert_eq!(odd.headers()[header::LOCATION], "/a%5Cb%20c/");
    }

    fn render(template: &str, path: &str, rest: &str, query: Option<&str>) -> String {
        let template = RedirectTemplate::parse(template).unwrap();
        let input = RedirectInput {
            host: "example.com",
            path,
            rest,
            query,
        };
        template
            .render(&input)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn fills_placeholders() {
        assert_eq!(
            render("https://blog.example.com/{rest}", "/blog/a/b", "a/b", None),
            "https://blog.example.com/a/b"
        );
        assert_eq!(
            render("https://{host}{path}?{query}", "/x", "", Some("a=1")),
            "https://example.com/x?a=1"
        );
        assert_eq!(
            render("https://{host}{path}?{query}", "/x", "", None),
            "https://example.com/x"
        );
        assert_eq!(render("/new/{rest}", "/old/a b", "a b", None), "/new/a%20b");
    }

    #[test]
    fn client_input_cannot_leave_the_site() {
        assert_eq!(
            render("/{rest}", "/old//evil.example", "/evil.example", None),
            "/evil.example"
        );
        assert_eq!(
            render("/{rest}", "/old/", "\\evil.example", None),
            "/%5Cevil.example"
        );
        assert_eq!(render("/{rest}\\x", "/old/", "", None), "/x");
        assert_eq!(
            render("https://a.example{path}", "/@evil.example", "", None),
            "https://a.example/@evil.example"
        );
        assert_eq!(
            render("/x?{query}", "/", "", Some("a\r\nSet-Cookie: x")),
            "/x?a%0D%0ASet-Cookie:%20x"
        );
    }

    #[test]
    fn refuses_templates_that_let_the_client_pick_the_host() {
        assert!(RedirectTemplate::parse("https://{rest}").is_err());
        assert!(RedirectTemplate::parse("https://a.example{rest}").is_err());
        assert!(RedirectTemplate::parse("https://{host}{rest}").is_err());
        assert!(RedirectTemplate::parse("//{host}/").is_err());
        assert!(RedirectTemplate::parse("/\\evil.example/{rest}").is_err());
        assert!(RedirectTemplate::parse("javascript:alert(1)").is_err());
        assert!(RedirectTemplate::parse("/x/{nope}").is_err());
        assert!(RedirectTemplate::parse("https://{host}/{path}").is_ok());
        assert!(RedirectTemplate::parse("https://{host}:8443/").is_ok());
        assert!(RedirectTemplate::parse("https://{host}:8443{path}").is_ok());
        assert!(RedirectTemplate::parse("https://{host}:8443").is_ok());
        // Found by fuzzing: the port literal did not have to end the authority.
        assert!(RedirectTemplate::parse("https://{host}:8443{rest}").is_err());
        assert!(RedirectTemplate::parse("https://{host}:{rest}").is_err());
        assert!(RedirectTemplate::parse("https://{host}:84:8443{rest}").is_err());
        assert!(RedirectTemplate::parse("https://{host}:x@evil.example/").is_err());
    }
}
