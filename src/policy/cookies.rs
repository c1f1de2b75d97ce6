//! Cookie hardening (`[cookies]`): `Secure`, `HttpOnly` and `SameSite` are added to the
//! upstream's `Set-Cookie` headers when they are absent.
//!
//! What the upstream wrote is never weakened or replaced: an attribute it set is kept whatever
//! its value (`SameSite=Strict` is stricter than our `Lax`; `SameSite=None` is an explicit choice
//! of the app, e.g. for a cookie used in a cross-site iframe). Attribute names are matched the
//! way browsers match them (RFC 6265 §5.2): case-insensitively, ignoring spaces and tabs.
//!
//! Cookie values are secrets (session ids, CSRF tokens): nothing in this module logs, formats
//! or returns them in an error.

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};

/// The `SameSite` value added to cookies that have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    fn attribute(self) -> &'static str {
        match self {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        }
    }
}

/// `[cookies]`, compiled: which attributes to add to every upstream `Set-Cookie` lacking them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    pub secure: bool,
    pub http_only: bool,
    /// `None`: SameSite is left alone (`same_site = ""`).
    pub same_site: Option<SameSite>,
}

/// A `[cookies]` value that cannot be compiled. Every variant is about `cookies.same_site`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieConfigError {
    #[error("expected \"Strict\", \"Lax\", \"None\" or \"\" (leave SameSite alone), not `{0}`")]
    SameSite(String),
    #[error("write it \"{0}\" (SameSite values are capitalized)")]
    SameSiteCase(&'static str),
    #[error("same_site = \"None\" needs secure = true: browsers refuse a SameSite=None cookie without Secure")]
    NoneWithoutSecure,
}

impl CookieConfigError {
    /// The config key the error is about.
    pub fn key(&self) -> &'static str {
        "cookies.same_site"
    }
}

impl CookiePolicy {
    /// Adds nothing: what `[cookies] secure = false, http_only = false, same_site = ""` compiles to.
    pub const OFF: CookiePolicy = CookiePolicy {
        secure: false,
        http_only: false,
        same_site: None,
    };

    /// Compiles `[cookies]` (`same_site`: "Strict", "Lax", "None" or "" to leave it alone).
    pub fn new(
        secure: bool,
        http_only: bool,
        same_site: &str,
    ) -> Result<CookiePolicy, CookieConfigError> {
        let same_site = match same_site {
            "" => None,
            "Strict" => Some(SameSite::Strict),
            "Lax" => Some(SameSite::Lax),
            "None" => Some(SameSite::None),
            other => {
                return Err(
                    match ["Strict", "Lax", "None"]
                        .into_iter()
                        .find(|known| known.eq_ignore_ascii_case(other))
                    {
                        Some(known) => CookieConfigError::SameSiteCase(known),
                        None => CookieConfigError::SameSite(other.to_string()),
                    },
                )
            }
        };
        if same_site == Some(SameSite::None) && !secure {
            return Err(CookieConfigError::NoneWithoutSecure);
        }
        Ok(CookiePolicy {
            secure,
            http_only,
            same_site,
        })
    }

    /// True when the policy adds nothing.
    pub fn is_off(&self) -> bool {
        !self.secure && !self.http_only && self.same_site.is_none()
    }

    /// Hardens every `Set-Cookie` of a response. Allocates nothing when there is no
    /// `Set-Cookie` or nothing to add; the order of the headers is kept.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.is_off() || !headers.contains_key(SET_COOKIE) {
            return;
        }
        for (name, value) in headers.iter_mut() {
            if name == SET_COOKIE {
                if let Some(hardened) = self.harden(value) {
                    *value = hardened;
                }
            }
        }
    }

    /// The value with the missing attributes appended, or `None` to leave it as it is
    /// (nothing missing, empty, or not valid header text).
    fn harden(&self, value: &HeaderValue) -> Option<HeaderValue> {
        let text = value.to_str().ok()?;
        let present = Present::of(text);
        let add_secure = self.secure && !present.secure;
        let add_http_only = self.http_only && !present.http_only;
        let add_same_site = self.same_site.filter(|_| !present.same_site);
        if !add_secure && !add_http_only && add_same_site.is_none() {
            return None;
        }
        // `a=b; ` and `a=b;` end with an empty attribute: append after the last real one.
        let base = text.trim_end_matches([';', ' ', '\t']);
        if base.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(base.len() + 34);
        out.push_str(base);
        if add_secure {
            out.push_str("; Secure");
        }
        if add_http_only {
            out.push_str("; HttpOnly");
        }
        if let Some(same_site) = add_same_site {
            out.push_str(same_site.attribute());
        }
        let mut hardened = HeaderValue::try_from(out).ok()?;
        hardened.set_sensitive(value.is_sensitive());
        Some(hardened)
    }
}

