//! An upstream that records the exact bytes it receives, for the smuggling catalogue.
//!
//! [`ByteRecorder`] keeps every TCP connection's bytes as they arrived and cuts them into
//! requests with a strict HTTP/1.1 reader (CRLF only, no obs-fold, one framing header, exactly
//! `chunked` or one decimal `Content-Length`). Each complete request is answered `200` (or `426`
//! when it asks for an `Upgrade`: the upstream refuses every upgrade) with keep-alive, so
//! pipelined and pooled requests are answered too. Bytes the strict reader cannot frame are
//! recorded with the reason and the connection is closed: whatever reaches this upstream was
//! read one way only, or the test sees why not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::find;

/// Heads beyond this are not waited for: the recorder records them as a problem.
const MAX_HEAD: usize = 1 << 20;

/// One request as the recorder cut it from a connection's bytes.
#[derive(Debug, Clone)]
pub struct ForwardedRequest {
    /// Which accepted connection (0, 1, …) it came on.
    pub connection: usize,
    /// The exact head: request line to the empty line, CRLFs included (or every byte left on
    /// the connection when the head never completed).
    pub head: Vec<u8>,
    /// The body's bytes as framed on the wire (chunk-size lines included).
    pub framed_body: Vec<u8>,
    /// The body's content (chunked decoded).
    pub body: Vec<u8>,
    /// The whole request arrived and was answered.
    pub complete: bool,
    /// Why the strict reader could not take it as one well-framed request.
    pub problem: Option<String>,
}

impl ForwardedRequest {
    /// The request line (lossy UTF-8).
    pub fn line(&self) -> String {
        let end = find(&self.head, b"\r\n").unwrap_or(self.head.len());
        String::from_utf8_lossy(&self.head[..end]).into_owned()
    }

    /// The values of a header (name case-insensitive), OWS trimmed, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        head_fields(&self.head)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    /// Every way in which this request could be read differently by two parsers; empty when
    /// it is unambiguous: strict CRLF head, no obs-fold, no control bytes, token header names
    /// without `_`, at most one framing header (`Transfer-Encoding: chunked` alone, or one
    /// decimal `Content-Length` equal to the body bytes that followed it).
    pub fn ambiguities(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(problem) = &self.problem {
            found.push(problem.clone());
        }
        if let Err(problem) = check_head(&self.head) {
            if !found.contains(&problem) {
                found.push(problem);
            }
            return found;
        }
        let lengths = self.header_all("content-length");
        let codings = self.header_all("transfer-encoding");
        match (lengths.as_slice(), codings.as_slice()) {
            ([], []) => {
                if !self.body.is_empty() {
                    found.push("a body without a framing header".into());
                }
            }
            ([length], []) => {
                if length.parse::<usize>().ok() != Some(self.framed_body.len()) && self.complete {
                    found.push(format!(
                        "Content-Length {length} but {} body bytes",
                        self.framed_body.len()
                    ));
                }
            }
            ([], [coding]) if coding == "chunked" => {}
            _ => found.push(format!(
                "framing headers: Content-Length {lengths:?}, Transfer-Encoding {codings:?}"
            )),
        }
        found
    }
}

/// `(name, value)` of each header line of a head that [`check_head`] accepts.
fn head_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((
                name.to_string(),
                value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
            ))
        })
        .collect()
}

fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A head as RFC 9112 writes it, with no leniency at all: `Ok` or the first deviation.
pub fn check_head(head: &[u8]) -> Result<(), String> {
    let Some(body) = head.strip_suffix(b"\r\n\r\n") else {
        return Err("the head does not end with CRLF CRLF".into());
    };
    for (i, &byte) in body.iter().enumerate() {
        match byte {
            b'\r' if body.get(i + 1) != Some(&b'\n') => return Err("bare CR in the head".into()),
            b'\n' if i == 0 || body[i - 1] != b'\r' => return Err("bare LF in the head".into()),
            b'\r' | b'\n' | b'\t' => {}
            0 => return Err("NUL in the head".into()),
            0x01..=0x1f | 0x7f => return Err(format!("control byte {byte:#04x} in the head")),
            _ => {}
        }
    }
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts.as_slice() {
        [method, target, b"HTTP/1.1"]
            if !method.is_empty()
                && method.iter().all(|&b| is_token(b))
                && target.first() == Some(&b'/')
                && target.iter().all(|&b| b > b' ' && b != 0x7f) => {}
        _ => {
            return Err(format!(
                "request line {:?} is not `METHOD /origin-form HTTP/1.1`",
                String::from_utf8_lossy(line)
            ))
        }
    }
    for line in lines {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err("obs-fold (a line starting with whitespace)".into());
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(format!(
                "header line without colon: {:?}",
                String::from_utf8_lossy(line)
            ));
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(format!(
                "header name is not a token: {:?}",
                String::from_utf8_lossy(name)
            ));
        }
        if name.contains(&b'_') {
            return Err(format!(
                "header name with an underscore: {:?}",
                String::from_utf8_lossy(name)
            ));
        }
    }
    Ok(())
}

enum Cut {
    /// A complete request and the bytes it used.
    Request(ForwardedRequest, usize),
    NeedMore,
    /// Not readable as one well-framed request: recorded with the reason, the connection closed.
    Unframable(String),
}

