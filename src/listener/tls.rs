//! TLS settings of the https listener: TLS 1.2/1.3 only, Mozilla "intermediate" suites
//! (rustls offers only forward-secret AEAD suites), ALPN h2 + http/1.1, and the certificate
//! chosen by SNI among `[[tls.certificates]]`, the `[tls]` one being the fallback.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("{0}")]
    Config(String),
}

/// One certificate with the names it is chosen for.
pub struct CertSource<'a> {
    pub hosts: &'a [String],
    pub cert: &'a Path,
    pub key: &'a Path,
    /// PEM texts to use instead of reading `cert` and `key` (`rampart check` with a
    /// development certificate that does not exist yet).
    pub inline_pem: Option<(&'a [u8], &'a [u8])>,
    /// Obtained from the ACME CA at run time: nothing to read now (see [`crate::acme`]).
    pub acme: bool,
}

/// The compiled TLS side of a snapshot.
pub struct TlsSettings {
    pub server_config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    /// The ACME certificates of this config: (storage name, hosts).
    pub acme_certificates: Vec<(String, Vec<String>)>,
    /// Every configured certificate, `[tls]` first, for the expiry metric.
    pub certificates: Vec<CertificateInfo>,
}

/// What the expiry metric says of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// "default" for `[tls]`, else the first host of its `[[tls.certificates]]` entry.
    pub label: String,
    /// The leaf's notAfter as Unix seconds (`None`: not parseable as X.509).
    pub not_after: Option<i64>,
}

/// notAfter of a DER certificate, in Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("certificates", &self.store.certs.len())
            .finish()
    }
}

impl TlsSettings {
    /// Index of the certificate a name selects (the default when none matches): a request whose
    /// Host selects another certificate than its connection's SNI is misdirected (421).
    pub fn cert_for(&self, name: Option<&str>) -> usize {
        self.store.index_for(name)
    }

    /// Connects this snapshot's ACME certificates (and TLS-ALPN-01 challenges) to the server's
    /// registry, which outlives reloads: done when the snapshot starts serving.
    pub fn attach_acme(&self, registry: &Arc<crate::acme::Registry>) {
        self.store.acme.store(Some(registry.clone()));
    }

    /// The registry attached by [`TlsSettings::attach_acme`], if any.
    pub fn acme_registry(&self) -> Option<Arc<crate::acme::Registry>> {
        self.store.acme.load_full()
    }
}

/// The name an ACME certificate is stored under: its first host, lower-cased.
pub fn acme_name(hosts: &[String]) -> String {
    hosts
        .first()
        .map_or_else(String::new, |h| h.trim().to_ascii_lowercase())
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads every certificate and builds the server config. `min_tls13`: refuse TLS 1.2.
pub fn build(
    default: CertSource<'_>,
    extra: &[CertSource<'_>],
    min_tls13: bool,
) -> Result<TlsSettings, TlsError> {
    let provider = provider();
    let mut certificates = Vec::with_capacity(extra.len() + 1);
    let mut acme_certificates = Vec::new();
    let mut slot = |source: &CertSource<'_>| -> Result<Slot, TlsError> {
        if source.acme {
            let name = acme_name(source.hosts);
            acme_certificates.push((name.clone(), source.hosts.to_vec()));
            Ok(Slot::Acme(name))
        } else {
            Ok(Slot::Static(Arc::new(load_certified_key(
                source, &provider,
            )?)))
        }
    };
    let mut store = CertStore {
        exact: HashMap::new(),
        wildcard: Vec::new(),
        certs: vec![slot(&default)?],
        acme: ArcSwapOption::empty(),
    };
    for source in extra {
        let index = store.certs.len();
        store.certs.push(slot(source)?);
        for host in source.hosts {
            let host = host.trim().to_ascii_lowercase();
            match host.strip_prefix("*.") {
                Some(suffix) => store.wildcard.push((format!(".{suffix}"), index)),
                None => {
                    store.exact.entry(host).or_insert(index);
                }
            }
        }
    }
    for (index, certified) in store.certs.iter().enumerate() {
        let label = match index {
            0 => "default".to_string(),
            _ => extra[index - 1].hosts.first().map_or_else(
                || format!("certificates[{}]", index - 1),
                |h| h.trim().to_ascii_lowercase(),
            ),
        };
        // An ACME certificate's expiry is recorded by the ACME task when it is installed.
        let Slot::Static(certified) = certified else {
            continue;
        };
        let not_after = certified.cert.first().and_then(|leaf| not_after(leaf));
        certificates.push(CertificateInfo { label, not_after });
    }
    // Longest wildcard suffix first, so `*.a.example.org` beats `*.example.org`.
    store
        .wildcard
        .sort_by_key(|(suffix, _)| usize::MAX - suffix.len());
    let store = Arc::new(store);

    let versions: &[&rustls::SupportedProtocolVersion] = if min_tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if !acme_certificates.is_empty() {
        // TLS-ALPN-01 (RFC 8737): only the CA's validator offers it, and only it.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Stateless resumption keeps repeat handshakes cheap for returning clients.
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsSettings {
        server_config: Arc::new(config),
        store,
        acme_certificates,
        certificates,
    })
}

fn load_certified_key(
    source: &CertSource<'_>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: source.cert.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: source.key.display().to_string(),
        reason,
    };
    let chain = match source.inline_pem {
        Some((cert, _)) => CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>(),
        None => CertificateDer::pem_file_iter(source.cert)
            .map_err(|e| cert_err(pem_reason(e)))?
            .collect::<Result<Vec<_>, _>>(),
    }
    .map_err(|e| cert_err(pem_reason(e)))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    // PKCS#8, PKCS#1 and SEC1 keys are all recognised by their PEM label.
    let key = match source.inline_pem {
        Some((_, key)) => PrivateKeyDer::from_pem_slice(key),
        None => PrivateKeyDer::from_pem_file(source.key),
    }
    .map_err(|e| key_err(pem_reason(e)))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            key_err("the key does not belong to the certificate".into())
        }
        other => key_err(other.to_string()),
    })?;
    Ok(certified)
}

