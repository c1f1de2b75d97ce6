//! Stage 8, the `static` action: files under a route's `root`, the way nginx serves Django's
//! collected static files and user uploads, so the app never sees those requests.
//!
//! A request goes: method (GET/HEAD) → [`request_path`] (the raw path checked, mapped to
//! segments below the root) → `deny_extensions` → one blocking task that resolves and opens the
//! file ([`resolve`]: open inside the root, then verify), picks a precompressed sibling
//! ([`encoding`]), evaluates the validators, conditions and Range ([`conditional`]) and reads a
//! small body → the response, whose larger bodies stream in bounded chunks ([`stream`]).
//!
//! With `fallback` (a single-page app's shell, nginx's `try_files $uri $uri/ /index.html`), a
//! GET or HEAD of a path that names nothing serves that file instead, 200 with `no-cache`.
//! Only a plain miss falls back: paths refused before the lookup (escapes, hidden or denied
//! names) and files refused after it (a link leading outside the root or to a denied file)
//! keep their 400/404, and so does a missing path whose last segment has an extension
//! (`/app.3f9c1.js`, with or without a trailing slash): a stale asset URL gets a 404 the
//! browser reports, not HTML it would try to run as a script, and no cache keeps the shell
//! under an asset's URL.

mod conditional;
mod open_cache;
mod request_path;
mod resolve;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::actions::redirect_response;
use crate::body::ResponseBody;
use crate::encoding::{self, Encoding};
use crate::errors::ProxyError;
use crate::path::{encode_path, encode_query};
use conditional::{Conditions, Precondition, RangeAnswer, Validators};
use open_cache::{Check, OpenCache, Stamp};
use request_path::Target;
use resolve::{Found, Opened, ResolveError};
use stream::{read_exact_at, FileBody, CHUNK};

/// A compiled `static = { root, cache_control, deny_extensions, index, fallback }`.
#[derive(Debug)]
pub struct StaticFiles {
    /// Canonical (resolved once at load): every served file's real path starts with it.
    root: PathBuf,
    cache_control: Option<HeaderValue>,
    /// Lowercase suffixes with their dot (`.php`, `.tar.gz`).
    deny_suffixes: Vec<String>,
    /// A plain file name, served for a directory.
    index: Option<String>,
    /// Relative to the root (segments checked at load): served for a path that names nothing.
    fallback: Option<PathBuf>,
    /// Small files' answers, reused while their files are unchanged.
    cache: OpenCache,
}

/// What a page shell is sent with: browsers revalidate it (ETag) on every load, so a deploy's
/// new shell, naming the new assets, is seen at once, whatever the route's `cache_control`.
const FALLBACK_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("no-cache");

impl StaticFiles {
    /// `root` must be canonical; `deny_extensions` lowercase, without the leading dot.
    pub fn new(
        root: PathBuf,
        cache_control: Option<HeaderValue>,
        deny_extensions: &[String],
        index: Option<String>,
    ) -> Self {
        StaticFiles {
            root,
            cache_control,
            deny_suffixes: deny_extensions
                .iter()
                .map(|ext| format!(".{ext}"))
                .collect(),
            index,
            fallback: None,
            cache: OpenCache::default(),
        }
    }

