//! The request-smuggling and malformed-request catalogue: raw HTTP/1.1 variants sent over TLS,
//! each against its own rampart in front of a [`ByteRecorder`] that keeps the exact bytes it
//! receives.
//!
//! For every variant: the statuses the client gets, exactly; rampart's own answers carry the
//! security headers, a request id and the plain body; the upstream receives exactly the
//! expected complete requests (request line and body), no request line containing
//! `/smuggled`, and nothing that two parsers could read two ways (strict CRLF head, no
//! obs-fold, no control bytes, no `_` in names, one framing header matching the body); then a
//! fresh request on a new connection is still served.
//!
//! `cargo test --test it attack_catalogue:: -- --nocapture` prints the table. The same variants
//! against nginx: `bash benches/attacks/compare_nginx.sh` (the `#[ignore]`d
//! `compare_with_nginx` below).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::byte_recorder::{ByteRecorder, ForwardedRequest};
use common::*;
use tokio::io::AsyncWriteExt;

/// Where a smuggled request would show: no request line at the upstream may contain it.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
/// A body that reads like framing header lines and a request to a parser that lost its place.
const FRAMING_TEXT: &str =
    "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nGET /smuggled-too HTTP/1.1\r\n\r\n";
/// How long a client waits for the server to close (rampart closes idle keep-alive
/// connections after `header_timeout` = 1 s; the catalogue's nginx after 1 s too).
const READ_LIMIT: Duration = Duration::from_secs(6);

type Check = fn(&[ForwardedRequest]) -> Result<(), String>;

#[derive(Clone)]
struct Expect {
    /// Every status the client receives, in order.
    statuses: Vec<u16>,
    /// The complete requests the upstream receives: request line and body content.
    forwarded: Vec<(String, Vec<u8>)>,
    /// The upstream may also see a request that never completes (a streamed body that broke
    /// off: rampart forwards the head before the body fails, then aborts the upstream request).
    partial_ok: bool,
    /// More about what reached the upstream.
    check: Option<Check>,
}

impl Expect {
    fn statuses(mut self, statuses: &[u16]) -> Self {
        self.statuses = statuses.to_vec();
        self
    }

    fn partial(mut self) -> Self {
        self.partial_ok = true;
        self
    }

    fn check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }

    fn describe(&self) -> String {
        describe(&self.statuses, self.forwarded.len())
    }
}

/// rampart answers `status` itself; nothing reaches the upstream.
fn refused(status: u16) -> Expect {
    Expect {
        statuses: vec![status],
        forwarded: Vec::new(),
        partial_ok: false,
        check: None,
    }
}

/// Each request reaches the upstream complete and is answered 200.
fn forwarded(requests: &[(&str, &[u8])]) -> Expect {
    Expect {
        statuses: vec![200; requests.len()],
        forwarded: requests
            .iter()
            .map(|(line, body)| (line.to_string(), body.to_vec()))
            .collect(),
        partial_ok: false,
        check: None,
    }
}

