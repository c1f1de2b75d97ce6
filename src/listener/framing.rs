//! HTTP/1 request framing that hyper settles before the pipeline sees the request, checked on
//! the bytes themselves.
//!
//! hyper removes a `Content-Length` that comes with `Transfer-Encoding` (and reads chunked), and
//! keeps one of two equal `Content-Length` lines: nothing of either is left in the request the
//! pipeline gets. Both are how request smuggling starts (RFC 9112 §6.3, §11.2), and nginx answers
//! 400. So is a tab anywhere in a `Content-Length` or `Transfer-Encoding` value: httparse trims
//! it as whitespace (RFC 9110 §5.6.3), nginx keeps it in the value and refuses the request, so
//! two hops could frame that body two ways (or one of them not at all). So [`FramingWatch`]
//! wraps an HTTP/1 connection's socket and runs every byte hyper reads through a
//! [`FramingTracker`], which follows the connection's messages (head, body, next head) the way
//! hyper frames them and publishes the first ambiguous head in [`Framing`]; the pipeline asks it
//! for each request and answers that one 400 with `Connection: close`, so nothing of it is
//! forwarded.
//!
//! The tracker only scans heads: a header line whose first letter no framing name has is
//! skipped with one `memchr` for its end, the others have their name compared, and a framing
//! value is scanned to its end; bodies are skipped by counting, chunked ones by parsing their
//! size lines. Bytes it cannot follow (a head hyper refuses, a broken chunk, a tunnel after
//! `101`) stop it for the rest of the connection: hyper closes the connection after all of
//! those, so no later request is served unchecked.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What makes a request head ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// `Content-Length` and `Transfer-Encoding` lines in one head, in either order.
    ContentLengthWithTransferEncoding,
    /// More than one `Content-Length` line (different values are refused by hyper itself).
    RepeatedContentLength,
    /// A tab anywhere in a `Content-Length` or `Transfer-Encoding` value. RFC 9110 makes it
    /// whitespace, and hyper trims it; nginx keeps it in the value (and refuses the value), so a
    /// hop that reads it as nginx does frames the body otherwise, or not at all.
    TabInFramingValue,
}

impl Ambiguity {
    /// For the log; the client gets the generic 400 body.
    pub fn reason(self) -> &'static str {
        match self {
            Ambiguity::ContentLengthWithTransferEncoding => {
                "ambiguous framing: Content-Length with Transfer-Encoding"
            }
            Ambiguity::RepeatedContentLength => "ambiguous framing: repeated Content-Length",
            Ambiguity::TabInFramingValue => {
                "ambiguous framing: tab in a Content-Length or Transfer-Encoding value"
            }
        }
    }

    fn code(self) -> u8 {
        match self {
            Ambiguity::ContentLengthWithTransferEncoding => 1,
            Ambiguity::RepeatedContentLength => 2,
            Ambiguity::TabInFramingValue => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            2 => Ambiguity::RepeatedContentLength,
            3 => Ambiguity::TabInFramingValue,
            _ => Ambiguity::ContentLengthWithTransferEncoding,
        }
    }
}

/// The first ambiguous head the tracker found: requests are numbered from 0 on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub request: u64,
    pub ambiguity: Ambiguity,
}

/// One HTTP/1 connection's verdicts, shared by its [`FramingWatch`] (which writes them as it
/// reads) and the pipeline (which asks once per request, in order: HTTP/1 serves one request at
/// a time, and hyper hands a request over only after reading its whole head through the watch).
#[derive(Debug)]
pub struct Framing {
    /// Index of the first ambiguous request; `u64::MAX` while there is none.
    ambiguous_from: AtomicU64,
    ambiguity: AtomicU8,
    /// Requests the pipeline has asked about.
    asked: AtomicU64,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            ambiguous_from: AtomicU64::new(u64::MAX),
            ambiguity: AtomicU8::new(0),
            asked: AtomicU64::new(0),
        }
    }
}

impl Framing {
    /// Called once for every request of the connection, in order: `Err` for the ambiguous one
    /// (and, should the counts ever drift, any after it).
    pub fn check_next_request(&self) -> Result<(), Ambiguity> {
        let index = self.asked.fetch_add(1, Ordering::Relaxed);
        if index >= self.ambiguous_from.load(Ordering::Acquire) {
            return Err(Ambiguity::from_code(self.ambiguity.load(Ordering::Relaxed)));
        }
        Ok(())
    }

    fn publish(&self, finding: Finding) {
        self.ambiguity
            .store(finding.ambiguity.code(), Ordering::Relaxed);
        self.ambiguous_from
            .store(finding.request, Ordering::Release);
    }
}