/// The attributes a `Set-Cookie` value already has (by name; their values do not matter).
#[derive(Debug, Default, PartialEq, Eq)]
struct Present {
    secure: bool,
    http_only: bool,
    same_site: bool,
}

impl Present {
    fn of(set_cookie: &str) -> Present {
        let mut present = Present::default();
        // The first part is the cookie's `name=value`: a cookie named `Secure` is not the flag.
        for attribute in set_cookie.split(';').skip(1) {
            let name = attribute
                .split_once('=')
                .map_or(attribute, |(name, _)| name)
                .trim_matches([' ', '\t']);
            if name.eq_ignore_ascii_case("secure") {
                present.secure = true;
            } else if name.eq_ignore_ascii_case("httponly") {
                present.http_only = true;
            } else if name.eq_ignore_ascii_case("samesite") {
                present.same_site = true;
            }
        }
        present
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: CookiePolicy = CookiePolicy {
        secure: true,
        http_only: false,
        same_site: Some(SameSite::Lax),
    };
    const ALL: CookiePolicy = CookiePolicy {
        secure: true,
        http_only: true,
        same_site: Some(SameSite::Lax),
    };

    fn harden(policy: &CookiePolicy, value: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(SET_COOKIE, HeaderValue::from_str(value).unwrap());
        policy.apply(&mut headers);
        headers[SET_COOKIE].to_str().unwrap().to_string()
    }

    fn config(
        secure: bool,
        http_only: bool,
        same_site: &str,
    ) -> Result<CookiePolicy, CookieConfigError> {
        CookiePolicy::new(secure, http_only, same_site)
    }

    #[test]
    fn compiles_the_config() {
        assert_eq!(config(true, false, "Lax"), Ok(DEFAULT));
        assert_eq!(config(false, false, ""), Ok(CookiePolicy::OFF));
        assert_eq!(
            config(true, true, "Strict").unwrap().same_site,
            Some(SameSite::Strict)
        );
        assert_eq!(
            config(true, false, "None").unwrap().same_site,
            Some(SameSite::None)
        );
    }

    #[test]
    fn refuses_bad_same_site() {
        assert_eq!(
            config(true, false, "Loose"),
            Err(CookieConfigError::SameSite("Loose".into()))
        );
        assert_eq!(
            config(true, false, "lax"),
            Err(CookieConfigError::SameSiteCase("Lax"))
        );
        let none_insecure = config(false, false, "None").unwrap_err();
        assert_eq!(none_insecure, CookieConfigError::NoneWithoutSecure);
        assert_eq!(none_insecure.key(), "cookies.same_site");
        assert!(none_insecure.to_string().contains("secure = true"));
    }

    #[test]
    fn adds_missing_attributes_in_a_fixed_order() {
        assert_eq!(harden(&DEFAULT, "a=1"), "a=1; Secure; SameSite=Lax");
        assert_eq!(
            harden(&ALL, "a=1; Path=/"),
            "a=1; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            harden(
                &CookiePolicy {
                    secure: false,
                    http_only: true,
                    same_site: Some(SameSite::Strict)
                },
                "a=1"
            ),
            "a=1; HttpOnly; SameSite=Strict"
        );
        // a trailing empty attribute is not kept before the new ones
        assert_eq!(harden(&DEFAULT, "a=1; "), "a=1; Secure; SameSite=Lax");
        assert_eq!(harden(&DEFAULT, "a=1;;"), "a=1; Secure; SameSite=Lax");
    }

