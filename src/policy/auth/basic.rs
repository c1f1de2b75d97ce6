//! `basic_auth`: HTTP Basic authentication (RFC 7617) against a users file of argon2 or bcrypt
//! hashes.
//!
//! The file is read with the config (and reloads with it); a line in any other format is refused
//! at load. Hashes are slow on purpose, so a check runs on tokio's blocking pool, never on a
//! worker thread, and at most [`Verifier`]'s permits run at once: a flood of guesses waits its
//! turn (or gets 503 when too many already wait) while the proxy keeps serving other routes. An
//! unknown user is checked against a real hash of the file (the same work) and always fails.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use tokio::sync::Semaphore;

/// One stored password hash. Only these two families are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$argon2id$v=19$m=…,t=…,p=…$salt$hash` (argon2i and argon2d too).
    Argon2(String),
    /// `$2y$`, `$2b$` or `$2a$` bcrypt.
    Bcrypt(String),
}

impl PasswordHash {
    /// Parses a stored hash; the error says what is wrong, for the users file's line.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        if text.starts_with("$argon2") {
            let parsed = argon2::PasswordHash::new(text)
                .map_err(|err| format!("not a valid argon2 hash ({err})"))?;
            argon2::Algorithm::try_from(parsed.algorithm)
                .map_err(|_| "not an argon2 hash (argon2id, argon2i or argon2d)".to_string())?;
            argon2::Params::try_from(&parsed)
                .map_err(|err| format!("argon2 parameters out of range ({err})"))?;
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err("argon2 hash without salt or output".into());
            }
            return Ok(PasswordHash::Argon2(text.to_string()));
        }
        if ["$2y$", "$2b$", "$2a$"].iter().any(|p| text.starts_with(p)) {
            text.parse::<bcrypt::HashParts>()
                .map_err(|err| format!("not a valid bcrypt hash ({err})"))?;
            return Ok(PasswordHash::Bcrypt(text.to_string()));
        }
        let shown = if text.starts_with("$apr1$") {
            "an Apache MD5 ($apr1$) hash"
        } else if text.starts_with("{SHA}") {
            "an unsalted SHA-1 ({SHA}) hash"
        } else if text.starts_with("$1$") || text.starts_with("$5$") || text.starts_with("$6$") {
            "a crypt(3) MD5/SHA hash"
        } else if text.starts_with('$') {
            "an unsupported hash"
        } else {
            "plain text or crypt(3) DES"
        };
        Err(format!(
            "{shown}: only argon2 (\"$argon2id$…\", from `rampart hash-password`) and bcrypt (\"$2y$…\", `htpasswd -B`) are accepted"
        ))
    }

    /// The slow check. Blocking: call it through [`Verifier`].
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Argon2(text) => {
                use argon2::PasswordVerifier;
                match argon2::PasswordHash::new(text) {
                    Ok(parsed) => argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok(),
                    Err(_) => false,
                }
            }
            PasswordHash::Bcrypt(text) => bcrypt::verify(password, text).unwrap_or(false),
        }
    }
}

/// A users file line that is not `name:hash` with an accepted hash: its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersFileError {
    pub line: usize,
    pub message: String,
}

/// The users of one `basic_auth`, parsed from `name:hash` lines (`#` comments and blank lines
/// skipped).
pub fn parse_users(text: &str) -> Result<Vec<(String, PasswordHash)>, Vec<UsersFileError>> {
    let mut users = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            errors.push(UsersFileError {
                line: line_no,
                message: "expected `name:hash`".into(),
            });
            continue;
        };
        if name.is_empty() || name.chars().any(|c| c.is_control()) {
            errors.push(UsersFileError {
                line: line_no,
                message: "empty user name or control characters in it".into(),
            });
            continue;
        }
        if users.iter().any(|(n, _)| n == name) {
            errors.push(UsersFileError {
                line: line_no,
                message: format!("user `{name}` is listed twice"),
            });
            continue;
        }
        match PasswordHash::parse(hash) {
            Ok(hash) => users.push((name.to_string(), hash)),
            Err(message) => errors.push(UsersFileError {
                line: line_no,
                message,
            }),
        }
    }
    if users.is_empty() && errors.is_empty() {
        errors.push(UsersFileError {
            line: 1,
            message: "no users: the route would refuse everyone".into(),
        });
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(errors)
    }
}

/// A route's `basic_auth`, compiled.
#[derive(Debug)]
pub struct BasicAuth {
    /// `Basic realm="…", charset="UTF-8"` for the 401's `WWW-Authenticate`.
    pub challenge: HeaderValue,
    users: HashMap<String, Arc<PasswordHash>>,
    /// Checked for an unknown user, so that it costs what a wrong password costs.
    dummy: Arc<PasswordHash>,
}

/// Why a request did not pass `basic_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, malformed ones, an unknown user or a wrong password: 401.
    Unauthorized,
    /// Too many checks already wait for the hashing threads: 503 (the client may retry).
    Busy,
}