    /// Serves `fallback` (relative to the root, checked by the caller) for paths that name
    /// nothing.
    pub fn with_fallback(mut self, fallback: Option<PathBuf>) -> Self {
        self.fallback = fallback;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers a request the router gave this route. `normalized` is the routed path and
    /// `prefix` the route's path prefix.
    pub async fn serve<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        normalized: &str,
        prefix: &str,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                return Err(ProxyError::MethodNotAllowed {
                    allow: HeaderValue::from_static("GET, HEAD"),
                })
            }
        };
        let target = request_path::target(request.uri().path(), normalized, prefix)?;
        if target.segments.last().is_some_and(|name| self.denied(name)) {
            return Err(ProxyError::FileNotFound);
        }
        let conditions = Conditions::from_headers(request.headers());
        let encodings = encoding::accepted(request.headers());
        let cache_key = open_cache::Key::new(&target.segments, target.trailing_slash, &encodings);
        let plan = match self.cache.get(&cache_key) {
            Some(cached) => respond(
                cached.meta.clone(),
                &cached.validators,
                cached.bytes.len() as u64,
                &conditions,
                head,
                Content::Bytes(cached.bytes.clone()),
            )?,
            None => {
                let lookup = Lookup {
                    target,
                    conditions,
                    encodings,
                    head,
                    cache_key,
                };
                // Every file system call of the request in one blocking task: one hop off the
                // runtime.
                let files = self.clone();
                tokio::task::spawn_blocking(move || files.plan(lookup))
                    .await
                    .map_err(|err| ProxyError::FileSystem(err.to_string()))??
            }
        };
        Ok(match plan {
            Plan::AddSlash => add_slash(normalized, request.uri().query())?,
            Plan::NotModified(meta) => {
                let mut response = Response::new(ResponseBody::empty());
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                self.validator_headers(response.headers_mut(), &meta);
                response
            }
            Plan::Send {
                meta,
                status,
                content_length,
                content_range,
                body,
            } => {
                let body = match body {
                    PlannedBody::Empty => ResponseBody::empty(),
                    PlannedBody::Bytes(bytes) => ResponseBody::full(bytes),
                    PlannedBody::File(file) => ResponseBody::boxed(file),
                };
                let mut response = Response::new(body);
                *response.status_mut() = status;
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, meta.content_type.clone());
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content_length));
                match meta.encoding {
                    Some(encoding) => {
                        headers.insert(header::CONTENT_ENCODING, encoding.content_encoding());
                    }
                    // Ranges are served for the file itself only (see `plan`).
                    None => {
                        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                    }
                }
                if let Some(range) = content_range {
                    headers.insert(header::CONTENT_RANGE, range);
                }
                self.validator_headers(headers, &meta);
                response
            }
        })
    }

    /// What 200, 206 and 304 all carry (RFC 9110 §15.4.5: a 304 repeats ETag, Cache-Control
    /// and Vary).
    fn validator_headers(&self, headers: &mut HeaderMap, meta: &Meta) {
        headers.insert(header::ETAG, meta.etag.clone());
        headers.insert(header::LAST_MODIFIED, meta.last_modified.clone());
        // Every answer may depend on Accept-Encoding (a sibling may appear at any deploy), so
        // a cache must key on it even when no sibling exists today.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if meta.fallback {
            headers.insert(header::CACHE_CONTROL, FALLBACK_CACHE_CONTROL);
        } else if let Some(cache_control) = &self.cache_control {
            headers.insert(header::CACHE_CONTROL, cache_control.clone());
        }
    }

    fn denied(&self, name: &str) -> bool {
        if self.deny_suffixes.is_empty() {
            return false;
        }
        let name = name.to_ascii_lowercase();
        self.deny_suffixes
            .iter()
            .any(|suffix| name.ends_with(suffix.as_str()))
    }

    /// The blocking part: resolve, open, choose the representation, evaluate the conditions;
    /// the fallback when the path names nothing and may fall back.
    fn plan(&self, lookup: Lookup) -> Result<Plan, ProxyError> {
        let Lookup {
            target,
            conditions,
            encodings,
            head,
            cache_key,
        } = lookup;
        let (identity, path, name) = match self.find(&target) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Plan::AddSlash),
            Err(Miss::Refused(err)) => return Err(err),
            Err(Miss::Missing) => {
                return match &self.fallback {
                    Some(fallback) if !looks_like_asset(&target) => {
                        self.plan_fallback(fallback, conditions, encodings, head)
                    }
                    _ => Err(ProxyError::FileNotFound),
                }
            }
        };
        // A link `notes.txt → shell.php` inside the root must not serve the denied file.
        let real_name = identity.real_name.to_string_lossy();
        if self.denied(&name) || self.denied(&real_name) {
            return Err(ProxyError::FileNotFound);
        }
        let found = (identity, path, name);
        self.plan_file(found, conditions, encodings, head, Some(cache_key))
    }

    /// The fallback file, as itself (validators, conditions, precompressed siblings), with
    /// its own cache policy.
    fn plan_fallback(
        &self,
        fallback: &Path,
        conditions: Conditions,
        encodings: Vec<Encoding>,
        head: bool,
    ) -> Result<Plan, ProxyError> {
        let path = self.root.join(fallback);
        let opened = match self.open(&path)? {
            Found::File(opened) if !self.denied(&opened.real_name.to_string_lossy()) => opened,
            _ => return Err(ProxyError::FileNotFound),
        };
        let name = fallback
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut plan = self.plan_file((opened, path, name), conditions, encodings, head, None)?;
        plan.mark_fallback();
        Ok(plan)
    }

    /// The file a target names: `None` for a directory that needs its slash added, a
    /// [`Miss`] when there is nothing to serve.
    fn find(&self, target: &Target) -> Result<Option<FoundFile>, Miss> {
        let mut path = self.root.clone();
        path.extend(&target.segments);
        Ok(Some(match self.lookup(&path)? {
            // `app.css/` names a directory that does not exist.
            Found::File(_) if target.trailing_slash => return Err(Miss::Missing),
            Found::File(opened) => {
                let name = target.segments.last().cloned().unwrap_or_default();
                (opened, path, name)
            }
            Found::Directory => {
                let Some(index) = &self.index else {
                    return Err(Miss::Missing);
                };
                let path = path.join(index);
                let opened = match self.lookup(&path)? {
                    Found::File(opened) => opened,
                    Found::Directory => return Err(Miss::Missing),
                };
                // As nginx does, so relative links in the index resolve against the directory;
                // but only once the index exists, so a 301 does not reveal bare directories.
                if !target.trailing_slash {
                    return Ok(None);
                }
                (opened, path, index.clone())
            }
        }))
    }

    /// Chooses the representation of an opened file and evaluates the request's conditions.
    /// With a `cache_key`, a small file's answer is kept for the requests that follow.
    fn plan_file(
        &self,
        (identity, path, name): FoundFile,
        conditions: Conditions,
        encodings: Vec<Encoding>,
        head: bool,
        cache_key: Option<open_cache::Key>,
    ) -> Result<Plan, ProxyError> {
        // What a cached answer depends on: this path still naming this file, the siblings
        // preferred over the chosen one still missing, the chosen one unchanged.
        let mut checks = vec![Check {
            path: path.clone(),
            expect: Some(Stamp::of(&identity.metadata)),
        }];
        let mut cacheable = cache_key.is_some();
        let mut chosen = (identity, None);
        for encoding in encodings {
            let mut sibling = path.clone().into_os_string();
            sibling.push(encoding.extension());
            let sibling = PathBuf::from(sibling);
            match resolve::open_inside_root(&self.root, &sibling) {
                Ok(Found::File(opened)) => {
                    checks.push(Check {
                        path: sibling,
                        expect: Some(Stamp::of(&opened.metadata)),
                    });
                    chosen = (opened, Some(encoding));
                    break;
                }
                Err(ResolveError::NotFound) => checks.push(Check {
                    path: sibling,
                    expect: None,
                }),
                // Skipped, as a missing sibling is, but not something a `stat` can vouch for.
                Ok(Found::Directory) => cacheable = false,
                Err(err) => {
                    self.refusal(&sibling, err);
                    cacheable = false;
                }
            }
        }
        let (opened, encoding) = chosen;

        let len = opened.metadata.len();
        let validators = Validators::new(
            len,
            opened.metadata.modified().ok(),
            encoding.map_or("", Encoding::etag_suffix),
        );
        let meta = Meta {
            content_type: content_type(&name),
            etag: HeaderValue::from_str(&validators.etag)
                .map_err(|err| ProxyError::FileSystem(err.to_string()))?,
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(
                validators.last_modified,
            ))
            .map_err(|err| ProxyError::FileSystem(err.to_string()))?,
            encoding,
            fallback: false,
        };
        let served = Stamp::of(&opened.metadata);
        let content = match cache_key {
            Some(key)
                if cacheable
                    && len <= open_cache::MAX_FILE
                    && served.is_settled(std::time::SystemTime::now()) =>
            {
                let bytes = read_exact_at(&opened.file, 0, len as usize)
                    .map_err(|err| ProxyError::FileSystem(err.to_string()))?;
                self.cache.insert(
                    key,
                    open_cache::Entry {
                        meta: meta.clone(),
                        validators: validators.clone(),
                        bytes: bytes.clone(),
                        checks,
                    },
                );
                Content::Bytes(bytes)
            }
            _ => Content::File(opened.file),
        };
        respond(meta, &validators, len, &conditions, head, content)
    }

    /// [`Self::open`], telling a plain miss (which may fall back) from a refusal (which may
    /// not).
    fn lookup(&self, path: &Path) -> Result<Found, Miss> {
        resolve::open_inside_root(&self.root, path).map_err(|err| match err {
            ResolveError::NotFound => Miss::Missing,
            refused => Miss::Refused(self.refusal(path, refused)),
        })
    }

    fn open(&self, path: &Path) -> Result<Found, ProxyError> {
        resolve::open_inside_root(&self.root, path).map_err(|err| self.refusal(path, err))
    }

    fn refusal(&self, path: &Path, err: ResolveError) -> ProxyError {
        match err {
            ResolveError::NotFound | ResolveError::Hidden => ProxyError::FileNotFound,
            ResolveError::Outside(real) => {
                tracing::warn!(
                    root = %self.root.display(),
                    target = %real.display(),
                    "static: a path under the root leads outside it (symlink); refused"
                );
                ProxyError::FileNotFound
            }
            ResolveError::PermissionDenied => {
                tracing::warn!(path = %path.display(), "static: permission denied; answered 404");
                ProxyError::FileNotFound
            }
            ResolveError::Io(err) => ProxyError::FileSystem(format!("{}: {err}", path.display())),
        }
    }
}