const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";

/// Where the tracker is in the connection's byte stream. Head states mirror httparse (hyper's
/// head parser, default settings), body states mirror hyper's body decoder, for every input they
/// accept; on inputs they refuse, hyper closes the connection and the tracker merely stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line: empty lines are skipped, as httparse does.
    Leading,
    /// A CR at the start of a line; LF must follow (an empty line).
    LineCr {
        leading: bool,
    },
    /// At the start of a header line; an empty line ends the head.
    LineStart,
    /// Inside a header name that may still be a framing one; `col` bytes matched.
    Name {
        col: u8,
        length: bool,
        transfer: bool,
    },
    /// The value of a `Content-Length` line.
    LengthValue(LengthValue),
    /// The value of a `Transfer-Encoding` line, before any tab.
    TransferValue,
    /// The rest of the request line or of a header line that does not matter here.
    RestOfLine,
    /// A `Content-Length` body: bytes still to come.
    Body(u64),
    /// Chunked body, as hyper's `ChunkedState`.
    ChunkStart,
    ChunkSize(u64),
    ChunkSizeSpace(u64),
    ChunkExtension(u64),
    ChunkSizeLf(u64),
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    /// Nothing more is tracked on this connection (ambiguity found, or bytes it cannot follow).
    Stopped,
}

/// A `Content-Length` value as hyper reads it: optional blanks, digits, optional blanks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthValue {
    Before,
    Digits(u64),
    After(u64),
    Invalid,
}

impl LengthValue {
    fn push(self, b: u8) -> Self {
        match (self, b) {
            (LengthValue::Before, b' ' | b'\t') => LengthValue::Before,
            (LengthValue::Before, b'0'..=b'9') => LengthValue::Digits(u64::from(b - b'0')),
            (LengthValue::Digits(n), b'0'..=b'9') => n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .map_or(LengthValue::Invalid, LengthValue::Digits),
            // httparse trims SP, HTAB and CR at the end of a value.
            (LengthValue::Digits(n) | LengthValue::After(n), b' ' | b'\t' | b'\r') => {
                LengthValue::After(n)
            }
            _ => LengthValue::Invalid,
        }
    }

    fn value(self) -> Option<u64> {
        match self {
            LengthValue::Digits(n) | LengthValue::After(n) => Some(n),
            LengthValue::Before | LengthValue::Invalid => None,
        }
    }
}

/// Follows one HTTP/1 connection's requests through the bytes read from the client.
#[derive(Debug)]
pub struct FramingTracker {
    state: State,
    /// Complete heads seen so far: the index of the next request.
    heads: u64,
    /// Bytes of the current head (with the empty lines before it).
    head_bytes: usize,
    max_head_bytes: usize,
    /// Framing lines of the current head.
    length_lines: u8,
    length: Option<u64>,
    transfer_encoding: bool,
    /// A tab in a framing value of the current head.
    tab: bool,
    finding: Option<Finding>,
}

impl FramingTracker {
    /// `max_head_bytes`: a head longer than this can not be one hyper accepts (so tracking
    /// stops there, e.g. on a tunnel's bytes after `101`). hyper refuses heads that do not fit
    /// its read buffer, which can grow to about twice its configured size in one read: pass
    /// four times that.
    pub fn new(max_head_bytes: usize) -> Self {
        FramingTracker {
            state: State::Leading,
            heads: 0,
            head_bytes: 0,
            max_head_bytes,
            length_lines: 0,
            length: None,
            transfer_encoding: false,
            tab: false,
            finding: None,
        }
    }

    /// Still following the stream.
    pub fn is_tracking(&self) -> bool {
        self.state != State::Stopped
    }

    /// Stopped without a finding: bytes hyper would refuse, or a head too long.
    pub fn is_lost(&self) -> bool {
        self.state == State::Stopped && self.finding.is_none()
    }

