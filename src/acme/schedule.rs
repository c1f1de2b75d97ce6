//! When to renew, and when to try again after a failure.
//!
//! Renewal happens inside the CA's ARI window (RFC 9773) when its directory offers
//! `renewalInfo`, at a random point of it; otherwise when a third of the lifetime is left.
//! Failures back off from `min` doubling to `max`; the state is stored so that a restart (or a
//! crash loop) keeps waiting instead of ordering again.

use std::time::Duration;

use instant_acme::{Account, CertificateIdentifier};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

/// What storage remembers between attempts, per certificate (`certs/NAME/state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalState {
    /// Failed attempts in a row.
    pub failures: u32,
    /// Unix seconds before which no new order is placed.
    pub next_attempt: i64,
    /// The last failure, for people reading the storage (never a key).
    #[serde(default)]
    pub last_error: String,
}

/// The validity of a certificate, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    pub fn of(der: &[u8]) -> Option<Validity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(Validity {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// When a third of the lifetime is left (the fallback without ARI).
    pub fn third_left(self) -> i64 {
        let lifetime = (self.not_after - self.not_before).max(0);
        self.not_after - lifetime / 3
    }
}

/// The delay before attempt number `failures + 1`: `min`, doubled each failure, at most `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    min.saturating_mul(factor).min(max).max(min.min(max))
}

/// A point inside an ARI window: `fraction` (0..1, random in use) of the way through it; now
/// if the window has started. RFC 9773 §4.2.
pub fn in_window(start: i64, end: i64, now: i64, fraction: f64) -> i64 {
    if end <= start {
        return start.max(now);
    }
    let fraction = fraction.clamp(0.0, 1.0);
    let point = start + ((end - start) as f64 * fraction) as i64;
    if start <= now {
        now
    } else {
        point
    }
}

/// Where the renewal time came from (logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ari,
    ThirdLeft,
}

/// When to renew the certificate `leaf`: asks the CA's ARI endpoint when the directory has one,
/// else (or when the CA does not answer it) a third of the lifetime before its end.
pub async fn renewal_time(
    account: Option<&Account>,
    leaf: &CertificateDer<'_>,
    now: i64,
) -> Option<(i64, Source)> {
    let validity = Validity::of(leaf)?;
    if let Some(account) = account {
        if let Ok(id) = CertificateIdentifier::try_from(leaf) {
            match account.renewal_info(&id).await {
                Ok((info, _retry_after)) => {
                    let window = info.suggested_window;
                    let at = in_window(
                        window.start.unix_timestamp(),
                        window.end.unix_timestamp(),
                        now,
                        random_fraction(),
                    );
                    return Some((at, Source::Ari));
                }
                Err(instant_acme::Error::Unsupported(_)) => {}
                Err(err) => {
                    tracing::debug!(error = %err, "ARI renewal info not available: a third of the lifetime is used");
                }
            }
        }
    }
    Some((validity.third_left(), Source::ThirdLeft))
}

