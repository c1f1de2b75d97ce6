//! `[acme]` and the certificates it obtains.

#[allow(unused_imports)]
use super::*;

/// `[acme]` and the certificates that use it (DESIGN §5b).
pub(super) fn acme_settings(
    v: &mut Validator<'_>,
    file: &model::File,
) -> Option<Arc<AcmeSettings>> {
    // (key, hosts) of every certificate with acme = true.
    let mut wanted: Vec<(String, &[String])> = Vec::new();
    if let Some(tls) = &file.tls {
        if *tls.acme.get_ref() {
            wanted.push(("tls.hosts".to_string(), &tls.hosts));
        }
        for (index, extra) in tls.certificates.iter().enumerate() {
            if extra.get_ref().acme {
                wanted.push((
                    format!("tls.certificates[{index}].hosts"),
                    &extra.get_ref().hosts,
                ));
            }
        }
    }
    let Some(acme) = &file.acme else {
        if let Some((key, _)) = wanted.first() {
            v.near(
                0..0,
                key,
                "acme = true needs an [acme] section (directory, storage)",
            );
        }
        return None;
    };
    let acme = acme.get_ref();
    if wanted.is_empty() {
        v.warnings.push(
            "[acme] is configured but no certificate has acme = true: nothing will be obtained"
                .to_string(),
        );
    }
    let directory = acme.directory.get_ref().trim().to_string();
    match directory.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
        _ => v.at(
            &acme.directory,
            "acme.directory",
            "expected the CA's https:// directory URL (the ACME protocol runs over https only)",
        ),
    }
    let challenge = Challenge::parse(acme.challenge.get_ref());
    match challenge {
        None => v.near(
            acme.challenge.span(),
            "acme.challenge",
            "expected \"http-01\" or \"tls-alpn-01\" (DNS-01 is not implemented)",
        ),
        Some(Challenge::Http01) if file.listen.http.is_none() => v.near(
            acme.challenge.span(),
            "acme.challenge",
            "http-01 is answered on the plain-http listener: set listen.http (port 80), or use \"tls-alpn-01\"",
        ),
        Some(_) => {}
    }
    let challenge = challenge.unwrap_or(Challenge::Http01);
    for (key, hosts) in &wanted {
        for host in hosts.iter() {
            if let Some(reason) = crate::acme::config::refuse_host(host, challenge) {
                v.near(0..0, key, reason);
            }
        }
    }
    let storage = match acme.storage.get_ref().trim() {
        "redis" => match &file.rate_limit.redis_url {
            Some(url) => Some(StorageKind::Redis(url.clone())),
            None => {
                v.at(
                    &acme.storage,
                    "acme.storage",
                    "storage = \"redis\" uses [rate_limit].redis_url, which is not set",
                );
                None
            }
        },
        "" => {
            v.at(
                &acme.storage,
                "acme.storage",
                "expected a directory path or \"redis\"",
            );
            None
        }
        path => {
            let path = PathBuf::from(path);
            let usable = match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err("exists and is not a directory".to_string()),
                Err(_) => match path.parent().map(std::fs::metadata) {
                    Some(Ok(parent)) if parent.is_dir() => Ok(()),
                    _ => Err("neither it nor its parent directory exists".to_string()),
                },
            };
            match usable {
                Ok(()) => Some(StorageKind::Dir(path)),
                Err(reason) => {
                    v.at(
                        &acme.storage,
                        "acme.storage",
                        format!("{}: {reason}", path.display()),
                    );
                    None
                }
            }
        }
    };
    if let Some(ca) = &acme.ca_certificates {
        if let Err(err) = std::fs::metadata(ca.get_ref()) {
            v.at(
                ca,
                "acme.ca_certificates",
                format!(
                    "cannot read {}: {}",
                    ca.get_ref().display(),
                    io_reason(&err)
                ),
            );
        }
    }
    let eab = match &acme.eab {
        None => None,
        Some(eab) => match crate::acme::config::decode_base64(&eab.get_ref().hmac_key) {
            Some(hmac_key) if !eab.get_ref().kid.is_empty() => Some(Eab {
                kid: eab.get_ref().kid.clone(),
                hmac_key,
            }),
            _ => {
                v.at(
                    eab,
                    "acme.eab",
                    "expected { kid = \"…\", hmac_key = \"base64url…\" } as the CA gave them",
                );
                None
            }
        },
    };
    let email = acme.email.as_ref().map(|email| {
        let text = email.get_ref().trim();
        let plausible = text
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !plausible {
            v.at(
                email,
                "acme.email",
                "expected an address like \"ops@example.com\"",
            );
        }
        text.to_string()
    });
    if acme.retry_min.0.is_zero() || acme.retry_max.0 < acme.retry_min.0 {
        v.near(
            0..0,
            "acme.retry_min",
            "expected 0 < retry_min <= retry_max (the back-off after a failed order)",
        );
    }
    Some(Arc::new(AcmeSettings {
        timing: crate::acme::Timing {
            backoff_min: acme.retry_min.0,
            backoff_max: acme.retry_max.0,
        },
        directory,
        email,
        storage: storage?,
        challenge,
        ca_certificates: acme.ca_certificates.as_ref().map(|c| c.get_ref().clone()),
        eab,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn directory_and_storage() {
        let dir = tempfile::tempdir().unwrap();
        let acme = |directory: &str| {
            format!(
                "[acme]\ndirectory = \"{directory}\"\nstorage = \"{}\"\nchallenge = \"tls-alpn-01\"\n\n[[tls.certificates]]\nhosts = [\"app.example.org\"]\nacme = true",
                dir.path().display()
            )
        };
        let errors = load(&with(&acme("https://ca.test/dir"))).err();
        assert!(errors.is_none(), "{errors:?}");
        assert_eq!(error_keys(&acme("http://ca.test/dir")), ["acme.directory"]);
        // http-01 is proven on the plain-http listener, which this config has not.
        let http01 = acme("https://ca.test/dir").replace("tls-alpn-01", "http-01");
        assert_eq!(error_keys(&http01), ["acme.challenge"]);
    }
}
