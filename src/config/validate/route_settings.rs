//! A route's settings beside its action: `response_timeout`, `cors`, `compress`, `forward_path`.

#[allow(unused_imports)]
use super::*;

/// A route's `response_timeout`: only for an upstream route, and more than 0s.
pub(super) fn route_response_timeout(
    v: &mut Validator<'_>,
    route: &model::Route,
    prefix: &str,
) -> Option<std::time::Duration> {
    let timeout = route.response_timeout.as_ref()?;
    let key = format!("{prefix}.response_timeout");
    if route.upstream.is_none() {
        v.at(
            timeout,
            &key,
            "only an upstream route waits for a response; remove it here",
        );
        return None;
    }
    if timeout.get_ref().0.is_zero() {
        v.at(timeout, &key, "must be more than 0s");
        return None;
    }
    Some(timeout.get_ref().0)
}

/// A route's `cors`; every error names its key (`routes[0].cors.allow_origins`) and, for an
/// origin, that origin's line.
pub(super) fn route_cors(
    v: &mut Validator<'_>,
    cors: &model::Cors,
    span: std::ops::Range<usize>,
    prefix: &str,
) -> Option<CorsPolicy> {
    let rules = CorsRules {
        allow_origins: cors
            .allow_origins
            .iter()
            .map(|origin| origin.get_ref().clone())
            .collect(),
        allow_methods: cors.allow_methods.clone(),
        allow_headers: cors.allow_headers.clone(),
        allow_credentials: cors.allow_credentials,
        max_age: cors.max_age.map(|d| d.0),
    };
    let errors = match CorsPolicy::new(&rules) {
        Ok(policy) => return Some(policy),
        Err(errors) => errors,
    };
    for error in errors {
        let key = format!("{prefix}.cors.{}", error.key);
        match error.index.and_then(|i| cors.allow_origins.get(i)) {
            Some(origin) if origin.span() != (0..0) => v.at(origin, &key, error.message),
            _ => v.near(span.clone(), &key, error.message),
        }
    }
    None
}

/// `compress`: on by default for upstream routes. Only proxied responses are compressed, so
/// `compress = true` elsewhere is refused rather than silently doing nothing.
pub(super) fn route_compress(v: &mut Validator<'_>, route: &model::Route, prefix: &str) -> bool {
    let proxied = route.upstream.is_some();
    match &route.compress {
        None => proxied,
        Some(compress) if *compress.get_ref() && !proxied => {
            v.at(
                compress,
                &format!("{prefix}.compress"),
                "only responses from an upstream are compressed; a static route serves precompressed .br/.gz files, and redirect and respond answers are small",
            );
            false
        }
        Some(compress) => *compress.get_ref(),
    }
}

/// `forward_path`: `"normalized"` (the default) or `"raw"`, on upstream routes only (the other
/// actions never forward a path).
pub(super) fn route_forward_path(
    v: &mut Validator<'_>,
    route: &model::Route,
    prefix: &str,
) -> bool {
    let Some(mode) = &route.forward_path else {
        return false;
    };
    let key = format!("{prefix}.forward_path");
    if route.upstream.is_none() {
        v.at(mode, &key, "only an upstream route forwards a path");
        return false;
    }
    match mode.get_ref().as_str() {
        "normalized" => false,
        "raw" => true,
        other => {
            v.at(
                mode,
                &key,
                format!("`{other}` is not a mode: \"normalized\" (the default) or \"raw\""),
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn cors_compress_forward_path_and_timeouts() {
        let route = |settings: &str| {
            format!("[upstreams.app]\nservers = [\"http://127.0.0.1:8000\"]\n\n[[routes]]\npath = \"/api/\"\nupstream = \"app\"\n{settings}")
        };
        assert!(load(&with(&route(
            "compress = false\nforward_path = \"raw\"\nresponse_timeout = \"5s\""
        )))
        .is_ok());
        assert_eq!(
            error_keys(&route(
                "cors = { allow_origins = [\"*\"], allow_credentials = true }"
            )),
            ["routes[0].cors.allow_origins"]
        );
        assert_eq!(
            error_keys(&route("forward_path = \"as-is\"")),
            ["routes[0].forward_path"]
        );
        let respond = "[[routes]]\npath = \"/x/\"\nrespond = { status = 200 }\ncompress = true";
        assert_eq!(error_keys(respond), ["routes[0].compress"]);
    }
}