/// Cuts one request from the start of `buf` with the strict reader.
fn cut_request(buf: &[u8], connection: usize) -> Cut {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|p| p + 4) else {
        return if buf.len() > MAX_HEAD {
            Cut::Unframable("a head beyond 1 MiB".into())
        } else {
            Cut::NeedMore
        };
    };
    let head = &buf[..head_end];
    if let Err(problem) = check_head(head) {
        return Cut::Unframable(problem);
    }
    let fields = head_fields(head);
    let values = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    let request = |framed: &[u8], body: Vec<u8>| ForwardedRequest {
        connection,
        head: head.to_vec(),
        framed_body: framed.to_vec(),
        body,
        complete: true,
        problem: None,
    };
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Cut::Request(request(&[], Vec::new()), head_end),
        ([length], []) => {
            let Some(length) = length
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| length.parse::<usize>().ok())
                .flatten()
            else {
                return Cut::Unframable(format!("Content-Length {length:?}"));
            };
            match buf.get(head_end..head_end + length) {
                Some(body) => Cut::Request(request(body, body.to_vec()), head_end + length),
                None => Cut::NeedMore,
            }
        }
        ([], ["chunked"]) => match dechunk(&buf[head_end..]) {
            Ok(Some((body, used))) => Cut::Request(
                request(&buf[head_end..head_end + used], body),
                head_end + used,
            ),
            Ok(None) => Cut::NeedMore,
            Err(problem) => Cut::Unframable(problem),
        },
        _ => Cut::Unframable(format!(
            "framing headers: Content-Length {lengths:?}, Transfer-Encoding {codings:?}"
        )),
    }
}

/// Strict chunked decoding: `Ok(None)` until the last chunk and the trailer section are there.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n").map(|p| p + pos) else {
            return Ok(None);
        };
        let line = &buf[pos..line_end];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.iter().all(u8::is_ascii_hexdigit)
            || line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(format!(
                "chunk-size line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        let size = usize::from_str_radix(&String::from_utf8_lossy(size_text), 16)
            .map_err(|e| e.to_string())?;
        pos = line_end + 2;
        if size == 0 {
            // Trailer fields until an empty line.
            loop {
                let Some(end) = find(&buf[pos..], b"\r\n").map(|p| p + pos) else {
                    return Ok(None);
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

#[derive(Default)]
struct RecorderState {
    /// Each accepted connection's bytes, in arrival order.
    connections: Mutex<Vec<Vec<u8>>>,
    /// Every request cut from them, in arrival order.
    requests: Mutex<Vec<ForwardedRequest>>,
    open: AtomicUsize,
}

/// A TCP upstream on `127.0.0.1:0` that records exact bytes (see the module comment).
pub struct ByteRecorder {
    pub addr: SocketAddr,
    state: Arc<RecorderState>,
    task: JoinHandle<()>,
}

impl Drop for ByteRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ByteRecorder {
    pub async fn start() -> ByteRecorder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let addr = listener.local_addr().expect("recorder address");
        let state = Arc::new(RecorderState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let index = {
                    let mut connections = st.connections.lock().unwrap();
                    connections.push(Vec::new());
                    connections.len() - 1
                };
                st.open.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    record_connection(stream, index, &st).await;
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ByteRecorder { addr, state, task }
    }

    /// The value for `servers = [...]`.
    pub fn server(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received (complete or not), in arrival order.
    pub fn requests(&self) -> Vec<ForwardedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The complete requests only.
    pub fn complete(&self) -> Vec<ForwardedRequest> {
        self.requests().into_iter().filter(|r| r.complete).collect()
    }

    /// Each connection's exact bytes.
    pub fn connection_bytes(&self) -> Vec<Vec<u8>> {
        self.state.connections.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.lock().unwrap().len()
    }

    /// Connections not yet closed by the peer.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

const OK_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Type: text/plain\r\nX-Recorder: 1\r\n\r\nrecorded\n";
const UPGRADE_REFUSED: &[u8] =
    b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 12\r\nContent-Type: text/plain\r\nX-Recorder: 1\r\n\r\nno upgrades\n";

async fn record_connection(mut stream: TcpStream, index: usize, state: &RecorderState) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            if !buf.is_empty() {
                let (head, framed_body) = match find(&buf, b"\r\n\r\n") {
                    Some(p) => (buf[..p + 4].to_vec(), buf[p + 4..].to_vec()),
                    None => (buf.clone(), Vec::new()),
                };
                state.requests.lock().unwrap().push(ForwardedRequest {
                    connection: index,
                    head,
                    framed_body,
                    body: Vec::new(),
                    complete: false,
                    problem: None,
                });
            }
            return;
        }
        state.connections.lock().unwrap()[index].extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match cut_request(&buf, index) {
                Cut::Request(request, used) => {
                    let answer = if !request.header_all("upgrade").is_empty() {
                        UPGRADE_REFUSED
                    } else {
                        OK_RESPONSE
                    };
                    let head_only = request.line().starts_with("HEAD ");
                    state.requests.lock().unwrap().push(request);
                    buf.drain(..used);
                    let answer = if head_only {
                        &answer[..find(answer, b"\r\n\r\n").map_or(answer.len(), |p| p + 4)]
                    } else {
                        answer
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
                Cut::NeedMore => break,
                Cut::Unframable(problem) => {
                    state.requests.lock().unwrap().push(ForwardedRequest {
                        connection: index,
                        head: buf.clone(),
                        framed_body: Vec::new(),
                        body: Vec::new(),
                        complete: false,
                        problem: Some(problem),
                    });
                    return;
                }
            }
        }
    }
}
