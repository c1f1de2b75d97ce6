//! `[tls]`: certificates and keys (a development one generated when allowed), the TLS config.

#[allow(unused_imports)]
use super::*;

/// Loads certificates (generating a development one when allowed: `development` gets it when
/// `run` is to write it) and builds the TLS config.
pub(super) fn tls_settings(
    v: &mut Validator<'_>,
    tls: Option<&model::Tls>,
    missing_cert: MissingCert,
    development: &mut Option<crate::snapshot::DevelopmentCertificate>,
) -> Option<(tls::TlsSettings, Vec<PathBuf>)> {
    let Some(tls) = tls else {
        v.near(
            0..0,
            "tls",
            "the https listener needs a [tls] section with cert and key",
        );
        return None;
    };
    let min_tls13 = match tls.min_version.get_ref().as_str() {
        "1.2" => false,
        "1.3" => true,
        "1.0" | "1.1" => {
            v.at(
                &tls.min_version,
                "tls.min_version",
                "TLS 1.0 and 1.1 are never offered (RFC 8996); use \"1.2\" or \"1.3\"",
            );
            return None;
        }
        _ => {
            v.at(
                &tls.min_version,
                "tls.min_version",
                "expected \"1.2\" or \"1.3\"",
            );
            return None;
        }
    };

    let cert = tls.cert.get_ref();
    let key = tls.key.get_ref();
    let default_acme = *tls.acme.get_ref();
    let mut ok = true;
    if default_acme {
        if !cert.as_os_str().is_empty() || !key.as_os_str().is_empty() {
            v.at(
                &tls.acme,
                "tls.acme",
                "acme = true replaces cert and key: remove them, or remove acme",
            );
            ok = false;
        }
        if tls.hosts.is_empty() {
            v.at(
                &tls.acme,
                "tls.hosts",
                "acme = true needs the names to obtain the certificate for: hosts = [\"example.org\"]",
            );
            ok = false;
        }
    } else if !tls.hosts.is_empty() {
        v.near(
            0..0,
            "tls.hosts",
            "hosts on [tls] are only for acme = true (the default certificate's own names are in the file)",
        );
        ok = false;
    }
    let mut in_memory = None;
    if !default_acme
        && tls.self_signed_if_missing
        && missing_cert != MissingCert::Refuse
        && !cert.exists()
        && !key.exists()
    {
        let hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        match missing_cert {
            MissingCert::Generate => match crate::certgen::generate(&hosts) {
                Ok(generated) => {
                    *development = Some(crate::snapshot::DevelopmentCertificate {
                        cert: cert.clone(),
                        key: key.clone(),
                        generated: generated.clone(),
                    });
                    in_memory = Some(generated);
                }
                Err(err) => {
                    v.at(
                        &tls.cert,
                        "tls.cert",
                        format!("missing, and generating a development certificate failed: {err}"),
                    );
                    return None;
                }
            },
            MissingCert::Warn
            | MissingCert::Unseen
            | MissingCert::InMemory
            | MissingCert::Refuse => {
                v.warnings.push(if matches!(missing_cert, MissingCert::Warn | MissingCert::Unseen) {
                    format!(
                        "tls.cert: {} does not exist; `rampart run` will generate a self-signed development certificate",
                        cert.display()
                    )
                } else {
                    "SERVING A SELF-SIGNED DEVELOPMENT CERTIFICATE held in memory: browsers will not trust it; use `rampart run` with a real certificate for production".to_string()
                });
                // Check everything else against a certificate that is never written.
                match crate::certgen::generate(&hosts) {
                    Ok(generated) => in_memory = Some(generated),
                    Err(err) => {
                        v.at(&tls.cert, "tls.cert", err.to_string());
                        return None;
                    }
                }
            }
        }
    }

    if in_memory.is_none() && !default_acme && v.skips_missing() {
        let mut unseen = false;
        for (path, spanned, key_name) in [(cert, &tls.cert, "tls.cert"), (key, &tls.key, "tls.key")]
        {
            if is_missing(path) {
                v.unseen(spanned, key_name, path);
                unseen = true;
            }
        }
        if unseen {
            // The rest is checked against a certificate that is never written.
            match crate::certgen::generate(&["localhost".to_string()]) {
                Ok(generated) => in_memory = Some(generated),
                Err(err) => {
                    v.at(&tls.cert, "tls.cert", err.to_string());
                    return None;
                }
            }
        }
    }
    // `--skip-missing-paths`: extra certificates whose files are not here are left out.
    let mut unseen_extras = Vec::new();
    if v.skips_missing() {
        for (index, extra) in tls.certificates.iter().enumerate() {
            let extra = extra.get_ref();
            if extra.acme {
                continue;
            }
            let prefix = format!("tls.certificates[{index}]");
            let mut unseen = false;
            for (spanned, name) in [(&extra.cert, "cert"), (&extra.key, "key")] {
                if is_missing(spanned.get_ref()) {
                    v.unseen(spanned, &format!("{prefix}.{name}"), spanned.get_ref());
                    unseen = true;
                }
            }
            if unseen {
                unseen_extras.push(index);
            }
        }
    }

    for (path, spanned, key_name) in [(cert, &tls.cert, "tls.cert"), (key, &tls.key, "tls.key")] {
        if in_memory.is_some() || default_acme {
            break;
        }
        if path.as_os_str().is_empty() {
            v.near(
                0..0,
                key_name,
                "missing: give cert and key, or acme = true with [acme]",
            );
            ok = false;
        } else if let Err(err) = std::fs::metadata(path) {
            v.at(
                spanned,
                key_name,
                format!("cannot read {}: {}", path.display(), io_reason(&err)),
            );
            ok = false;
        }
    }
    for (index, extra) in tls.certificates.iter().enumerate() {
        let prefix = format!("tls.certificates[{index}]");
        if extra.get_ref().hosts.is_empty() {
            v.at(
                extra,
                &format!("{prefix}.hosts"),
                "list the host names this certificate is for",
            );
            ok = false;
        }
        for host in &extra.get_ref().hosts {
            if HostPattern::parse(host).is_err() || host.trim().is_empty() || host.trim() == "*" {
                v.at(
                    extra,
                    &format!("{prefix}.hosts"),
                    format!("`{host}` is not a host name or \"*.example.org\""),
                );
                ok = false;
            }
        }
        if extra.get_ref().acme {
            let written = !extra.get_ref().cert.get_ref().as_os_str().is_empty()
                || !extra.get_ref().key.get_ref().as_os_str().is_empty();
            if written {
                v.at(
                    extra,
                    &format!("{prefix}.acme"),
                    "acme = true replaces cert and key: remove them, or remove acme",
                );
                ok = false;
            }
            continue;
        }
        if unseen_extras.contains(&index) {
            continue;
        }
        for (path, spanned, name) in [
            (
                extra.get_ref().cert.get_ref(),
                &extra.get_ref().cert,
                "cert",
            ),
            (extra.get_ref().key.get_ref(), &extra.get_ref().key, "key"),
        ] {
            if path.as_os_str().is_empty() {
                v.at(
                    extra,
                    &format!("{prefix}.{name}"),
                    "missing: give cert and key, or acme = true with [acme]",
                );
                ok = false;
            } else if let Err(err) = std::fs::metadata(path) {
                v.at(
                    spanned,
                    &format!("{prefix}.{name}"),
                    format!("cannot read {}: {}", path.display(), io_reason(&err)),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }

    let extras: Vec<CertSource<'_>> = tls
        .certificates
        .iter()
        .enumerate()
        .filter(|(index, _)| !unseen_extras.contains(index))
        .map(|(_, c)| CertSource {
            hosts: &c.get_ref().hosts,
            cert: c.get_ref().cert.get_ref(),
            key: c.get_ref().key.get_ref(),
            inline_pem: None,
            acme: c.get_ref().acme,
        })
        .collect();
    let default = CertSource {
        hosts: &tls.hosts,
        acme: default_acme,
        cert,
        key,
        inline_pem: in_memory
            .as_ref()
            .map(|g| (g.cert_pem.as_bytes(), g.key_pem.as_bytes())),
    };
    match tls::build(default, &extras, min_tls13) {
        Ok(settings) => {
            let mut files = Vec::new();
            if !default_acme {
                files.extend([cert.clone(), key.clone()]);
            }
            for c in tls.certificates.iter().filter(|c| !c.get_ref().acme) {
                files.push(c.get_ref().cert.get_ref().clone());
                files.push(c.get_ref().key.get_ref().clone());
            }
            // An expired certificate is served (as nginx does) but never silently.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for info in &settings.certificates {
                if info.not_after.is_some_and(|t| t < now) {
                    v.warnings.push(format!(
                        "the certificate for `{}` has expired: clients will refuse it",
                        info.label
                    ));
                }
            }
            Some((settings, files))
        }
        Err(err) => {
            // Point at the file the error is about.
            let (spanned, key_name) = match &err {
                tls::TlsError::Key { path, .. } => find_path(tls, path, false),
                tls::TlsError::Cert { path, .. } => find_path(tls, path, true),
                tls::TlsError::Config(_) => (&tls.cert, "tls.cert".to_string()),
            };
            v.at(spanned, &key_name, err.to_string());
            None
        }
    }
}

pub(super) fn find_path<'t>(
    tls: &'t model::Tls,
    path: &str,
    cert: bool,
) -> (&'t Spanned<PathBuf>, String) {
    let pick = |c: &'t Spanned<PathBuf>, k: &'t Spanned<PathBuf>| if cert { c } else { k };
    let name = if cert { "cert" } else { "key" };
    for (index, extra) in tls.certificates.iter().enumerate() {
        let spanned = pick(&extra.get_ref().cert, &extra.get_ref().key);
        if spanned.get_ref().display().to_string() == path {
            return (spanned, format!("tls.certificates[{index}].{name}"));
        }
    }
    (pick(&tls.cert, &tls.key), format!("tls.{name}"))
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;
    use super::super::MissingCert;

    #[test]
    fn versions_missing_files_and_acme_conflicts() {
        let text = with("").replace("self_signed_if_missing = true", "min_version = \"1.1\"");
        let keys: Vec<String> = load(&text).unwrap_err().into_iter().map(|e| e.0).collect();
        assert_eq!(keys, ["tls.min_version"]);
        let text = with("").replace("self_signed_if_missing = true", "");
        let keys: Vec<String> = load(&text).unwrap_err().into_iter().map(|e| e.0).collect();
        assert_eq!(keys, ["tls.cert", "tls.key"]);
        let text = with("").replace("self_signed_if_missing = true", "acme = true");
        let errors = load(&text).unwrap_err();
        assert!(
            errors.iter().any(|(key, _)| key == "tls.acme"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_development_certificate_is_generated_not_written() {
        let snapshot = load(&with("")).unwrap();
        // InMemory (as `rampart proxy`): nothing for `run` to write.
        assert!(snapshot.development_certificate.is_none());
        let generated =
            crate::config::load_str_with(&with(""), "t.toml", MissingCert::Generate).unwrap();
        let development = generated.development_certificate.unwrap();
        assert_eq!(
            development.cert,
            std::path::Path::new("/nonexistent/dev.crt")
        );
        assert!(!development.cert.exists());
    }
}
