//! A route's action: `upstream`, `static` (and its `fallback`), `redirect`, `respond`.

#[allow(unused_imports)]
use super::*;

pub(super) fn route_action(
    v: &mut Validator<'_>,
    route: &model::Route,
    span: std::ops::Range<usize>,
    prefix: &str,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    written_upstreams: &BTreeMap<String, model::Upstream>,
) -> Option<Action> {
    let count = [
        route.upstream.is_some(),
        route.static_files.is_some(),
        route.redirect.is_some(),
        route.respond.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count != 1 {
        v.near(
            span,
            prefix,
            "a route has exactly one action: upstream, static, redirect or respond",
        );
        return None;
    }
    if let Some(name) = &route.upstream {
        return match upstreams.get(name.get_ref()) {
            Some(upstream) => Some(Action::Proxy(upstream.clone())),
            // Defined, but invalid: its own error says why, once.
            None if written_upstreams.contains_key(name.get_ref()) => None,
            None => {
                v.at(
                    name,
                    &format!("{prefix}.upstream"),
                    format!("no [upstreams.{}] is defined", name.get_ref()),
                );
                None
            }
        };
    }
    if let Some(files) = &route.static_files {
        return route_static(v, files, &route.path, span, prefix);
    }
    if let Some(redirect) = &route.redirect {
        let status = *redirect.status.get_ref();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            v.at(
                &redirect.status,
                &format!("{prefix}.redirect.status"),
                "a redirect status is 301, 302, 303, 307 or 308",
            );
        }
        return match RedirectTemplate::parse(redirect.to.get_ref()) {
            Ok(to) => Some(Action::Redirect {
                to,
                status: StatusCode::from_u16(status).ok()?,
            }),
            Err(message) => {
                v.at(&redirect.to, &format!("{prefix}.redirect.to"), message);
                None
            }
        };
    }
    if let Some(respond) = &route.respond {
        let status = *respond.status.get_ref();
        let Some(status) = (200..=599)
            .contains(&status)
            .then(|| StatusCode::from_u16(status).ok())
            .flatten()
        else {
            v.at(
                &respond.status,
                &format!("{prefix}.respond.status"),
                "a status between 200 and 599",
            );
            return None;
        };
        let content_type = respond
            .content_type
            .as_deref()
            .unwrap_or("text/plain; charset=utf-8");
        let Ok(content_type) = HeaderValue::from_str(content_type) else {
            v.at(
                &respond.status,
                &format!("{prefix}.respond.content_type"),
                "not a valid header value",
            );
            return None;
        };
        return Some(Action::Respond(Respond {
            status,
            body: Bytes::from(respond.body.clone()),
            content_type,
        }));
    }
    None
}

/// A route's `static`: the root resolved once (every served file's real path must start with
/// it), `deny_extensions` normalized, `index` a plain file name, `fallback` a file in the root.
pub(super) fn route_static(
    v: &mut Validator<'_>,
    files: &model::StaticFiles,
    path: &Spanned<String>,
    span: std::ops::Range<usize>,
    prefix: &str,
) -> Option<Action> {
    let key = format!("{prefix}.static");
    let mut ok = true;
    if !path.get_ref().ends_with('/') {
        v.at(
            path,
            &format!("{prefix}.path"),
            format!(
                "a static route's path ends with '/' (\"{}/\"): the rest of the path names the file",
                path.get_ref()
            ),
        );
        ok = false;
    }
    let root = files.root.get_ref();
    let root = match std::fs::canonicalize(root) {
        Ok(canonical) if canonical.is_dir() => Some(canonical),
        // Checked without the volume: the rest of the route is still validated.
        Err(err) if v.skips_missing() && err.kind() == std::io::ErrorKind::NotFound => {
            v.unseen(&files.root, &format!("{key}.root"), root);
            Some(root.clone())
        }
        Ok(_) => {
            v.at(
                &files.root,
                &format!("{key}.root"),
                format!("{} is not a directory", root.display()),
            );
            None
        }
        Err(err) => {
            v.at(
                &files.root,
                &format!("{key}.root"),
                format!("cannot read {}: {}", root.display(), io_reason(&err)),
            );
            None
        }
    };
    let cache_control = match files.cache_control.as_deref() {
        None | Some("") => None,
        Some(value) => match HeaderValue::from_str(value) {
            Ok(value) => Some(value),
            Err(_) => {
                v.near(
                    span.clone(),
                    &format!("{key}.cache_control"),
                    "not a valid header value",
                );
                ok = false;
                None
            }
        },
    };
    let mut deny_extensions = Vec::new();
    for extension in &files.deny_extensions {
        let normalized = extension
            .trim()
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if normalized.is_empty() || normalized.contains(['/', '\\', '\0']) {
            v.near(
                span.clone(),
                &format!("{key}.deny_extensions"),
                format!("`{extension}` is not a file extension (like \"php\" or \"tar.gz\")"),
            );
            ok = false;
        } else if !deny_extensions.contains(&normalized) {
            deny_extensions.push(normalized);
        }
    }
    if let Some(index) = &files.index {
        if index.is_empty() || index.starts_with('.') || index.contains(['/', '\\', '\0']) {
            v.near(
                span,
                &format!("{key}.index"),
                format!("`{index}` is not a plain file name (like \"index.html\")"),
            );
            ok = false;
        }
    }
    let fallback = match (&files.fallback, &root) {
        (Some(fallback), Some(root)) => {
            let checked = static_fallback(v, fallback, root, &deny_extensions, &key);
            ok &= checked.is_some();
            checked
        }
        _ => None,
    };
    if !ok {
        return None;
    }
    Some(Action::Static(Arc::new(
        StaticFiles::new(root?, cache_control, &deny_extensions, files.index.clone())
            .with_fallback(fallback),
    )))
}

