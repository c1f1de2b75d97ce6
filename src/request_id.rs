//! The request id: the client's `X-Request-Id` when it is a sane token, else a new random one.
//! Set on the request sent upstream and on every response, including the listener's own
//! refusals.

use http::header::{HeaderMap, HeaderValue};

use crate::header_names::X_REQUEST_ID;

/// The client's X-Request-Id when it is a sane token (1–128 of `[A-Za-z0-9._-]`), else a new one.
/// `pub(crate)` for `fuzzing`.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        let bytes = id.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return id.clone();
        }
    }
    new_request_id()
}

/// The id as the response carries it: marked sensitive, so that HTTP/2's HPACK encoder sends it
/// as a literal never indexed. A value that differs on every response is never worth indexing,
/// and indexed it would fill the connection's 4 KiB dynamic table (about 80 bytes a response),
/// evicting the security headers that repeat on every response and lengthening the chain the
/// encoder compares each new id against: measured under callgrind, 76,562 → 74,313
/// instructions per HTTP/2 request (docs/performance.md). HTTP/1.1 ignores the mark.
pub fn for_response(mut id: HeaderValue) -> HeaderValue {
    id.set_sensitive(true);
    id
}

/// 32 lowercase hex digits (a random UUID).
pub fn new_request_id() -> HeaderValue {
    let mut buffer = [0u8; 32];
    let id = uuid::Uuid::new_v4().simple().encode_lower(&mut buffer);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_copy_is_never_indexed_by_hpack() {
        let id = new_request_id();
        assert!(
            !id.is_sensitive(),
            "the copy sent upstream and logged is plain"
        );
        let sent = for_response(id.clone());
        assert!(sent.is_sensitive());
        assert_eq!(sent.as_bytes(), id.as_bytes());
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123.x_y"));
        assert_eq!(request_id(&headers), "abc-123.x_y");
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("bad id<script>"));
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 32);
        assert!(generated.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
    }
}