impl BasicAuth {
    /// `realm` must be a printable ASCII string without `"` or `\`.
    pub fn new(realm: &str, users: Vec<(String, PasswordHash)>) -> Result<BasicAuth, String> {
        if realm.is_empty()
            || !realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err("the realm must be printable ASCII without `\"` or `\\`".into());
        }
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
                .map_err(|_| "the realm is not a valid header value".to_string())?;
        let Some(dummy) = users.first().map(|(_, hash)| Arc::new(hash.clone())) else {
            return Err("no users".into());
        };
        Ok(BasicAuth {
            challenge,
            users: users
                .into_iter()
                .map(|(name, hash)| (name, Arc::new(hash)))
                .collect(),
            dummy,
        })
    }

    /// Checks the request's `Authorization`. On success the header is removed, so the
    /// credential never travels upstream.
    pub async fn check(&self, headers: &mut HeaderMap) -> Result<(), Refusal> {
        let Some((user, password)) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| parse_basic(value.as_bytes()))
        else {
            return Err(Refusal::Unauthorized);
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let matched = verifier().verify(hash, password).await?;
        if matched && known {
            headers.remove(header::AUTHORIZATION);
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }
}

/// `Basic base64(user:password)` (RFC 7617 §2): the scheme is case-insensitive, the user may
/// not hold `:`, the password may. `None` for anything else.
pub fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    if user.is_empty() {
        return None;
    }
    Some((user, decoded[colon + 1..].to_vec()))
}

/// How long a check may wait for a hashing thread before the client gets 503.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Checks that may wait at once; more are refused at once with 503.
const QUEUE_MAX: usize = 256;

/// The process-wide bound on password hashing: at most half the cores (at least one) hash at
/// once, so the workers keep the rest of the machine.
pub struct Verifier {
    permits: Semaphore,
    waiting: AtomicUsize,
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier::new((cores / 2).max(1))
    })
}

/// Decrements the waiting count however the wait ends (cancelled included).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Verifier {
    pub fn new(permits: usize) -> Verifier {
        Verifier {
            permits: Semaphore::new(permits),
            waiting: AtomicUsize::new(0),
        }
    }

    async fn verify(&self, hash: Arc<PasswordHash>, password: Vec<u8>) -> Result<bool, Refusal> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= QUEUE_MAX {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy);
        }
        let waiting = Waiting(&self.waiting);
        let permit = match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(Refusal::Busy),
        };
        drop(waiting);
        // The permit is held until the hash is done, even if the client goes away: a cancelled
        // request must not free a slot while its hash still runs.
        let result = tokio::task::spawn_blocking(move || hash.verify(&password)).await;
        drop(permit);
        result.map_err(|_| Refusal::Busy)
    }
}

/// `rampart hash-password`: an argon2id hash of `password` with the crate's defaults (OWASP's
/// m=19456 KiB, t=2, p=1) and a random salt.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "the system random source failed".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| err.to_string())?;
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| err.to_string())
}

/// Reads and parses a users file for validation.
pub fn read_users_file(path: &Path) -> Result<Vec<(String, PasswordHash)>, Vec<UsersFileError>> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        vec![UsersFileError {
            line: 0,
            message: format!("cannot read the users file: {err}"),
        }]
    })?;
    parse_users(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2y$04$lJvQ2SXj3eJ8aIr0W2H2JuBfpcUoSjd4ru4RXQXaHkGwHcA/GSPZu";

    #[test]
    fn argon2_round_trip_and_refused_formats() {
        let hash = hash_password(b"s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let parsed = PasswordHash::parse(&hash).unwrap();
        assert!(parsed.verify(b"s3cret"));
        assert!(!parsed.verify(b"wrong"));
        for refused in [
            "$apr1$abc$def",
            "{SHA}abc=",
            "plain",
            "$6$salt$hash",
            "$argon2id$garbage",
        ] {
            assert!(PasswordHash::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn bcrypt_verifies() {
        let hash = bcrypt::hash_with_salt("pw", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let parsed = PasswordHash::parse(&hash).unwrap();
        assert!(parsed.verify(b"pw"));
        assert!(!parsed.verify(b"pW"));
        assert!(PasswordHash::parse(BCRYPT).is_ok());
    }

    #[test]
    fn users_file_lines() {
        let text = format!("# admins\n\nalice:{BCRYPT}\nbob:$apr1$x$y\ncarol\n");
        let errors = parse_users(&text).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert!(parse_users("# nobody\n").is_err());
    }

    #[test]
    fn authorization_forms() {
        let ok = |s: &str| parse_basic(s.as_bytes());
        assert_eq!(
            ok("Basic YWxpY2U6cDpx"),
            Some(("alice".to_string(), b"p:q".to_vec()))
        );
        assert_eq!(
            ok("basic YWxpY2U6cDpx").map(|(u, _)| u),
            Some("alice".into())
        );
        assert_eq!(ok("Bearer YWxpY2U6cDpx"), None);
        assert_eq!(ok("Basic !!!"), None);
        assert_eq!(ok("Basic YWxpY2U="), None); // no colon
        assert_eq!(ok("Basic"), None);
        assert_eq!(ok("Basic OnB3"), None); // empty user
    }
}