struct Variant {
    family: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn variant(
    family: &'static str,
    name: &'static str,
    bytes: impl AsRef<[u8]>,
    expect: Expect,
) -> Variant {
    Variant {
        family,
        name,
        bytes: bytes.as_ref().to_vec(),
        expect,
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `POST / HTTP/1.1` with `Host: localhost`, the given header lines and raw body.
fn post(headers: &str, body: &[u8]) -> Vec<u8> {
    cat(&[
        format!("POST / HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").as_bytes(),
        body,
    ])
}

/// A GET with one extra raw header line (CRLF added).
fn get_with(line: &[u8]) -> Vec<u8> {
    cat(&[b"GET / HTTP/1.1\r\nHost: localhost\r\n", line, b"\r\n\r\n"])
}

/// A chunked POST whose body section is `body` exactly.
fn chunked(body: &[u8]) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// `Content-Length: 6` and an obfuscated `Transfer-Encoding` line: an empty chunked body, then
/// a request that a CL reader would take as part of the body and a TE reader as the next one.
fn cl_te(te_line: &str) -> Vec<u8> {
    post(
        &format!("Content-Length: 6\r\n{te_line}\r\n"),
        format!("0\r\n\r\n{SMUGGLED}").as_bytes(),
    )
}

fn one_header(requests: &[ForwardedRequest], name: &str, want: &str) -> Result<(), String> {
    for request in requests {
        let got = request.header_all(name);
        if got != [want] {
            return Err(format!("{name}: {got:?}, expected [{want:?}]"));
        }
    }
    Ok(())
}

fn no_header(requests: &[ForwardedRequest], name: &str) -> Result<(), String> {
    match requests.iter().find(|r| !r.header_all(name).is_empty()) {
        Some(r) => Err(format!("{name} reached the upstream: {:?}", r.line())),
        None => Ok(()),
    }
}

fn catalogue() -> Vec<Variant> {
    let smuggled_chunk = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let long_value = "a".repeat(20 * 1024);
    let huge_value = "a".repeat(40 * 1024);
    vec![
        // --- baselines: the harness sees what a correct exchange looks like ---
        variant("baseline", "GET", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET / HTTP/1.1", b"")])),
        variant(
            "baseline",
            "two pipelined GETs",
            "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\nGET /two HTTP/1.1\r\nHost: localhost\r\n\r\n",
            forwarded(&[("GET /one HTTP/1.1", b""), ("GET /two HTTP/1.1", b"")]),
        ),
        variant("baseline", "POST with Content-Length", post("Content-Length: 5\r\n", b"hello"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant("baseline", "POST chunked", chunked(b"5\r\nhello\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant(
            "baseline",
            "HTTP/1.0 POST with Content-Length",
            "POST / HTTP/1.0\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
            forwarded(&[("POST / HTTP/1.1", b"hello")]),
        ),
        // --- Content-Length and Transfer-Encoding together, both orders: 400 and close, as nginx
        //     (hyper would drop the Content-Length; rampart sees it on the bytes) ---
        variant(
            "CL+TE",
            "CL then TE (CL.TE), smuggled after the last chunk",
            post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", format!("0\r\n\r\n{SMUGGLED}").as_bytes()),
            refused(400),
        ),
        variant(
            "CL+TE",
            "TE then CL (TE.CL), smuggled inside a chunk",
            post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", smuggled_chunk.as_bytes()),
            refused(400),
        ),
        variant(
            "CL+TE",
            "CL: 0 then TE, smuggled inside a chunk",
            post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", smuggled_chunk.as_bytes()),
            refused(400),
        ),
        variant(
            "CL+TE",
            "large CL then TE, smuggled after the last chunk",
            post("Content-Length: 100\r\nTransfer-Encoding: chunked\r\n", format!("0\r\n\r\n{SMUGGLED}").as_bytes()),
            refused(400),
        ),
        variant(
            "CL+TE",
            "TE: Chunked (case) with CL",
            post("Transfer-Encoding: Chunked\r\nContent-Length: 4\r\n", smuggled_chunk.as_bytes()),
            refused(400),
        ),
        variant(
            "CL+TE",
            "a GET, then CL+TE on the same connection",
            format!(
                "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n{}",
                String::from_utf8_lossy(&post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", format!("0\r\n\r\n{SMUGGLED}").as_bytes()))
            ),
            forwarded(&[("GET /one HTTP/1.1", b"")]).statuses(&[200, 400]),
        ),
        variant(
            "CL+TE",
            "framing headers in a body, then a GET (no false alarm)",
            cat(&[
                &post(&format!("Content-Length: {}\r\n", FRAMING_TEXT.len()), FRAMING_TEXT.as_bytes()),
                b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n",
            ]),
            forwarded(&[("POST / HTTP/1.1", FRAMING_TEXT.as_bytes()), ("GET /after HTTP/1.1", b"")]),
        ),
        variant(
            "CL+TE",
            "chunk extensions and framing trailers, then repeated CL",
            cat(&[
                &chunked(b"5;ext=1\r\nhello\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
                &post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
            ]),
            forwarded(&[("POST / HTTP/1.1", b"hello")]).statuses(&[200, 400]),
        ),
        // --- repeated or malformed Content-Length ---
        // Two equal lengths: hyper would keep one (RFC 9110 §8.6 allows it); 400, as nginx.
        variant("Content-Length", "repeated, equal", post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "repeated, different", post("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), refused(400)),
        variant("Content-Length", "list of equal values", post("Content-Length: 5, 5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "list of different values", post("Content-Length: 5, 6\r\n", b"hello!"), refused(400)),
        variant("Content-Length", "letters", post("Content-Length: abc\r\n", b"hello"), refused(400)),
        variant("Content-Length", "negative", post("Content-Length: -1\r\n", b"hello"), refused(400)),
        variant("Content-Length", "plus sign", post("Content-Length: +5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "two numbers", post("Content-Length: 5 5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "hex", post("Content-Length: 0x5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "decimal point", post("Content-Length: 5.0\r\n", b"hello"), refused(400)),
        variant("Content-Length", "exponent", post("Content-Length: 5e0\r\n", b"hello"), refused(400)),
        variant("Content-Length", "empty", post("Content-Length: \r\n", b"hello"), refused(400)),
        variant("Content-Length", "beyond u64", post("Content-Length: 99999999999999999999999\r\n", b"hello"), refused(400)),
        variant("Content-Length", "space before the colon", post("Content-Length : 5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "leading zero", post("Content-Length: 05\r\n", b"hello"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        // A tab in a framing value: RFC 9110 makes it whitespace, nginx part of the value (and
        // refuses it); one reading or the other frames the body, so 400 and close.
        variant("Content-Length", "tab before the value", post("Content-Length:\t5\r\n", b"hello"), refused(400)),
        variant("Content-Length", "tab after the value", post("Content-Length: 5\t\r\n", b"hello"), refused(400)),
        variant("Content-Length", "tabs around the value", post("Content-Length: \t5\t \r\n", b"hello"), refused(400)),
        variant(
            "Content-Length",
            "GET with a body",
            "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
            forwarded(&[("GET / HTTP/1.1", b"hello")]),
        ),
        // --- Transfer-Encoding casing, lists and whitespace (with CL: 6 as the decoy) ---
        variant("Transfer-Encoding", "xchunked", cl_te("Transfer-Encoding: xchunked"), refused(400)),
        variant("Transfer-Encoding", "chunked, identity", cl_te("Transfer-Encoding: chunked, identity"), refused(400)),
        variant("Transfer-Encoding", "identity", cl_te("Transfer-Encoding: identity"), refused(400)),
        variant("Transfer-Encoding", "chunked then identity (two lines)", cl_te("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"), refused(400)),
        variant("Transfer-Encoding", "identity then chunked (two lines)", cl_te("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked"), refused(501)),
        variant("Transfer-Encoding", "gzip, chunked", cl_te("Transfer-Encoding: gzip, chunked"), refused(501)),
        variant("Transfer-Encoding", "chunked, chunked", cl_te("Transfer-Encoding: chunked, chunked"), refused(501)),
        variant("Transfer-Encoding", "quoted \"chunked\"", cl_te("Transfer-Encoding: \"chunked\""), refused(400)),
        variant("Transfer-Encoding", "space before the colon", cl_te("Transfer-Encoding : chunked"), refused(400)),
        variant("Transfer-Encoding", "vertical tab before the value", cl_te("Transfer-Encoding: \x0bchunked"), refused(400)),
        variant("Transfer-Encoding", "CHUNKED, no CL", post("Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant("Transfer-Encoding", "tab before the value", post("Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), refused(400)),
        variant("Transfer-Encoding", "tab after the value", post("Transfer-Encoding: chunked\t\r\n", b"5\r\nhello\r\n0\r\n\r\n"), refused(400)),
        variant("Transfer-Encoding", "tab before the value, with CL", cl_te("Transfer-Encoding:\tchunked"), refused(400)),
        variant(
            "Transfer-Encoding",
            "a GET, then a tab before the value",
            cat(&[b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n", &post("Transfer-Encoding:\tchunked\r\n", format!("0\r\n\r\n{SMUGGLED}").as_bytes())]),
            forwarded(&[("GET /one HTTP/1.1", b"")]).statuses(&[200, 400]),
        ),
        // Tabs around other values are whitespace, as RFC 9110 says: hyper trims them.
        variant(
            "tab in a value",
            "tab in a header that is not framing",
            get_with(b"X-Foo:\tbar"),
            forwarded(&[("GET / HTTP/1.1", b"")]).check(|r| one_header(r, "x-foo", "bar")),
        ),
        variant(
            "tab in a value",
            "tabs in Content-Type, next to a plain Content-Length",
            post("Content-Type:\ttext/plain\t\r\nContent-Length: 5\r\n", b"hello"),
            forwarded(&[("POST / HTTP/1.1", b"hello")]).check(|r| one_header(r, "content-type", "text/plain")),
        ),
        variant("Transfer-Encoding", "trailing space after the value", post("Transfer-Encoding: chunked \r\n", b"5\r\nhello\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant("Transfer-Encoding", "no space after the colon", post("Transfer-Encoding:chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant("Transfer-Encoding", "on a GET", "GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", forwarded(&[("GET / HTTP/1.1", b"hello")])),
        // --- Transfer-Encoding on HTTP/1.0 ---
        variant("TE on HTTP/1.0", "chunked", "POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", refused(400)),
        variant(
            "TE on HTTP/1.0",
            "chunked with CL, smuggled after",
            format!("POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            refused(400),
        ),
        // --- obs-fold ---
        variant("obs-fold", "folded value", get_with(b"X-Fold: a\r\n b"), refused(400)),
        variant("obs-fold", "folded with a tab", get_with(b"X-Fold: a\r\n\tb"), refused(400)),
        variant("obs-fold", "folded Transfer-Encoding", post("Content-Length: 6\r\nTransfer-Encoding:\r\n chunked\r\n", format!("0\r\n\r\n{SMUGGLED}").as_bytes()), refused(400)),
        variant("obs-fold", "Transfer-Encoding folded into Content-Length", post("Content-Length: 6\r\n Transfer-Encoding: chunked\r\n", format!("0\r\n\r\n{SMUGGLED}").as_bytes()), refused(400)),
        variant("obs-fold", "folded Content-Length", post("Content-Length:\r\n 5\r\n", b"hello"), refused(400)),
        variant("obs-fold", "whitespace before the first header", "GET / HTTP/1.1\r\n Host: localhost\r\n\r\n", refused(400)),
        // --- bare CR and LF ---
        variant("bare CR/LF", "bare CR inside a value", get_with(b"X-A: a\rX-Injected: 1"), refused(400)),
        variant("bare CR/LF", "bare CR ends the request line", "GET / HTTP/1.1\rHost: localhost\r\n\r\n", refused(400)),
        variant("bare CR/LF", "CR in the request target", "GET /a\rb HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("bare CR/LF", "LF in the request target", "GET /a\nb HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("bare CR/LF", "LF-only line endings", "GET / HTTP/1.1\nHost: localhost\n\n", forwarded(&[("GET / HTTP/1.1", b"")])),
        variant("bare CR/LF", "one LF-only line", "GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", forwarded(&[("GET / HTTP/1.1", b"")])),
        variant("bare CR/LF", "bare CR after a chunk size", chunked(b"5\rhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("bare CR/LF", "LF-only chunk lines", chunked(b"5\nhello\n0\n\n"), refused(400).partial()),
        variant("bare CR/LF", "empty line before the request", "\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET / HTTP/1.1", b"")])),
        // --- NUL and control bytes ---
        variant("NUL/control", "NUL in a value", get_with(b"X-A: a\0b"), refused(400)),
        variant("NUL/control", "NUL in a name", get_with(b"X-\0A: b"), refused(400)),
        variant("NUL/control", "NUL in the target", "GET /a\0b HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("NUL/control", "NUL in the method", "G\0T / HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("NUL/control", "0x01 in a value", get_with(b"X-A: a\x01b"), refused(400)),
        variant("NUL/control", "ESC in a value", get_with(b"X-A: a\x1b[31mb"), refused(400)),
        variant("NUL/control", "DEL in a value", get_with(b"X-A: a\x7fb"), refused(400)),
        variant("NUL/control", "0x01 in a name", get_with(b"X-\x01A: b"), refused(400)),
        variant(
            "NUL/control",
            "obs-text (0xff) in a value",
            get_with(b"X-A: caf\xe9"),
            forwarded(&[("GET / HTTP/1.1", b"")]),
        ),
        variant("NUL/control", "NUL in chunk data (binary body)", chunked(b"5\r\nhe\0lo\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"he\0lo")])),
        // --- bad chunk sizes ---
        variant("chunk size", "not hex", chunked(b"zz\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "0x prefix", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "plus sign", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "leading space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "beyond u64", chunked(b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "data longer than the size", chunked(b"2\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "data shorter than the size", chunked(b"9\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "empty size line", chunked(b"\r\nhello\r\n0\r\n\r\n"), refused(400).partial()),
        variant("chunk size", "extension", chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant("chunk size", "uppercase hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"0123456789")])),
        variant("chunk size", "trailer section", chunked(b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"), forwarded(&[("POST / HTTP/1.1", b"hello")])),
        variant(
            "chunk size",
            "framing headers in the trailer section, then a request",
            chunked(b"5\r\nhello\r\n0\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\nGET /after HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            forwarded(&[("POST / HTTP/1.1", b"hello"), ("GET /after HTTP/1.1", b"")]).check(|r| no_header(&r[1..], "content-length")),
        ),
        // --- Host ---
        variant("Host", "repeated, equal", "GET / HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("Host", "repeated, different", "GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n", refused(400)),
        variant("Host", "a list", "GET / HTTP/1.1\r\nHost: localhost, evil.example\r\n\r\n", refused(400)),
        variant("Host", "missing on HTTP/1.1", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", refused(400)),
        variant("Host", "empty", "GET / HTTP/1.1\r\nHost: \r\n\r\n", refused(400)),
        variant("Host", "user info", "GET / HTTP/1.1\r\nHost: user@localhost\r\n\r\n", refused(400)),
        variant("Host", "a path", "GET / HTTP/1.1\r\nHost: localhost/admin\r\n\r\n", refused(400)),
        // --- absolute-form and CONNECT ---
        variant("request target", "absolute-form, same host", "GET http://localhost/abs HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET /abs HTTP/1.1", b"")])),
        variant("request target", "absolute-form, https, same host", "GET https://localhost/abs HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET /abs HTTP/1.1", b"")])),
        variant("request target", "absolute-form, another host", "GET http://evil.example/abs HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request target", "absolute-form with user info", "GET http://localhost@evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request target", "CONNECT", "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n", refused(400)),
        variant("request target", "CONNECT, then a request to tunnel", format!("CONNECT evil.example:80 HTTP/1.1\r\nHost: evil.example:80\r\n\r\n{SMUGGLED}"), refused(400)),
        variant("request target", "authority-form on GET", "GET localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request target", "asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request target", "double slash", "GET //evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET /evil.example/x HTTP/1.1", b"")])),
        // --- request line ---
        variant("request line", "lowercase method", "get / HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "two spaces", "GET  / HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "tabs as separators", "GET\t/\tHTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "a fourth word", "GET / HTTP/1.1 x\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "HTTP/0.9", "GET /\r\n\r\n", refused(400)),
        variant("request line", "HTTP/1.2", "GET / HTTP/1.2\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "HTTP/2.0 over HTTP/1", "GET / HTTP/2.0\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "method with a non-token byte", "G@T / HTTP/1.1\r\nHost: localhost\r\n\r\n", refused(400)),
        variant("request line", "raw UTF-8 in the target", "GET /caf\u{e9} HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET /caf\u{e9} HTTP/1.1", b"")])),
        variant("request line", "invalid UTF-8 in the target", &b"GET /caf\xe9 HTTP/1.1\r\nHost: localhost\r\n\r\n"[..], refused(400)),
        variant("request line", "fragment in the target (dropped)", "GET /a#b HTTP/1.1\r\nHost: localhost\r\n\r\n", forwarded(&[("GET /a HTTP/1.1", b"")])),
        // --- header names ---
        variant("header names", "space in a name", get_with(b"X A: b"), refused(400)),
        variant("header names", "no colon", get_with(b"X-A b"), refused(400)),
        variant("header names", "empty name", get_with(b": b"), refused(400)),
        variant("header names", "non-token byte in a name", get_with(b"X<A>: b"), refused(400)),
        variant("header names", "request head over max_header_bytes", format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: {long_value}\r\n\r\n"), refused(431)),
        variant("header names", "request head over hyper's buffer", format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: {huge_value}\r\n\r\n"), refused(431)),
        // --- underscores in header names: dropped, as nginx does ---
        variant(
            "underscore",
            "X_Forwarded_For",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
            forwarded(&[("GET / HTTP/1.1", b"")]).check(|r| one_header(r, "x-forwarded-for", "127.0.0.1")),
        ),
        variant(
            "underscore",
            "X_Real_IP",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX_Real_IP: 6.6.6.6\r\n\r\n",
            forwarded(&[("GET / HTTP/1.1", b"")]).check(|r| one_header(r, "x-real-ip", "127.0.0.1")),
        ),
        variant(
            "underscore",
            "Transfer_Encoding with Content-Length",
            post("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"hello"),
            forwarded(&[("POST / HTTP/1.1", b"hello")]),
        ),
        variant(
            "underscore",
            "Content_Length (no body for the upstream)",
            post("Content_Length: 5\r\n", b"hello\r\n\r\n"),
            forwarded(&[("POST / HTTP/1.1", b"")]).statuses(&[200, 400]),
        ),
        // --- Upgrade refused by the upstream, then a pipelined request ---
        variant(
            "upgrade",
            "WebSocket refused (426), then a request for a denied route",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n",
            forwarded(&[("GET /ws HTTP/1.1", b"")]).statuses(&[426, 403]),
        ),
        variant(
            "upgrade",
            "WebSocket refused (426), then a pipelined request",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /after HTTP/1.1\r\nHost: localhost\r\n\r\n",
            forwarded(&[("GET /ws HTTP/1.1", b""), ("GET /after HTTP/1.1", b"")]).statuses(&[426, 200]),
        ),
        variant(
            "upgrade",
            "h2c upgrade, then a request for a denied route",
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n",
            forwarded(&[("GET / HTTP/1.1", b"")]).statuses(&[200, 403]).check(|r| {
                no_header(r, "upgrade")?;
                no_header(r, "http2-settings")
            }),
        ),
        variant(
            "upgrade",
            "WebSocket upgrade on HTTP/1.0",
            "GET /ws HTTP/1.0\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            forwarded(&[("GET /ws HTTP/1.1", b"")]).check(|r| no_header(r, "upgrade")),
        ),
        // --- hop-by-hop names that would remove framing or identity ---
        variant(
            "hop-by-hop",
            "Connection: Content-Length",
            post("Connection: Content-Length\r\nContent-Length: 5\r\n", b"hello"),
            forwarded(&[("POST / HTTP/1.1", b"hello")]),
        ),
        variant(
            "hop-by-hop",
            "Connection: Transfer-Encoding",
            post("Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            forwarded(&[("POST / HTTP/1.1", b"hello")]),
        ),
        variant(
            "hop-by-hop",
            "Connection: Host",
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Host\r\n\r\n",
            forwarded(&[("GET / HTTP/1.1", b"")]).check(|r| one_header(r, "host", "localhost")),
        ),
        variant(
            "hop-by-hop",
            "Connection: X-Forwarded-For",
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            forwarded(&[("GET / HTTP/1.1", b"")]).check(|r| one_header(r, "x-forwarded-for", "127.0.0.1")),
        ),
    ]
}

/// What one server did with one variant.
struct Outcome {
    responses: Vec<RawResponse>,
    /// Bytes after the last complete response (a truncated or unparsable answer).
    leftover: Vec<u8>,
    /// What the upstream received.
    requests: Vec<ForwardedRequest>,
    /// A fresh request on a new connection afterwards was served 200.
    still_serves: bool,
}

impl Outcome {
    fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }

    fn complete(&self) -> Vec<&ForwardedRequest> {
        self.requests.iter().filter(|r| r.complete).collect()
    }

    /// Requests that reached the upstream whole, or whose bytes the strict reader refused.
    fn reached(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| r.complete || r.problem.is_some())
            .count()
    }

    fn describe(&self) -> String {
        describe(&self.statuses(), self.reached())
    }
}

fn describe(statuses: &[u16], forwarded: usize) -> String {
    let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
    let statuses = if statuses.is_empty() {
        "closed".to_string()
    } else {
        statuses.join(",")
    };
    format!("{statuses} / {forwarded} fwd")
}

/// Sends `bytes` on a TLS connection (ALPN http/1.1) and reads until the server closes.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tls_connect(addr, Some("localhost"), &[b"http/1.1"], None)
        .await
        .expect("TLS handshake");
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    read_until_close(&mut stream, READ_LIMIT).await
}

fn split_responses(raw: &[u8]) -> (Vec<RawResponse>, Vec<u8>) {
    let mut responses = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        match parse_response(&raw[pos..], true) {
            Some((response, used)) if used > 0 => {
                responses.push(response);
                pos += used;
            }
            _ => break,
        }
    }
    (responses, raw[pos..].to_vec())
}

/// A fresh request on a new connection is answered 200 by the upstream.
async fn still_serves(addr: std::net::SocketAddr) -> bool {
    let raw = exchange(addr, &get_close("/fresh", "localhost")).await;
    let (responses, _) = split_responses(&raw);
    responses.len() == 1
        && responses[0].status == 200
        && responses[0].header("x-recorder") == Some("1")
}

fn rampart_config(recorder: &ByteRecorder) -> String {
    format!(
        "[client]\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\n\n\
         {}\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\nallow = [\"10.0.0.0/8\"]\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[recorder.server()], "response_timeout = \"3s\"\nretries = 0")
    )
}

/// One variant against its own rampart and recorder.
async fn on_rampart(bytes: Vec<u8>) -> Outcome {
    let recorder = ByteRecorder::start().await;
    let proxy = ProxyBuilder::new()
        .no_http()
        .config(&rampart_config(&recorder))
        .start()
        .await;
    let raw = exchange(proxy.https, &bytes).await;
    let (responses, leftover) = split_responses(&raw);
    // The client connection is closed: whatever the proxy forwarded has arrived, or is about to.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let requests = recorder.requests();
    let still_serves = still_serves(proxy.https).await;
    proxy.shutdown().await;
    Outcome {
        responses,
        leftover,
        requests,
        still_serves,
    }
}

/// Every way in which `outcome` departs from `expect` (empty: the variant passed).
fn judge(expect: &Expect, outcome: &Outcome) -> Vec<String> {
    let mut failures = Vec::new();
    if outcome.statuses() != expect.statuses {
        failures.push(format!(
            "statuses {:?}, expected {:?}",
            outcome.statuses(),
            expect.statuses
        ));
    }
    if !outcome.leftover.is_empty() {
        failures.push(format!(
            "unparsable bytes after the responses: {:?}",
            String::from_utf8_lossy(&outcome.leftover)
        ));
    }
    for response in &outcome.responses {
        failures.extend(response_problems(response));
    }
    let complete: Vec<(String, Vec<u8>)> = outcome
        .complete()
        .iter()
        .map(|r| (r.line(), r.body.clone()))
        .collect();
    if complete != expect.forwarded {
        let show = |list: &[(String, Vec<u8>)]| -> Vec<String> {
            list.iter()
                .map(|(line, body)| format!("{line} + {:?}", String::from_utf8_lossy(body)))
                .collect()
        };
        failures.push(format!(
            "the upstream received {:?}, expected {:?}",
            show(&complete),
            show(&expect.forwarded)
        ));
    }
    for request in &outcome.requests {
        if request.line().contains("/smuggled") {
            failures.push(format!("SMUGGLED: {:?}", request.line()));
        }
        for ambiguity in request.ambiguities() {
            failures.push(format!("ambiguous at the upstream: {ambiguity}"));
        }
        if !request.complete && !expect.partial_ok {
            failures.push(format!(
                "an incomplete request reached the upstream: {:?}",
                request.line()
            ));
        }
    }
    if let Some(check) = expect.check {
        let complete: Vec<ForwardedRequest> = outcome.complete().into_iter().cloned().collect();
        if let Err(problem) = check(&complete) {
            failures.push(problem);
        }
    }
    if !outcome.still_serves {
        failures.push("a fresh request afterwards was not served".into());
    }
    failures
}

/// Every response carries the strict headers and a request id; rampart's own (no
/// `X-Recorder`) is its plain one-line error.
fn response_problems(response: &RawResponse) -> Vec<String> {
    let mut problems = Vec::new();
    let status = response.status;
    for (name, value) in STRICT {
        if response.header_all(name) != [*value] {
            problems.push(format!(
                "{status}: {name} is {:?}",
                response.header_all(name)
            ));
        }
    }
    if response.header("server").is_some() {
        problems.push(format!("{status}: a Server header"));
    }
    if response.header("x-request-id").is_none_or(str::is_empty) {
        problems.push(format!("{status}: no X-Request-Id"));
    }
    if response.header("x-recorder").is_none() {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let expected = format!("{status} {reason}\n");
        if response.body_str() != expected {
            problems.push(format!(
                "{status}: body {:?}, expected {expected:?}",
                response.body_str()
            ));
        }
        if response.header("content-type") != Some("text/plain; charset=utf-8") {
            problems.push(format!(
                "{status}: content-type {:?}",
                response.header("content-type")
            ));
        }
    }
    problems
}

/// Runs every variant against rampart, a few at a time, in catalogue order.
async fn run_all_on_rampart(variants: &[Variant]) -> Vec<Outcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for v in variants {
        let bytes = v.bytes.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            on_rampart(bytes).await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("variant task"));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_on_rampart() {
    let variants = catalogue();
    assert!(variants.len() >= 60, "{} variants", variants.len());
    let outcomes = run_all_on_rampart(&variants).await;

    let mut failed = 0;
    println!(
        "{:<4} {:<18} {:<58} {:<22} result",
        "#", "family", "variant", "statuses / upstream"
    );
    for (i, (v, outcome)) in variants.iter().zip(&outcomes).enumerate() {
        let failures = judge(&v.expect, outcome);
        let verdict = if failures.is_empty() { "ok" } else { "FAILED" };
        println!(
            "{:<4} {:<18} {:<58} {:<22} {verdict}",
            i + 1,
            v.family,
            v.name,
            outcome.describe()
        );
        for failure in &failures {
            println!("       - {failure} (expected {})", v.expect.describe());
        }
        if !failures.is_empty() {
            failed += 1;
        }
    }
    println!(
        "{} variants, {} passed, {failed} failed",
        variants.len(),
        variants.len() - failed
    );
    assert_eq!(failed, 0, "variants failed: see the table above");
}

// ---------------------------------------------------------------------------------------------
// The same variants against nginx (`bash benches/attacks/compare_nginx.sh`)
// ---------------------------------------------------------------------------------------------

/// nginx in the foreground (one process), TLS with a generated certificate, in front of a
/// recorder; killed when dropped.
struct Nginx {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("RAMPART_NGINX_BIN") {
        return path.into();
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
    {
        let candidate = std::path::Path::new(dir).join("nginx");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("nginx not found: `apt-get install -y nginx`, or run benches/attacks/compare_nginx.sh");
}

/// The hardened reverse-proxy config a careful nginx user writes, with the catalogue's
/// timeouts and rampart's `max_header_bytes` (16 KiB).
fn nginx_config(dir: &std::path::Path, port: u16, upstream: &ByteRecorder) -> String {
    let d = dir.display();
    let up = upstream.addr;
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/client_body;\n proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
           ignore_invalid_headers on;\n underscores_in_headers off;\n\
           large_client_header_buffers 4 16k;\n\
           client_header_timeout 1s;\n client_body_timeout 2s;\n keepalive_timeout 1s;\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl;\n server_name localhost;\n\
             ssl_certificate {d}/nginx.crt;\n ssl_certificate_key {d}/nginx.key;\n\
             proxy_http_version 1.1;\n proxy_set_header Connection \"\";\n\
             proxy_set_header Host $host;\n\
             location /admin/ {{ allow 10.0.0.0/8; deny all; proxy_pass http://{up}; }}\n\
             location / {{ proxy_pass http://{up}; }}\n\
           }}\n\
         }}\n"
    )
}

async fn start_nginx(upstream: &ByteRecorder) -> Nginx {
    let dir = tempfile::tempdir().expect("tempdir");
    rampart::certgen::write_self_signed(
        &["localhost".to_string()],
        &dir.path().join("nginx.crt"),
        &dir.path().join("nginx.key"),
    )
    .expect("certificate for nginx");
    // A free port: bound, read, released (nginx binds it a moment later).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir.path(), port, upstream)).expect("write nginx.conf");
    let child = std::process::Command::new(nginx_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start nginx");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let nginx = Nginx { child, addr, dir };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
    panic!("nginx did not listen on {addr}:\n{log}");
}

/// Every variant against one nginx, one at a time (the recorder's new requests are that
/// variant's: nginx opens an upstream connection per request here).
async fn run_all_on_nginx(variants: &[Variant]) -> (Vec<Outcome>, String) {
    let recorder = ByteRecorder::start().await;
    let nginx = start_nginx(&recorder).await;
    let version = std::process::Command::new(nginx_binary())
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let mut outcomes = Vec::new();
    for v in variants {
        let before = recorder.requests().len();
        let raw = exchange(nginx.addr, &v.bytes).await;
        let (responses, leftover) = split_responses(&raw);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let requests = recorder.requests()[before..].to_vec();
        let still_serves = still_serves(nginx.addr).await;
        outcomes.push(Outcome {
            responses,
            leftover,
            requests,
            still_serves,
        });
    }
    (outcomes, version)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Same,
    RampartStricter,
    RampartMorePermissive,
}

/// Compares what reached the upstream: rampart is more permissive when it forwarded more
/// requests than nginx did for the same bytes (something nginx refused, or a request nginx did
/// not see), stricter when fewer. A request counts when it arrived complete, or when the
/// strict reader refused its bytes (a lenient app server might have taken them).
fn compare(rampart: &Outcome, nginx: &Outcome) -> Verdict {
    let (r, n) = (rampart.reached(), nginx.reached());
    match r.cmp(&n) {
        std::cmp::Ordering::Equal => Verdict::Same,
        std::cmp::Ordering::Less => Verdict::RampartStricter,
        std::cmp::Ordering::Greater => Verdict::RampartMorePermissive,
    }
}

/// Variants where rampart forwards what nginx refuses: (family, variant, why that is safe).
/// The catalogue itself proves the upstream got exactly one unambiguous request for each.
/// (CL+TE and repeated Content-Length were here until `listener/framing.rs` refused them, and
/// a tab before a `Content-Length` or `Transfer-Encoding` value until it refused that too.)
const KNOWN_MORE_PERMISSIVE: &[(&str, &str, &str)] = &[];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx: bash benches/attacks/compare_nginx.sh"]
async fn compare_with_nginx() {
    let variants = catalogue();
    let on_rampart = run_all_on_rampart(&variants).await;
    let (on_nginx, version) = run_all_on_nginx(&variants).await;

    println!("rampart against {version}, same bytes, same recording upstream");
    println!(
        "{:<4} {:<18} {:<58} {:<18} {:<18} verdict",
        "#", "family", "variant", "rampart", "nginx"
    );
    let mut counts = [0usize; 3];
    let mut unexplained = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let verdict = compare(&on_rampart[i], &on_nginx[i]);
        counts[verdict as usize] += 1;
        let label = match verdict {
            Verdict::Same => "same",
            Verdict::RampartStricter => "rampart stricter",
            Verdict::RampartMorePermissive => "RAMPART MORE PERMISSIVE",
        };
        println!(
            "{:<4} {:<18} {:<58} {:<18} {:<18} {label}",
            i + 1,
            v.family,
            v.name,
            on_rampart[i].describe(),
            on_nginx[i].describe()
        );
        if verdict == Verdict::RampartMorePermissive {
            let known = KNOWN_MORE_PERMISSIVE
                .iter()
                .find(|(family, name, _)| *family == v.family && *name == v.name);
            match known {
                Some((_, _, why)) => println!("       known: {why}"),
                None => unexplained.push(v.name),
            }
        }
        // What nginx let through that the strict reader refused (rampart's are failures of
        // the default test).
        for request in &on_nginx[i].requests {
            for ambiguity in request.ambiguities() {
                println!("       nginx forwarded: {ambiguity}");
            }
        }
    }
    println!(
        "{} variants: {} same, {} rampart stricter, {} rampart more permissive",
        variants.len(),
        counts[0],
        counts[1],
        counts[2]
    );
    assert!(
        unexplained.is_empty(),
        "rampart forwards what nginx refuses: {unexplained:?}"
    );
}