    /// Complete request heads seen.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    pub fn finding(&self) -> Option<Finding> {
        self.finding
    }

    /// Reads the next bytes of the stream; returns the first ambiguous head once, when its end
    /// is among them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<Finding> {
        while let Some(&first) = bytes.first() {
            let consumed = match self.state {
                State::Stopped => return None,
                State::Body(left) => {
                    let n = skip(bytes.len(), left);
                    self.state = if n as u64 == left {
                        State::Leading
                    } else {
                        State::Body(left - n as u64)
                    };
                    bytes = &bytes[n..];
                    continue;
                }
                State::ChunkData(left) => {
                    let n = skip(bytes.len(), left);
                    self.state = if n as u64 == left {
                        State::ChunkDataCr
                    } else {
                        State::ChunkData(left - n as u64)
                    };
                    bytes = &bytes[n..];
                    continue;
                }
                // Extensions and trailer lines are skipped to their CR; the other chunk states
                // take one byte at a time, as hyper's decoder does.
                State::ChunkExtension(size) => match memchr::memchr2(b'\r', b'\n', bytes) {
                    None => bytes.len(),
                    Some(i) => {
                        self.state = if bytes[i] == b'\r' {
                            State::ChunkSizeLf(size)
                        } else {
                            State::Stopped
                        };
                        i + 1
                    }
                },
                State::Trailer => match memchr::memchr(b'\r', bytes) {
                    None => bytes.len(),
                    Some(i) => {
                        self.state = State::TrailerLf;
                        i + 1
                    }
                },
                State::RestOfLine => self.skip_line(bytes),
                State::LineStart if first != b'\n' && first != b'\r' => self.header_line(bytes),
                State::LengthValue(value) => self.length_value(value, bytes),
                State::TransferValue => self.transfer_value(bytes),
                State::ChunkStart
                | State::ChunkSize(_)
                | State::ChunkSizeSpace(_)
                | State::ChunkSizeLf(_)
                | State::ChunkDataCr
                | State::ChunkDataLf
                | State::TrailerLf
                | State::EndCr
                | State::EndLf => {
                    self.chunk_byte(first);
                    1
                }
                State::Leading | State::LineCr { .. } | State::LineStart | State::Name { .. } => {
                    self.count_head_bytes(1);
                    if self.state != State::Stopped {
                        self.head_byte(first);
                    }
                    1
                }
            };
            bytes = &bytes[consumed..];
            if self.state == State::Stopped {
                // Once: the next call starts stopped.
                return self.finding;
            }
        }
        None
    }

    /// The start of a header line: most start with a letter no framing name starts with and are
    /// skipped whole; a name and its colon at hand are compared at once; a read that ends
    /// inside one is matched byte by byte.
    fn header_line(&mut self, bytes: &[u8]) -> usize {
        if !matches!(bytes[0], b'c' | b'C' | b't' | b'T') {
            return self.skip_line(bytes);
        }
        if bytes.len() <= TRANSFER_ENCODING.len() {
            self.count_head_bytes(1);
            if self.state != State::Stopped {
                self.state = name_byte(0, true, true, bytes[0]);
            }
            return 1;
        }
        let is = |name: &[u8]| {
            bytes[..name.len()].eq_ignore_ascii_case(name) && bytes[name.len()] == b':'
        };
        if is(CONTENT_LENGTH) {
            self.length_lines = self.length_lines.saturating_add(1);
            self.state = State::LengthValue(LengthValue::Before);
            let n = CONTENT_LENGTH.len() + 1;
            self.count_head_bytes(n);
            n
        } else if is(TRANSFER_ENCODING) {
            self.transfer_encoding = true;
            self.state = State::TransferValue;
            let n = TRANSFER_ENCODING.len() + 1;
            self.count_head_bytes(n);
            n
        } else {
            self.skip_line(bytes)
        }
    }

    /// The value of a `Content-Length` line, to the end of the line or of `bytes`.
    fn length_value(&mut self, mut value: LengthValue, bytes: &[u8]) -> usize {
        let end = memchr::memchr(b'\n', bytes);
        for &b in &bytes[..end.unwrap_or(bytes.len())] {
            value = value.push(b);
            self.tab |= b == b'\t';
        }
        self.state = State::LengthValue(value);
        let n = match end {
            Some(end) => {
                // The first line's value frames the body; a second line is ambiguous anyway.
                if self.length_lines == 1 {
                    self.length = value.value();
                }
                self.state = State::LineStart;
                end + 1
            }
            None => bytes.len(),
        };
        self.count_head_bytes(n);
        n
    }

    /// The value of a `Transfer-Encoding` line, to its first tab (then the rest of the line is
    /// skipped), the end of the line, or the end of `bytes`.
    fn transfer_value(&mut self, bytes: &[u8]) -> usize {
        let n = match memchr::memchr2(b'\t', b'\n', bytes) {
            None => bytes.len(),
            Some(i) => {
                if bytes[i] == b'\t' {
                    self.tab = true;
                    self.state = State::RestOfLine;
                } else {
                    self.state = State::LineStart;
                }
                i + 1
            }
        };
        self.count_head_bytes(n);
        n
    }

    /// Consumes up to the end of the current line (all of `bytes` if it does not end there).
    fn skip_line(&mut self, bytes: &[u8]) -> usize {
        let n = match memchr::memchr(b'\n', bytes) {
            None => {
                self.state = State::RestOfLine;
                bytes.len()
            }
            Some(i) => {
                self.state = State::LineStart;
                i + 1
            }
        };
        self.count_head_bytes(n);
        n
    }

    fn count_head_bytes(&mut self, n: usize) {
        self.head_bytes += n;
        if self.head_bytes > self.max_head_bytes {
            self.state = State::Stopped;
        }
    }

    fn head_byte(&mut self, b: u8) {
        self.state = match self.state {
            State::Leading => match b {
                b'\n' => State::Leading,
                b'\r' => State::LineCr { leading: true },
                // The request line starts with the method, a token (httparse refuses the rest).
                b if is_token(b) => State::RestOfLine,
                _ => State::Stopped,
            },
            State::LineCr { leading } => match b {
                b'\n' if leading => State::Leading,
                b'\n' => self.end_head(),
                // A bare CR: httparse refuses the head.
                _ => State::Stopped,
            },
            State::LineStart => match b {
                b'\n' => self.end_head(),
                b'\r' => State::LineCr { leading: false },
                b => name_byte(0, true, true, b),
            },
            State::Name {
                col,
                length,
                transfer,
            } => match b {
                b':' if length && usize::from(col) == CONTENT_LENGTH.len() => {
                    self.length_lines = self.length_lines.saturating_add(1);
                    State::LengthValue(LengthValue::Before)
                }
                b':' if transfer && usize::from(col) == TRANSFER_ENCODING.len() => {
                    self.transfer_encoding = true;
                    State::TransferValue
                }
                b'\n' => State::LineStart,
                b => name_byte(col, length, transfer, b),
            },
            other => other,
        };
    }

    /// The empty line after the headers: judge the head, then expect its body.
    fn end_head(&mut self) -> State {
        let request = self.heads;
        let ambiguity = if self.transfer_encoding && self.length_lines > 0 {
            Some(Ambiguity::ContentLengthWithTransferEncoding)
        } else if self.length_lines > 1 {
            Some(Ambiguity::RepeatedContentLength)
        } else if self.tab {
            Some(Ambiguity::TabInFramingValue)
        } else {
            None
        };
        if let Some(ambiguity) = ambiguity {
            self.finding = Some(Finding { request, ambiguity });
            return State::Stopped;
        }
        self.heads += 1;
        self.head_bytes = 0;
        // hyper: chunked when Transfer-Encoding is there (any other coding it refuses), else
        // Content-Length, else no body.
        let next = if self.transfer_encoding {
            State::ChunkStart
        } else if self.length_lines == 1 {
            match self.length {
                Some(0) => State::Leading,
                Some(length) => State::Body(length),
                // hyper refuses a malformed length.
                None => State::Stopped,
            }
        } else {
            State::Leading
        };
        self.length_lines = 0;
        self.length = None;
        self.transfer_encoding = false;
        self.tab = false;
        next
    }

    /// One byte of a chunk-size line, a chunk's CRLF, or the end of the trailer section, exactly
    /// as hyper's decoder takes it (any byte it refuses stops the tracker).
    fn chunk_byte(&mut self, b: u8) {
        self.state = match (self.state, b) {
            (State::ChunkStart, b) => hex(b).map_or(State::Stopped, State::ChunkSize),
            (State::ChunkSize(size), b' ' | b'\t') => State::ChunkSizeSpace(size),
            (State::ChunkSize(size), b';') | (State::ChunkSizeSpace(size), b';') => {
                State::ChunkExtension(size)
            }
            (State::ChunkSize(size), b'\r') | (State::ChunkSizeSpace(size), b'\r') => {
                State::ChunkSizeLf(size)
            }
            (State::ChunkSize(size), b) => match hex(b) {
                Some(digit) => size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(digit))
                    .map_or(State::Stopped, State::ChunkSize),
                None => State::Stopped,
            },
            (State::ChunkSizeSpace(size), b' ' | b'\t') => State::ChunkSizeSpace(size),
            (State::ChunkSizeLf(0), b'\n') => State::EndCr,
            (State::ChunkSizeLf(size), b'\n') => State::ChunkData(size),
            (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
            (State::ChunkDataLf, b'\n') => State::ChunkStart,
            (State::TrailerLf, b'\n') => State::EndCr,
            (State::EndCr, b'\r') => State::EndLf,
            (State::EndCr, _) => State::Trailer,
            // The body is over: the next head follows.
            (State::EndLf, b'\n') => State::Leading,
            _ => State::Stopped,
        };
    }
}

