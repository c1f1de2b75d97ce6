//! A route's `basic_auth` (a users file of argon2/bcrypt hashes) or `forward_auth` (an auth
//! server asked first).

#[allow(unused_imports)]
use super::*;

/// A route's `basic_auth` or `forward_auth` (not both). The users file is read here, so a
/// reload rereads it; an unreadable file or a line that is not `name:argon2-or-bcrypt-hash` is
/// an error naming the users file and its line.
pub(super) fn route_auth(
    v: &mut Validator<'_>,
    route: &model::Route,
    prefix: &str,
) -> Option<Auth> {
    use crate::policy::auth::{basic, forward};
    if let (Some(_), Some(forward)) = (&route.basic_auth, &route.forward_auth) {
        v.at(
            forward,
            &format!("{prefix}.forward_auth"),
            "a route takes basic_auth or forward_auth, not both",
        );
        return None;
    }
    if let Some(spanned) = &route.basic_auth {
        let auth = spanned.get_ref();
        let key = format!("{prefix}.basic_auth.users");
        let path = auth.users.get_ref();
        if v.skips_missing() && is_missing(path) {
            v.unseen(&auth.users, &key, path);
            return None;
        }
        v.files.push(path.clone());
        let users = match basic::read_users_file(path) {
            Ok(users) => users,
            Err(errors) => {
                for error in errors {
                    if error.line == 0 {
                        v.at(
                            &auth.users,
                            &key,
                            format!("{}: {}", path.display(), error.message),
                        );
                    } else {
                        let line = v.source.error_at(auth.users.span(), "", "").line;
                        v.errors.push(ConfigError {
                            file: path.display().to_string(),
                            line: error.line,
                            column: 1,
                            key: Some(key.clone()),
                            message: format!(
                                "{} (users file of {}:{line})",
                                error.message, v.source.file
                            ),
                        });
                    }
                }
                return None;
            }
        };
        return match basic::BasicAuth::new(auth.realm.get_ref(), users) {
            Ok(basic) => Some(Auth::Basic(basic)),
            Err(message) => {
                v.at(&auth.realm, &format!("{prefix}.basic_auth.realm"), message);
                None
            }
        };
    }
    if let Some(spanned) = &route.forward_auth {
        let auth = spanned.get_ref();
        return match forward::ForwardAuth::new(
            auth.url.get_ref(),
            &auth.copy_headers,
            auth.timeout.0,
        ) {
            Ok(forward) => Some(Auth::Forward(Box::new(forward))),
            Err(message) => {
                v.at(&auth.url, &format!("{prefix}.forward_auth"), message);
                None
            }
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn users_files_and_auth_urls() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("admin.users");
        std::fs::write(&users, "ops:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap();
        let route = |auth: &str| {
            format!("[upstreams.app]\nservers = [\"http://127.0.0.1:8000\"]\n\n[[routes]]\npath = \"/admin/\"\nupstream = \"app\"\n{auth}")
        };
        let basic = format!(
            "basic_auth = {{ realm = \"admin\", users = {:?} }}",
            users.display().to_string()
        );
        // A SHA-1 line: refused, naming the users file's line.
        let errors = load(&with(&route(&basic))).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "routes[0].basic_auth.users");
        let missing = route("basic_auth = { realm = \"admin\", users = \"/nonexistent/users\" }");
        assert_eq!(error_keys(&missing), ["routes[0].basic_auth.users"]);
        let forward = "forward_auth = { url = \"http://127.0.0.1:9091/api/verify\", copy_headers = [\"Remote-User\"] }";
        assert!(load(&with(&route(forward))).is_ok());
        let both = route(&format!("{basic}\n{forward}"));
        assert_eq!(error_keys(&both), ["routes[0].forward_auth"]);
        let https = route("forward_auth = { url = \"https://auth.example/verify\" }");
        assert_eq!(error_keys(&https), ["routes[0].forward_auth"]);
    }
}