    #[test]
    fn detects_attributes_in_any_case_and_spacing() {
        for value in [
            "a=1; Secure; HttpOnly; SameSite=Lax",
            "a=1;secure;httponly;samesite=lax",
            "a=1; SECURE ; HTTPONLY ;SAMESITE = Lax",
            "a=1;\tSecure;\tHttpOnly;\tSameSite=Lax",
            "a=1; Max-Age=60; secure; Path=/; httpOnly; sameSite=lax; Domain=example.com",
            // Browsers ignore a value on Secure / HttpOnly: still the flag.
            "a=1; Secure=yes; HttpOnly=1; SameSite=",
        ] {
            assert_eq!(
                Present::of(value),
                Present {
                    secure: true,
                    http_only: true,
                    same_site: true
                },
                "{value}"
            );
            assert_eq!(harden(&ALL, value), value, "left alone: {value}");
        }
        // Look-alikes are not the attributes.
        assert_eq!(
            Present::of("secure=1; Path=/securepath; X-HttpOnly; SameSiteX=Strict"),
            Present::default()
        );
        assert_eq!(
            harden(&DEFAULT, "Secure=1; SameSiteX=Strict"),
            "Secure=1; SameSiteX=Strict; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn an_upstream_same_site_is_kept_whatever_it_is() {
        // Strict is stricter than Lax: kept.
        assert_eq!(
            harden(&DEFAULT, "a=1; SameSite=Strict"),
            "a=1; SameSite=Strict; Secure"
        );
        // None is explicit (cross-site use): kept, not "hardened" to Lax.
        assert_eq!(
            harden(&DEFAULT, "a=1; samesite=none; secure"),
            "a=1; samesite=none; secure"
        );
        assert_eq!(
            harden(&DEFAULT, "a=1; SameSite=None"),
            "a=1; SameSite=None; Secure"
        );
        // Even a value we do not know.
        assert_eq!(
            harden(&DEFAULT, "a=1; Secure; SameSite=Bogus"),
            "a=1; Secure; SameSite=Bogus"
        );
        // Our None is added only where nothing was said.
        let none = CookiePolicy {
            secure: true,
            http_only: false,
            same_site: Some(SameSite::None),
        };
        assert_eq!(harden(&none, "a=1"), "a=1; Secure; SameSite=None");
        assert_eq!(
            harden(&none, "a=1; SameSite=Lax"),
            "a=1; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn every_set_cookie_is_hardened_and_order_kept() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.insert("x-other", HeaderValue::from_static("secure=no"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2; Secure"));
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("c=3; Secure; SameSite=Strict"),
        );
        DEFAULT.apply(&mut headers);
        let values: Vec<&str> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            values,
            [
                "a=1; Secure; SameSite=Lax",
                "b=2; Secure; SameSite=Lax",
                "c=3; Secure; SameSite=Strict"
            ]
        );
        assert_eq!(headers["x-other"], "secure=no");
    }

    #[test]
    fn leaves_alone_what_it_cannot_read_or_when_off() {
        // obs-text (non-ASCII) is not valid header text for `to_str`: untouched, byte for byte.
        let mut headers = HeaderMap::new();
        let raw = HeaderValue::from_bytes(b"a=\xe2\x82\xac; Path=/").unwrap();
        headers.insert(SET_COOKIE, raw.clone());
        ALL.apply(&mut headers);
        assert_eq!(headers[SET_COOKIE], raw);

        assert_eq!(harden(&ALL, ""), "");
        assert_eq!(harden(&ALL, " ; "), " ; ");
        assert_eq!(harden(&CookiePolicy::OFF, "a=1"), "a=1");
    }

    #[test]
    fn sensitivity_is_kept() {
        let mut headers = HeaderMap::new();
        let mut value = HeaderValue::from_static("a=1");
        value.set_sensitive(true);
        headers.insert(SET_COOKIE, value);
        DEFAULT.apply(&mut headers);
        assert!(headers[SET_COOKIE].is_sensitive());
        // Debug output of a sensitive value does not show it.
        assert!(!format!("{headers:?}").contains("a=1"));
    }

    #[test]
    fn no_set_cookie_no_change() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let before = headers.clone();
        ALL.apply(&mut headers);
        assert_eq!(headers, before);
    }
}
