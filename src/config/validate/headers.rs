//! `[headers]` and a route's `headers`: presets, then the keys written.

#[allow(unused_imports)]
use super::*;

/// The `[headers]` layer: preset, then the keys written. Returns the builder (routes merge over
/// it) and the compiled default policy.
pub(super) fn headers(
    v: &mut Validator<'_>,
    headers: &model::Headers,
) -> (HeaderPolicyBuilder, crate::policy::headers::HeaderPolicy) {
    let preset = Preset::parse(headers.preset.get_ref()).unwrap_or_else(|| {
        v.at(
            &headers.preset,
            "headers.preset",
            "expected \"strict\", \"basic\" or \"off\"",
        );
        Preset::Strict
    });
    let mut builder = HeaderPolicyBuilder::from_preset(preset);
    builder.csp_reports(headers.csp_reports);
    apply_header_layer(
        v,
        &mut builder,
        "headers",
        &headers.security_headers(),
        &headers.set,
        headers.remove.as_deref(),
    );
    let policy = builder.build();
    (builder, policy)
}

pub(super) fn apply_header_layer(
    v: &mut Validator<'_>,
    builder: &mut HeaderPolicyBuilder,
    prefix: &str,
    security: &model::SecurityHeaders<'_>,
    set: &BTreeMap<String, Spanned<String>>,
    remove: Option<&[String]>,
) {
    for (key, value) in security.iter() {
        let Some(value) = value else { continue };
        let name = SECURITY_HEADER_KEYS
            .iter()
            .find(|(k, _)| k == key)
            .map_or(*key, |(_, name)| *name);
        if *key == "strict_transport_security"
            && !value.get_ref().is_empty()
            && !value.get_ref().to_ascii_lowercase().contains("max-age=")
        {
            v.at(value, &format!("{prefix}.{key}"), "HSTS needs max-age (RFC 6797 §6.1.1), e.g. \"max-age=31536000; includeSubDomains\"");
            continue;
        }
        if let Err(err) = builder.set(name, value.get_ref()) {
            v.at(value, &format!("{prefix}.{key}"), err.to_string());
        }
    }
    for (name, value) in set {
        if let Err(err) = builder.set(name, value.get_ref()) {
            v.at(value, &format!("{prefix}.set.{name}"), err.to_string());
        }
    }
    if let Some(remove) = remove {
        if let Err(err) = builder.remove(remove) {
            v.near(0..0, &format!("{prefix}.remove"), err.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn presets_hsts_and_custom_headers() {
        assert!(load(&with(
            "[headers]\npreset = \"basic\"\nset = { \"X-Robots-Tag\" = \"noindex\" }"
        ))
        .is_ok());
        assert_eq!(
            error_keys("[headers]\npreset = \"loose\""),
            ["headers.preset"]
        );
        assert_eq!(
            error_keys("[headers]\nstrict_transport_security = \"includeSubDomains\""),
            ["headers.strict_transport_security"]
        );
        assert_eq!(
            error_keys("[headers]\nset = { \"Bad Name\" = \"x\" }"),
            ["headers.set.Bad Name"]
        );
    }
}