/// An opened file, the path it was opened by, and the name its type is taken from.
type FoundFile = (Box<Opened>, PathBuf, String);

/// Why a target has nothing to serve.
enum Miss {
    /// Nothing there: the fallback, if any, is served.
    Missing,
    /// Something there that must not be served, or an I/O failure: answered as it is.
    Refused(ProxyError),
}

/// A missing path whose last segment has an extension is a missing asset, not a page.
fn looks_like_asset(target: &Target) -> bool {
    target
        .segments
        .last()
        .is_some_and(|name| name.contains('.'))
}

/// What the blocking task needs from the request, owned.
struct Lookup {
    target: Target,
    conditions: Conditions,
    encodings: Vec<Encoding>,
    head: bool,
    cache_key: open_cache::Key,
}

enum Plan {
    /// A directory with an index was asked for without its trailing slash.
    AddSlash,
    NotModified(Meta),
    Send {
        meta: Meta,
        status: StatusCode,
        content_length: u64,
        content_range: Option<HeaderValue>,
        body: PlannedBody,
    },
}

impl Plan {
    /// The representation is the fallback file, served for another path.
    fn mark_fallback(&mut self) {
        match self {
            Plan::AddSlash => {}
            Plan::NotModified(meta) | Plan::Send { meta, .. } => meta.fallback = true,
        }
    }
}