fn pem_reason(err: rustls_pki_types::pem::Error) -> String {
    match err {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM block of the right kind".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// The ALPN protocol of TLS-ALPN-01 challenges (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug)]
enum Slot {
    Static(Arc<CertifiedKey>),
    /// Whatever the ACME registry holds under this name (nothing before the first issue).
    Acme(String),
}

#[derive(Debug)]
struct CertStore {
    exact: HashMap<String, usize>,
    wildcard: Vec<(String, usize)>,
    /// Index 0 is the `[tls]` default.
    certs: Vec<Slot>,
    acme: ArcSwapOption<crate::acme::Registry>,
}

impl CertStore {
    fn index_for(&self, name: Option<&str>) -> usize {
        let Some(name) = name else { return 0 };
        let name = name.to_ascii_lowercase();
        if let Some(index) = self.exact.get(&name) {
            return *index;
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map_or(0, |(_, index)| *index)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme_alpn = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if acme_alpn {
            // Only the challenge certificate answers `acme-tls/1`, never a real one.
            let registry = self.acme.load();
            let registry = registry.as_ref()?;
            return registry.alpn_challenge(hello.server_name()?);
        }
        let index = self.index_for(hello.server_name());
        match self.certs.get(index)? {
            Slot::Static(certified) => Some(certified.clone()),
            Slot::Acme(name) => self.acme.load().as_ref()?.certificate(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_h2_and_http11_and_resumes_sessions() {
        let generated = crate::certgen::generate(&["localhost".to_string()]).unwrap();
        let default = CertSource {
            hosts: &[],
            cert: Path::new("inline.crt"),
            key: Path::new("inline.key"),
            inline_pem: Some((generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())),
            acme: false,
        };
        let settings = build(default, &[], false).unwrap();
        let expiry = settings.certificates[0].not_after.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(settings.certificates[0].label, "default");
        assert!(
            expiry > now,
            "a fresh development certificate is not expired"
        );
        let config = &settings.server_config;
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(
            config.ticketer.enabled(),
            "stateless session resumption is on"
        );
        assert!(
            config.session_storage.can_cache(),
            "and stateful resumption too"
        );
        // Mozilla "intermediate" as rustls can do it: TLS 1.3 suites, and for TLS 1.2 only
        // ECDHE key exchange (forward secrecy) with an AEAD cipher.
        for suite in &config.crypto_provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.starts_with("TLS13_")
                    || (name.starts_with("TLS_ECDHE_")
                        && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"))),
                "suite {name} is not forward-secret AEAD"
            );
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let one = crate::certgen::generate(&["a.test".to_string()]).unwrap();
        let other = crate::certgen::generate(&["b.test".to_string()]).unwrap();
        let source = CertSource {
            hosts: &[],
            cert: Path::new("a.crt"),
            key: Path::new("b.key"),
            inline_pem: Some((one.cert_pem.as_bytes(), other.key_pem.as_bytes())),
            acme: false,
        };
        match build(source, &[], false) {
            Err(TlsError::Key { reason, .. }) => assert!(reason.contains("does not belong")),
            other => panic!("expected a key error, got {:?}", other.map(|_| ())),
        }
    }
}