/// A static route's `fallback`: a relative path to a regular file inside the root, neither
/// hidden nor denied, that exists now (a typo would otherwise turn every deep link into a 404
/// only once deployed).
pub(super) fn static_fallback(
    v: &mut Validator<'_>,
    fallback: &Spanned<String>,
    root: &Path,
    deny_extensions: &[String],
    key: &str,
) -> Option<PathBuf> {
    let key = format!("{key}.fallback");
    let text = fallback.get_ref();
    let segments: Vec<&str> = text.split('/').collect();
    let plain = !text.is_empty()
        && !text.contains(['\\', '\0'])
        && segments
            .iter()
            .all(|s| !s.is_empty() && !s.starts_with('.'));
    if !plain {
        v.at(
            fallback,
            &key,
            format!(
                "`{text}` is not a file path relative to the root (like \"index.html\" or \"app/index.html\"): no leading '/', no '.' or '..' segments, no hidden names"
            ),
        );
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if deny_extensions
        .iter()
        .any(|ext| lower.ends_with(&format!(".{ext}")))
    {
        v.at(fallback, &key, format!("`{text}` has a denied extension"));
        return None;
    }
    let path = root.join(text);
    match std::fs::canonicalize(&path) {
        Ok(real) if real.starts_with(root) && real.is_file() => Some(PathBuf::from(text)),
        Ok(real) if !real.starts_with(root) => {
            v.at(
                fallback,
                &key,
                format!("{} leads outside the root", path.display()),
            );
            None
        }
        Ok(_) => {
            v.at(
                fallback,
                &key,
                format!("{} is not a regular file", path.display()),
            );
            None
        }
        Err(err) => {
            v.at(
                fallback,
                &key,
                format!("cannot read {}: {}", path.display(), io_reason(&err)),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn one_action_per_route() {
        assert!(load(&with(
            "[[routes]]\npath = \"/old/\"\nredirect = { to = \"https://example.org/{rest}\" }"
        ))
        .is_ok());
        let two =
            "[[routes]]\npath = \"/x/\"\nrespond = { status = 200 }\nredirect = { to = \"/y\" }";
        let keys = error_keys(two);
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0].starts_with("routes[0]"), "{keys:?}");
        assert_eq!(
            error_keys("[[routes]]\npath = \"/x/\"\nupstream = \"nowhere\""),
            ["routes[0].upstream"]
        );
        assert_eq!(
            error_keys("[[routes]]\npath = \"/x/\"\nrespond = { status = 99 }"),
            ["routes[0].respond.status"]
        );
        let missing_root =
            "[[routes]]\npath = \"/static/\"\nstatic = { root = \"/nonexistent/static\" }";
        assert_eq!(error_keys(missing_root), ["routes[0].static.root"]);
    }
}