enum PlannedBody {
    /// HEAD: the headers of a GET, no body.
    Empty,
    /// Up to one chunk, read while the file was opened.
    Bytes(Bytes),
    File(FileBody),
}

/// The chosen representation's headers.
#[derive(Debug, Clone)]
struct Meta {
    content_type: HeaderValue,
    etag: HeaderValue,
    last_modified: HeaderValue,
    encoding: Option<Encoding>,
    /// Served as the fallback: `no-cache` instead of the route's `cache_control`.
    fallback: bool,
}

/// A representation's bytes: the opened file, or all of it already read.
enum Content {
    File(std::fs::File),
    Bytes(Bytes),
}

/// Evaluates the request's conditions, Range and HEAD against a chosen representation.
fn respond(
    meta: Meta,
    validators: &Validators,
    len: u64,
    conditions: &Conditions,
    head: bool,
    content: Content,
) -> Result<Plan, ProxyError> {
    match conditional::evaluate(conditions, validators) {
        Precondition::Failed => return Err(ProxyError::PreconditionFailed),
        Precondition::NotModified => return Ok(Plan::NotModified(meta)),
        Precondition::Proceed => {}
    }

    // Range is defined for GET only (RFC 9110 §14.2). A precompressed variant is always sent
    // whole: ranges of it would be ranges of the compressed bytes, which a client resuming a
    // download of the file cannot use.
    let answer = if head || meta.encoding.is_some() {
        RangeAnswer::Whole
    } else {
        conditional::range(conditions, validators, len)
    };
    let (status, start, content_length, content_range) = match answer {
        RangeAnswer::Whole => (StatusCode::OK, 0, len, None),
        RangeAnswer::Part { start, end } => {
            let range = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                .map_err(|err| ProxyError::FileSystem(err.to_string()))?;
            (
                StatusCode::PARTIAL_CONTENT,
                start,
                end - start + 1,
                Some(range),
            )
        }
        RangeAnswer::Unsatisfiable => return Err(ProxyError::RangeNotSatisfiable { length: len }),
    };
    let body = match content {
        _ if head => PlannedBody::Empty,
        Content::Bytes(bytes) => {
            let (start, end) = (start as usize, (start + content_length) as usize);
            if end > bytes.len() {
                return Err(ProxyError::FileSystem(
                    "range beyond the cached file".into(),
                ));
            }
            PlannedBody::Bytes(bytes.slice(start..end))
        }
        Content::File(file) if content_length <= CHUNK as u64 => {
            // One read here saves the streaming body its own trip to a blocking thread.
            let bytes = read_exact_at(&file, start, content_length as usize)
                .map_err(|err| ProxyError::FileSystem(err.to_string()))?;
            PlannedBody::Bytes(bytes)
        }
        Content::File(file) => PlannedBody::File(FileBody::new(file, start, content_length)),
    };
    Ok(Plan::Send {
        meta,
        status,
        content_length,
        content_range,
        body,
    })
}

