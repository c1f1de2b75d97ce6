//! Proving control of a name: the HTTP-01 answer and the TLS-ALPN-01 certificate.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The path prefix of HTTP-01 challenges (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token of an HTTP-01 request path, if it is one: base64url characters only.
pub fn http01_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    let valid = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(token)
}

/// The self-signed certificate a TLS-ALPN-01 validator expects for `host` (RFC 8737 §3): the
/// name as its only SAN, and the critical acmeIdentifier extension holding the SHA-256 digest
/// of the key authorization.
pub fn tls_alpn01_certificate(
    host: &str,
    key_authorization_digest: &[u8],
) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
        key_authorization_digest,
    )];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its consistency check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension that RFC 8737 requires.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider()); // as the listener's (ring)
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_base64url_only() {
        assert_eq!(
            http01_token("/.well-known/acme-challenge/abc-_9"),
            Some("abc-_9")
        );
        assert_eq!(http01_token("/.well-known/acme-challenge/"), None);
        assert_eq!(http01_token("/.well-known/acme-challenge/../x"), None);
        assert_eq!(http01_token("/other"), None);
    }

    #[test]
    fn the_alpn_certificate_carries_the_critical_identifier() {
        let digest = [7u8; 32];
        let certified = tls_alpn01_certificate("a.test", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&certified.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of 32 bytes: the digest.
        assert_eq!(&ext.value[2..], &digest);
    }
}