fn random_fraction() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    f64::from(value) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    use bytes::Bytes;
    use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

    #[test]
    fn backoff_grows_from_minutes_to_hours() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(1, min, max), min);
        assert_eq!(backoff(2, min, max), Duration::from_secs(120));
        assert_eq!(backoff(5, min, max), Duration::from_secs(960));
        assert_eq!(backoff(40, min, max), max);
        assert_eq!(backoff(0, min, max), min);
    }

    #[test]
    fn a_third_of_the_lifetime() {
        let v = Validity {
            not_before: 0,
            not_after: 90,
        };
        assert_eq!(v.third_left(), 60);
    }

    #[test]
    fn window_points() {
        assert_eq!(in_window(100, 200, 0, 0.5), 150);
        assert_eq!(in_window(100, 200, 0, 0.0), 100);
        assert_eq!(in_window(100, 200, 150, 0.9), 150, "started: now");
        assert_eq!(in_window(100, 200, 500, 0.1), 500, "over: now");
    }

    /// A CA directory served in-process: with or without `renewalInfo`, and a renewalInfo
    /// answer with a fixed window.
    struct Directory {
        ari: bool,
        window: (String, String),
    }

    impl HttpClient for Directory {
        fn request(
            &self,
            req: http::Request<BodyWrapper<Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
        {
            let path = req.uri().path().to_string();
            let base = "https://ca.test";
            let response = if path == "/dir" {
                let mut dir = serde_json::json!({
                    "newNonce": format!("{base}/nonce"),
                    "newAccount": format!("{base}/account"),
                    "newOrder": format!("{base}/order"),
                });
                if self.ari {
                    dir["renewalInfo"] = format!("{base}/ari").into();
                }
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(Bytes::from(dir.to_string())))
            } else if path.starts_with("/ari/") {
                let body = serde_json::json!({
                    "suggestedWindow": {"start": self.window.0, "end": self.window.1}
                });
                http::Response::builder()
                    .header("content-type", "application/json")
                    .header("retry-after", "21600")
                    .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            } else {
                http::Response::builder()
                    .status(404)
                    .body(http_body_util::Full::new(Bytes::new()))
            };
            let response = response.expect("a valid response");
            Box::pin(async move { Ok(BytesResponse::from(response)) })
        }
    }

    async fn in_test_account(ari: bool, window: (&str, &str)) -> Account {
        let (_, pkcs8) = instant_acme::Key::generate_pkcs8().unwrap();
        let key = super::super::config::encode_base64url(pkcs8.secret_pkcs8_der());
        let credentials: instant_acme::AccountCredentials = serde_json::from_value(
            serde_json::json!({"id": "https://ca.test/acct/1", "key_pkcs8": key, "directory": "https://ca.test/dir"}),
        )
        .unwrap();
        Account::builder_with_http(Box::new(Directory {
            ari,
            window: (window.0.to_string(), window.1.to_string()),
        }))
        .from_credentials(credentials)
        .await
        .unwrap()
    }

    fn certificate(days: i64) -> (CertificateDer<'static>, Validity) {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + time::Duration::days(days);
        // ARI identifies a certificate by its issuer's key id and its serial.
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from(vec![1, 2, 3]));
        let issuer_key = rcgen::KeyPair::generate().unwrap();
        let issuer_params = {
            let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.key_identifier_method = rcgen::KeyIdMethod::Sha256;
            p
        };
        let issuer = issuer_params.self_signed(&issuer_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer, &issuer_key).unwrap();
        let der = cert.der().clone();
        let validity = Validity::of(&der).unwrap();
        (der, validity)
    }

    #[tokio::test]
    async fn the_ari_window_is_used_when_the_directory_offers_it() {
        let (leaf, validity) = certificate(90);
        let now = validity.not_before;
        // A window in the future, well before a third of the lifetime is left.
        let start = time::OffsetDateTime::from_unix_timestamp(now + 10 * 86400).unwrap();
        let end = time::OffsetDateTime::from_unix_timestamp(now + 11 * 86400).unwrap();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let account = in_test_account(true, (&fmt(start), &fmt(end))).await;
        let (at, source) = renewal_time(Some(&account), &leaf, now).await.unwrap();
        assert_eq!(source, Source::Ari);
        assert!(
            (start.unix_timestamp()..=end.unix_timestamp()).contains(&at),
            "{at} inside the window"
        );

        // A window that has already started (the CA asks for renewal now, e.g. revocation).
        let past = time::OffsetDateTime::from_unix_timestamp(now - 3600).unwrap();
        let account = in_test_account(true, (&fmt(past), &fmt(end))).await;
        let (at, source) = renewal_time(Some(&account), &leaf, now).await.unwrap();
        assert_eq!((at, source), (now, Source::Ari));
    }

    #[tokio::test]
    async fn without_ari_a_third_of_the_lifetime_is_left() {
        let (leaf, validity) = certificate(90);
        let account = in_test_account(false, ("", "")).await;
        let (at, source) = renewal_time(Some(&account), &leaf, validity.not_before)
            .await
            .unwrap();
        assert_eq!(source, Source::ThirdLeft);
        assert_eq!(at, validity.third_left());
        assert_eq!(at, validity.not_after - 30 * 86400);
    }
}