fn skip(available: usize, left: u64) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// Matches one more byte of a header name against both framing names (case-insensitively, as
/// hyper compares names); a name that can no longer be either is skipped to the end of its line.
fn name_byte(col: u8, length: bool, transfer: bool, b: u8) -> State {
    let lower = b.to_ascii_lowercase();
    let at = usize::from(col);
    let length = length && CONTENT_LENGTH.get(at) == Some(&lower);
    let transfer = transfer && TRANSFER_ENCODING.get(at) == Some(&lower);
    if length || transfer {
        State::Name {
            col: col + 1,
            length,
            transfer,
        }
    } else {
        State::RestOfLine
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// RFC 9110 `tchar`, as httparse checks a method's first byte.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pin_project_lite::pin_project! {
    /// An HTTP/1 connection's socket, its reads run through a [`FramingTracker`] whose findings go
    /// to the connection's [`Framing`]. Writes pass through untouched.
    pub struct FramingWatch<T> {
        #[pin]
        inner: T,
        tracker: FramingTracker,
        framing: std::sync::Arc<Framing>,
        // How many of the connection's first bytes match the HTTP/2 preface (`u8::MAX` once
        // one does not).
        preface: u8,
    }
}

impl<T> FramingWatch<T> {
    /// `hyper_buffer`: hyper's HTTP/1 `max_buf_size` on this connection.
    pub fn new(inner: T, framing: std::sync::Arc<Framing>, hyper_buffer: usize) -> Self {
        FramingWatch {
            inner,
            tracker: FramingTracker::new(hyper_buffer.saturating_mul(4)),
            framing,
            preface: 0,
        }
    }
}

/// hyper-util's connection builder with upgrades sniffs for the HTTP/2 preface whatever ALPN
/// chose, so a connection negotiated as HTTP/1.1 could otherwise carry HTTP/2, outside the
/// HTTP/2 guards (rapid reset, stream deadlines). `preface` counts the first bytes that match;
/// `true` once all 24 do.
fn h2_preface_on_h1(preface: &mut u8, bytes: &[u8]) -> bool {
    use crate::listener::preface::PREFACE;
    for &b in bytes {
        let at = usize::from(*preface);
        if at >= PREFACE.len() {
            return false;
        }
        if PREFACE[at] != b {
            *preface = u8::MAX;
            return false;
        }
        *preface += 1;
    }
    usize::from(*preface) == PREFACE.len()
}

impl<T: AsyncRead> AsyncRead for FramingWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if usize::from(*this.preface) < crate::listener::preface::PREFACE.len()
            && matches!(polled, Poll::Ready(Ok(())))
            && h2_preface_on_h1(this.preface, &buf.filled()[before..])
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP/2 preface on a connection negotiated as HTTP/1.1",
            )));
        }
        if matches!(polled, Poll::Ready(Ok(()))) && this.tracker.is_tracking() {
            if let Some(finding) = this.tracker.feed(&buf.filled()[before..]) {
                this.framing.publish(finding);
            }
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for FramingWatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 64 * 1024;

    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        finding: Option<Finding>,
        heads: u64,
        lost: bool,
    }

    /// Feeds `bytes` in reads of the given sizes (the rest in one last read).
    fn track_in(bytes: &[u8], sizes: impl IntoIterator<Item = usize>) -> Outcome {
        let mut tracker = FramingTracker::new(LIMIT);
        let mut reported = Vec::new();
        let mut rest = bytes;
        for size in sizes {
            let (read, after) = rest.split_at(size.min(rest.len()));
            reported.extend(tracker.feed(read));
            rest = after;
        }
        reported.extend(tracker.feed(rest));
        assert!(reported.len() <= 1, "reported twice: {reported:?}");
        assert_eq!(reported.first().copied(), tracker.finding());
        Outcome {
            finding: tracker.finding(),
            heads: tracker.heads(),
            lost: tracker.is_lost(),
        }
    }

    /// The outcome of one read, checked to be the same byte by byte and for every split in two.
    fn track(bytes: &[u8]) -> Outcome {
        let whole = track_in(bytes, []);
        assert_eq!(
            track_in(bytes, std::iter::repeat_n(1, bytes.len())),
            whole,
            "byte by byte"
        );
        for split in 1..bytes.len() {
            assert_eq!(track_in(bytes, [split]), whole, "split at {split}");
        }
        whole
    }

    fn found(request: u64, ambiguity: Ambiguity, heads: u64) -> Outcome {
        Outcome {
            finding: Some(Finding { request, ambiguity }),
            heads,
            lost: false,
        }
    }

    fn clean(heads: u64) -> Outcome {
        Outcome {
            finding: None,
            heads,
            lost: false,
        }
    }

    fn post(headers: &str, body: &str) -> String {
        format!("POST / HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}")
    }

    const CL_TE: Ambiguity = Ambiguity::ContentLengthWithTransferEncoding;
    const REPEATED: Ambiguity = Ambiguity::RepeatedContentLength;
    const TAB: Ambiguity = Ambiguity::TabInFramingValue;
    const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

    #[test]
    fn the_http2_preface_is_found_at_the_start_only() {
        let preface = crate::listener::preface::PREFACE;
        for split in 1..preface.len() {
            let mut seen = 0;
            assert!(!h2_preface_on_h1(&mut seen, &preface[..split]));
            assert!(
                h2_preface_on_h1(&mut seen, &preface[split..]),
                "split at {split}"
            );
        }
        let mut seen = 0;
        assert!(!h2_preface_on_h1(&mut seen, b"POST / HTTP/1.1\r\n"));
        assert!(!h2_preface_on_h1(&mut seen, preface));
        let mut seen = 0;
        assert!(!h2_preface_on_h1(&mut seen, b"PRI * HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn every_ambiguous_form_is_found() {
        let chunk = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
        let cases = [
            (
                post(
                    "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                    &format!("0\r\n\r\n{SMUGGLED}"),
                ),
                CL_TE,
            ),
            (
                post(
                    "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                    &chunk,
                ),
                CL_TE,
            ),
            (
                post(
                    "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                    &chunk,
                ),
                CL_TE,
            ),
            (
                post(
                    "Transfer-Encoding: Chunked\r\nContent-Length: 4\r\n",
                    &chunk,
                ),
                CL_TE,
            ),
            (
                post(
                    "content-LENGTH:5\r\nTRANSFER-encoding: gzip, chunked\r\n",
                    "0\r\n\r\n",
                ),
                CL_TE,
            ),
            (
                post(
                    "Transfer-Encoding: chunked\r\nX-A: b\r\nContent-Length: abc\r\n",
                    "0\r\n\r\n",
                ),
                CL_TE,
            ),
            (
                post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
                REPEATED,
            ),
            (
                post("Content-Length: 5\r\ncontent-length:\t5 \r\n", "hello"),
                REPEATED,
            ),
            (
                post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
                REPEATED,
            ),
            // LF-only line ends, which hyper accepts in heads.
            (
                "POST / HTTP/1.1\nHost: a\nContent-Length: 1\nContent-Length: 1\n\nx".to_string(),
                REPEATED,
            ),
            (
                "POST / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 1\n\n0\r\n\r\n"
                    .to_string(),
                CL_TE,
            ),
            // A tab anywhere in a framing value, with or without other blanks.
            (post("Content-Length:\t5\r\n", "hello"), TAB),
            (post("Content-Length: 5\t\r\n", "hello"), TAB),
            (post("content-length: \t5\t \r\n", "hello"), TAB),
            (post("Content-Length: 5\t5\r\n", "hello"), TAB),
            (post("Transfer-Encoding:\tchunked\r\n", "0\r\n\r\n"), TAB),
            (post("Transfer-Encoding: chunked\t\r\n", "0\r\n\r\n"), TAB),
            (
                post("TRANSFER-ENCODING: gzip,\tchunked\r\n", "0\r\n\r\n"),
                TAB,
            ),
            (
                post("X-A:\tb\r\nTransfer-Encoding: \t chunked\r\n", "0\r\n\r\n"),
                TAB,
            ),
            (
                "POST / HTTP/1.1\nHost: a\nContent-Length:\t1\n\nx".to_string(),
                TAB,
            ),
            // With another ambiguity in the head, that one is named.
            (
                post(
                    "Content-Length:\t6\r\nTransfer-Encoding: chunked\r\n",
                    "0\r\n\r\n",
                ),
                CL_TE,
            ),
        ];
        for (bytes, ambiguity) in cases {
            assert_eq!(track(bytes.as_bytes()), found(0, ambiguity, 0), "{bytes:?}");
        }
    }

    #[test]
    fn the_ambiguous_request_of_a_pipeline_is_numbered() {
        let pipeline = format!(
            "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n{}{}{SMUGGLED}",
            post("Content-Length: 5\r\n", "hello"),
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n"
            ),
        );
        assert_eq!(track(pipeline.as_bytes()), found(2, CL_TE, 2));
        // Nothing after the finding is read: a later ambiguity is not reported.
        let twice = format!(
            "{pipeline}{}",
            post("Content-Length: 1\r\nContent-Length: 1\r\n", "x")
        );
        assert_eq!(track(twice.as_bytes()), found(2, CL_TE, 2));
    }

    #[test]
    fn a_tab_in_a_later_request_of_a_pipeline_is_numbered() {
        let pipeline = format!(
            "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n{}{}",
            post("Content-Length: 5\r\n", "hello"),
            post(
                "Transfer-Encoding:\tchunked\r\n",
                &format!("0\r\n\r\n{SMUGGLED}")
            ),
        );
        assert_eq!(track(pipeline.as_bytes()), found(2, TAB, 2));
    }

    #[test]
    fn header_text_in_a_body_is_body() {
        let text =
            "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        let fixed = post(&format!("Content-Length: {}\r\n", text.len()), text);
        let chunked = post(
            "Transfer-Encoding: chunked\r\n",
            &format!("{:x}\r\n{text}\r\n0\r\n\r\n", text.len()),
        );
        for first in [fixed, chunked] {
            let pipeline = format!("{first}GET /two HTTP/1.1\r\nHost: localhost\r\n\r\n");
            assert_eq!(track(pipeline.as_bytes()), clean(2), "{pipeline:?}");
        }
    }

    #[test]
    fn a_content_length_body_is_skipped_to_the_next_head() {
        let pipeline = format!(
            "{}{}",
            post("Content-Length: 12\r\n", "0123456789\r\n"),
            post("Content-Length: 1\r\nContent-Length: 1\r\n", "x"),
        );
        assert_eq!(track(pipeline.as_bytes()), found(1, REPEATED, 1));
        // A zero length, and a GET with a body.
        let pipeline = format!(
            "{}GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
            post("Content-Length: 0\r\n", ""),
        );
        assert_eq!(track(pipeline.as_bytes()), clean(3));
    }

    #[test]
    fn chunk_extensions_and_trailers_are_followed_to_the_next_head() {
        let body = "5;name=value\r\nhello\r\nA ; x = \"a\\r\"\r\n0123456789\r\n1\t\r\n!\r\n\
                    0;last\r\nX-Trailer: t\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n";
        // The framing lines in the trailer section are not a head: the ambiguous one is third.
        let pipeline = format!(
            "{}GET / HTTP/1.1\r\n\r\n{}",
            post("Transfer-Encoding: chunked\r\n", body),
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "0\r\n\r\n"
            ),
        );
        assert_eq!(track(pipeline.as_bytes()), found(2, CL_TE, 2));
        // No trailers, uppercase hex, leading zeros.
        let pipeline = format!(
            "{}GET / HTTP/1.1\r\n\r\n",
            post(
                "Transfer-Encoding: chunked\r\n",
                "00B\r\nhello world\r\n000\r\n\r\n"
            ),
        );
        assert_eq!(track(pipeline.as_bytes()), clean(2));
    }

    #[test]
    fn similar_names_and_values_are_not_framing() {
        let heads = [
            post(
                "X-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            post(
                "Content-Lengths: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            post(
                "Content-Length: 0\r\nTransfer-Encodings: chunked\r\nContent-Type: a\r\n",
                "",
            ),
            post(
                "Content-Length: 0\r\nX-A: Transfer-Encoding: chunked\r\n",
                "",
            ),
            post("Content-Length: 0\r\nX-A: b\r\n\tContent-Length: 0\r\n", ""),
            post("Transfer_Encoding: chunked\r\nContent-Length: 0\r\n", ""),
            // Tabs in other values are whitespace, and in a trailer section they are not a head.
            post(
                "X-Tabs:\tvalue\t\r\nContent-Type:\ttext/plain\r\nContent-Length: 0\r\n",
                "",
            ),
            post(
                "Content-Lengths:\t5\r\nTransfer-Encodings:\tchunked\r\nTE:\ttrailers\r\n",
                "",
            ),
            post(
                "Transfer-Encoding: chunked\r\n",
                "0\r\nContent-Length:\t5\r\nTransfer-Encoding:\tchunked\r\n\r\n",
            ),
        ];
        for head in heads {
            let pipeline = format!("{head}GET / HTTP/1.1\r\n\r\n");
            assert_eq!(track(pipeline.as_bytes()), clean(2), "{head:?}");
        }
    }

    #[test]
    fn empty_lines_before_a_request_are_skipped() {
        let pipeline = format!(
            "\r\n\nGET / HTTP/1.1\r\n\r\n\r\n{}",
            post(
                "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n"
            ),
        );
        assert_eq!(track(pipeline.as_bytes()), found(1, CL_TE, 1));
    }

    #[test]
    fn what_hyper_refuses_stops_tracking() {
        // (A bare CR inside a line is not looked for: hyper refuses the head and closes.)
        let refused = [
            // bare CR before the request line, starting a line, in a chunk line
            "\rGET / HTTP/1.1\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nX: a\r\n\rX: b\r\n\r\n".to_string(),
            post("Transfer-Encoding: chunked\r\n", "5\rhello\r\n0\r\n\r\n"),
            // a request line that does not start with a token (a WebSocket frame, TLS)
            "\u{1}\u{2}GET / HTTP/1.1\r\n\r\n".to_string(),
            // chunk lines: not hex, LF-only, LF in an extension, overflow, data longer than its size
            post("Transfer-Encoding: chunked\r\n", "zz\r\n"),
            post("Transfer-Encoding: chunked\r\n", "5\nhello\n0\n\n"),
            post("Transfer-Encoding: chunked\r\n", "5;a\nhello\r\n"),
            post("Transfer-Encoding: chunked\r\n", "fffffffffffffffff1\r\n"),
            post("Transfer-Encoding: chunked\r\n", "2\r\nhello\r\n"),
            post("Transfer-Encoding: chunked\r\n", "0\r\n\r\r"),
            // malformed lengths
            post("Content-Length: 5, 5\r\n", "hello"),
            post("Content-Length: +5\r\n", "hello"),
            post("Content-Length: 99999999999999999999999\r\n", "hello"),
            post("Content-Length: \r\n", "hello"),
        ];
        for bytes in refused {
            let then = format!(
                "{bytes}{}",
                post("Content-Length: 1\r\nContent-Length: 1\r\n", "x")
            );
            let outcome = track(then.as_bytes());
            assert!(
                outcome.lost && outcome.finding.is_none(),
                "{bytes:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn a_head_longer_than_hyper_accepts_stops_tracking() {
        let mut tracker = FramingTracker::new(100);
        let head = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(tracker.feed(head.as_bytes()), None);
        assert!(tracker.is_lost());
        assert_eq!(tracker.heads(), 0);
        // The limit is per head, not per connection.
        let mut tracker = FramingTracker::new(100);
        for _ in 0..10 {
            tracker.feed(b"GET /a-path-of-some-length HTTP/1.1\r\nHost: localhost\r\n\r\n");
        }
        assert_eq!(track_outcome(&tracker), clean(10));
    }

    fn track_outcome(tracker: &FramingTracker) -> Outcome {
        Outcome {
            finding: tracker.finding(),
            heads: tracker.heads(),
            lost: tracker.is_lost(),
        }
    }

    #[test]
    fn huge_lengths_are_counted_not_read() {
        let mut tracker = FramingTracker::new(LIMIT);
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", u64::MAX);
        tracker.feed(head.as_bytes());
        tracker.feed(&[b'x'; 4096]);
        assert_eq!(track_outcome(&tracker), clean(1));
        assert_eq!(tracker.state, State::Body(u64::MAX - 4096));
        let mut tracker = FramingTracker::new(LIMIT);
        tracker.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n");
        assert_eq!(tracker.state, State::ChunkData(u64::MAX));
    }

    #[test]
    fn the_pipeline_refuses_the_ambiguous_request_and_any_after() {
        let framing = Framing::default();
        assert_eq!(framing.check_next_request(), Ok(()));
        framing.publish(Finding {
            request: 2,
            ambiguity: REPEATED,
        });
        assert_eq!(framing.check_next_request(), Ok(()));
        assert_eq!(framing.check_next_request(), Err(REPEATED));
        assert_eq!(framing.check_next_request(), Err(REPEATED));
        let framing = Framing::default();
        framing.publish(Finding {
            request: 0,
            ambiguity: CL_TE,
        });
        assert_eq!(framing.check_next_request(), Err(CL_TE));
    }

    /// The fuzz target's checks (`listener::fuzz::h1_framing`: split invariance, generated pipelines
    /// tracked exactly, and real hyper serving them through the watch with the verdicts on the
    /// right requests) on 300 pseudo-random inputs, so they run without nightly.
    #[test]
    fn agrees_with_hyper_on_generated_pipelines() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let input: Vec<u8> = (0..256)
                .map(|_| {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            crate::listener::fuzz::h1_framing(&input);
        }
    }
}