/// 301 to the directory with its slash; the query string is kept. The path is the normalized
/// one (it starts with a single `/`, so the Location stays on this site), percent-encoded.
fn add_slash(normalized: &str, query: Option<&str>) -> Result<Response<ResponseBody>, ProxyError> {
    let mut location = String::with_capacity(normalized.len() + 1);
    encode_path(normalized, &mut location);
    location.push('/');
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        location.push('?');
        encode_query(query, &mut location);
    }
    let location = HeaderValue::from_str(&location)
        .map_err(|_| ProxyError::BadRequest("path not representable in Location"))?;
    Ok(redirect_response(StatusCode::MOVED_PERMANENTLY, location))
}

/// By extension; `; charset=utf-8` for text; `application/octet-stream` when unknown (with
/// `nosniff`, browsers then download rather than guess).
fn content_type(name: &str) -> HeaderValue {
    let Some(mime) = mime_guess::from_path(name).first_raw() else {
        return HeaderValue::from_static("application/octet-stream");
    };
    let text = mime.starts_with("text/")
        || mime.ends_with("+xml")
        || mime.ends_with("+json")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/xml"
        );
    if !text {
        return HeaderValue::from_static(mime);
    }
    HeaderValue::from_str(&format!("{mime}; charset=utf-8"))
        .unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ct = |name| content_type(name).to_str().unwrap().to_string();
        assert_eq!(ct("app.css"), "text/css; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("app.mjs"), "application/javascript; charset=utf-8");
        assert_eq!(ct("data.json"), "application/json; charset=utf-8");
        assert_eq!(ct("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(
            ct("site.webmanifest"),
            "application/manifest+json; charset=utf-8"
        );
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("photo.JPG"), "image/jpeg");
        assert_eq!(ct("font.woff2"), "font/woff2");
        assert_eq!(ct("blob.unknownext"), "application/octet-stream");
        assert_eq!(ct("README"), "application/octet-stream");
    }

    #[test]
    fn deny_extensions_match_suffixes_case_insensitively() {
        let files = StaticFiles::new(
            PathBuf::from("/"),
            None,
            &["php".into(), "tar.gz".into()],
            None,
        );
        assert!(files.denied("shell.php"));
        assert!(files.denied("SHELL.PhP"));
        assert!(files.denied("a.tar.gz"));
        assert!(!files.denied("a.gz"));
        assert!(!files.denied("php"));
        assert!(!files.denied("shell.php.txt"));
    }
}
