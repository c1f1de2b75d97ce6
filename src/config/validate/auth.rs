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
