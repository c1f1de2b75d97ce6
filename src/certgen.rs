//! Self-signed development certificates (`rampart cert`, `tls.self_signed_if_missing`).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A generated certificate: PEM texts and the DER of the certificate (tests trust it as a root).
#[derive(Clone)]
pub struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

/// Generates a self-signed certificate valid for `hosts` (DNS names or IP addresses).
pub fn generate(hosts: &[String]) -> Result<Generated, CertGenError> {
    let certified = rcgen::generate_simple_self_signed(hosts.to_vec())?;
    Ok(Generated {
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
        cert_der: certified.cert.der().to_vec(),
    })
}

/// Generates a certificate for `hosts` and writes it to `cert_path` and `key_path`
/// (parent folders created; the key readable by its owner only).
pub fn write_self_signed(
    hosts: &[String],
    cert_path: &Path,
    key_path: &Path,
) -> Result<Generated, CertGenError> {
    let generated = generate(hosts)?;
    generated.write(cert_path, key_path)?;
    Ok(generated)
}

impl Generated {
    /// Writes the certificate and key (parent folders created; the key readable by its owner
    /// only).
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), CertGenError> {
        write_file(cert_path, self.cert_pem.as_bytes(), 0o644)?;
        write_file(key_path, self.key_pem.as_bytes(), 0o600)
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertGenError> {
    let err = |source| CertGenError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let _ = mode;
    use std::io::Write;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)
}
