//! Fuzzing oracles for the HTTP/1 listener (`fuzz/fuzz_targets/h1_framing.rs`,
//! `error_heads.rs`): the framing tracker against real hyper, and the error-head rewriter under
//! any sequence of writes. Compiled only for cargo-fuzz (`--cfg fuzzing`) and for the corpus
//! replay test (`src/fuzz_corpus.rs`).

use std::net::{IpAddr, Ipv4Addr};

use crate::config::MissingCert;

/// HTTP/1 framing (`listener::framing`): the bytes as they are, and a well-formed pipeline
/// generated from them. The tracker never panics and its outcome does not depend on how the
/// bytes are split into reads; on the generated pipeline it finds exactly the ambiguous request
/// generated (or none), never losing track; and real hyper, serving either through the
/// [`FramingWatch`](crate::listener::framing::FramingWatch), dispatches the requests with the
/// bodies generated and the pipeline's verdicts land on the requests they are about.
pub fn h1_framing(data: &[u8]) {
    use crate::listener::framing::FramingTracker;

    let whole = framing_outcome(data, &[]);
    // Read sizes of 1 to 64 bytes, drawn from the input itself.
    let split: Vec<usize> = data.iter().map(|b| usize::from(b % 64) + 1).collect();
    assert_eq!(framing_outcome(data, &split), whole, "split into {split:?}");
    if data.len() <= 4096 {
        assert_eq!(
            framing_outcome(data, &vec![1; data.len()]),
            whole,
            "byte by byte"
        );
    }
    let served = h1::serve(data);
    h1::check_raw_verdicts(&served);

    let pipeline = h1::Pipeline::generate(data);
    let mut tracker = FramingTracker::new(h1::HYPER_BUFFER * 4);
    let finding = tracker.feed(&pipeline.bytes);
    let context = format!("{:?}", String::from_utf8_lossy(&pipeline.bytes));
    assert!(!tracker.is_lost(), "lost track of {context}");
    assert_eq!(finding, pipeline.finding(), "{context}");
    assert_eq!(tracker.heads(), pipeline.clean_heads(), "{context}");
    assert_eq!(
        framing_outcome(&pipeline.bytes, &split),
        (finding, tracker.heads(), false),
        "{context} split into {split:?}"
    );
    let served = h1::serve(&pipeline.bytes);
    assert_eq!(served, pipeline.expected_service(), "{context}");
}

/// (finding, heads, lost) after reads of `sizes` bytes, then the rest.
fn framing_outcome(
    data: &[u8],
    sizes: &[usize],
) -> (Option<crate::listener::framing::Finding>, u64, bool) {
    let mut tracker = crate::listener::framing::FramingTracker::new(h1::HYPER_BUFFER * 4);
    let mut reported = None;
    let mut rest = data;
    for &size in sizes {
        let (read, after) = rest.split_at(size.min(rest.len()));
        if let Some(finding) = tracker.feed(read) {
            assert!(reported.is_none(), "a finding reported twice");
            reported = Some(finding);
        }
        rest = after;
    }
    if let Some(finding) = tracker.feed(rest) {
        assert!(reported.is_none(), "a finding reported twice");
        reported = Some(finding);
    }
    assert_eq!(reported, tracker.finding(), "reported and kept differ");
    (tracker.finding(), tracker.heads(), tracker.is_lost())
}

/// The generator of well-formed pipelines and the real-hyper oracle for [`h1_framing`].
mod h1 {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::listener::framing::{Ambiguity, Finding, Framing, FramingWatch};

    /// hyper's `max_buf_size` in the oracle (its minimum is 8 KiB).
    pub const HYPER_BUFFER: usize = 16 * 1024;

    /// What the service saw of one request: the pipeline's verdict, whether hyper's request
    /// still has a `Transfer-Encoding` / `Content-Length` header, and the body it read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Served {
        pub verdict: Result<(), Ambiguity>,
        pub transfer_encoding: bool,
        pub content_length: bool,
        /// `None`: not read (refused), or the body failed.
        pub body: Option<Vec<u8>>,
    }

    /// Serves `bytes` (then EOF) with hyper over the framing watch; the service refuses what
    /// the pipeline would (400 and close, body unread) and reads every other body whole.
    pub fn serve(bytes: &[u8]) -> Vec<Served> {
        thread_local! {
            static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
        }
        RUNTIME.with(|runtime| runtime.block_on(serve_async(bytes)))
    }

    async fn serve_async(bytes: &[u8]) -> Vec<Served> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let framing = Arc::new(Framing::default());
        let io = FramingWatch::new(server, framing.clone(), HYPER_BUFFER);
        let served = Arc::new(Mutex::new(Vec::new()));
        let record = served.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let framing = framing.clone();
            let record = record.clone();
            async move {
                let verdict = framing.check_next_request();
                let headers = request.headers();
                let mut seen = Served {
                    verdict,
                    transfer_encoding: headers.contains_key(header::TRANSFER_ENCODING),
                    content_length: headers.contains_key(header::CONTENT_LENGTH),
                    body: None,
                };
                let mut response = Response::new(Full::new(Bytes::new()));
                if verdict.is_err() {
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                } else if let Ok(body) = request.into_body().collect().await {
                    seen.body = Some(body.to_bytes().to_vec());
                }
                if let Ok(mut record) = record.lock() {
                    record.push(seen);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // The client's EOF comes right after its bytes: answer what it sent first.
            .half_close(true)
            .max_buf_size(HYPER_BUFFER)
            .serve_connection(TokioIo::new(io), service);
        let write = async {
            let _ = client.write_all(bytes).await;
            let _ = client.shutdown().await;
            // Drain the responses, or hyper would stall once the pipe is full.
            let mut sink = [0u8; 8192];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let finished = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(connection, write)
        })
        .await;
        assert!(finished.is_ok(), "hyper did not finish the connection");
        let served = served.lock().map(|s| s.clone()).unwrap_or_default();
        served
    }

    /// On arbitrary bytes: the one refused request is the last one served, and hyper's request
    /// agrees with the verdict (it kept the `Transfer-Encoding` of a CL+TE head, and the one
    /// `Content-Length` of a repeated one).
    pub fn check_raw_verdicts(served: &[Served]) {
        for (index, request) in served.iter().enumerate() {
            let Err(ambiguity) = request.verdict else {
                continue;
            };
            assert_eq!(index + 1, served.len(), "requests served after a refusal");
            match ambiguity {
                Ambiguity::ContentLengthWithTransferEncoding => {
                    assert!(request.transfer_encoding, "CL+TE without TE: {served:?}")
                }
                Ambiguity::RepeatedContentLength => assert!(
                    request.content_length && !request.transfer_encoding,
                    "repeated CL on {served:?}"
                ),
                // hyper trimmed the tab: the request has the framing header it was in.
                Ambiguity::TabInFramingValue => assert!(
                    request.content_length || request.transfer_encoding,
                    "a tab in a framing value without a framing header: {served:?}"
                ),
            }
        }
    }

    /// Reads choices from the fuzz input; zeros once it runs out.
    struct Draw<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Draw<'a> {
        fn byte(&mut self) -> u8 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            b
        }

        fn below(&mut self, n: usize) -> usize {
            usize::from(self.byte()) % n
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }

        fn bytes(&mut self, max: usize) -> &'a [u8] {
            let len = self.below(max + 1);
            let start = self.pos.min(self.data.len());
            let end = (start + len).min(self.data.len());
            self.pos += len;
            &self.data[start..end]
        }
    }

    const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-Sync"];
    const FILLERS: &[&str] = &[
        "Accept: */*",
        "Content-Type: text/plain",
        "Cookie: a=b; Content-Length=5",
        "X-Content-Length: 5",
        "Content-Lengths: 7",
        "Content-Length-X: 1",
        "Transfer-Encodings: chunked",
        "X-Note: Transfer-Encoding: chunked",
        "X-Tabs:\tvalue\t",
        "TE: trailers",
        "Connection: keep-alive",
        "Connection: Upgrade\r\nUpgrade: websocket",
        "transfer_encoding: chunked",
        "X-Empty:",
        "X-Obs: caf\u{e9}",
    ];
    const LENGTH_NAMES: &[&str] = &["Content-Length", "content-length", "CONTENT-LENGTH"];
    const TRANSFER_NAMES: &[&str] = &[
        "Transfer-Encoding",
        "transfer-encoding",
        "TRANSFER-ENCODING",
    ];
    /// Around a framing value: without a tab (a tab there is an ambiguity of its own), and
    /// with one.
    const SEPARATORS: &[&str] = &[": ", ":", ":  "];
    const BLANKS: &[&str] = &["", "", " ", "  "];
    const TAB_SEPARATORS: &[&str] = &[":\t", ": \t", ":\t "];
    const TAB_BLANKS: &[&str] = &["\t", " \t", "\t "];
    /// After a chunk size, where a tab is whitespace to hyper.
    const CHUNK_BLANKS: &[&str] = &["", "", " ", "\t", " \t"];
    const ZEROS: &[&str] = &["", "", "0", "00"];
    const CHUNKED: &[&str] = &["chunked", "Chunked", "CHUNKED", "gzip, chunked"];
    const EXTENSIONS: &[&str] = &["", "", ";a=b", ";x", " ;q=\"v\"", "\t;n"];
    const TRAILERS: &[&str] = &[
        "X-Trailer: t",
        "Content-Length: 60",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding:\tchunked\t",
        "Checksum:abc",
    ];
    /// Text that reads as framing headers and a request, put into bodies.
    const HEADER_LIKE: &str =
        "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nGET /in-body HTTP/1.1\r\n\r\n";

    #[derive(Debug, Clone, Copy)]
    enum Tabs {
        No,
        Some,
        Maybe,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Framed {
        Empty,
        Length,
        Chunked,
        Ambiguous(Ambiguity),
    }

    /// One generated request, and what hyper makes of it.
    struct Generated {
        framed: Framed,
        /// hyper's request keeps a `Transfer-Encoding` / `Content-Length` header.
        transfer_encoding: bool,
        content_length: bool,
        body: Vec<u8>,
    }

    pub struct Pipeline {
        pub bytes: Vec<u8>,
        requests: Vec<Generated>,
        /// The ambiguous request, if one was generated.
        ambiguous: Option<(usize, Ambiguity)>,
    }

    impl Pipeline {
        pub fn generate(data: &[u8]) -> Self {
            let mut draw = Draw { data, pos: 0 };
            let count = 1 + draw.below(4);
            let ambiguous_at = draw.below(count * 3);
            let mut pipeline = Pipeline {
                bytes: Vec::new(),
                requests: Vec::new(),
                ambiguous: None,
            };
            for index in 0..count {
                let framed = if index == ambiguous_at {
                    let ambiguity = draw.pick(&[
                        Ambiguity::ContentLengthWithTransferEncoding,
                        Ambiguity::RepeatedContentLength,
                        Ambiguity::TabInFramingValue,
                    ]);
                    if pipeline.ambiguous.is_none() {
                        pipeline.ambiguous = Some((index, ambiguity));
                    }
                    Framed::Ambiguous(ambiguity)
                } else {
                    draw.pick(&[Framed::Empty, Framed::Length, Framed::Chunked])
                };
                let generated = pipeline.request(&mut draw, framed);
                pipeline.requests.push(generated);
            }
            pipeline
        }

        /// Appends one request.
        fn request(&mut self, draw: &mut Draw<'_>, framed: Framed) -> Generated {
            let eol = draw.pick(&["\r\n", "\r\n", "\n"]);
            let mut head = String::new();
            head.push_str(draw.pick(&["", "", "\r\n", "\n", "\r\n\n"]));
            let target: String = draw
                .bytes(12)
                .iter()
                .map(|b| char::from(b"abcxyz019-._~%/?=&"[usize::from(*b) % 18]))
                .collect();
            head.push_str(&format!("{} /{target} HTTP/1.1{eol}", draw.pick(METHODS)));
            let mut lines: Vec<String> = vec!["Host: localhost".into()];
            for _ in 0..draw.below(4) {
                let at = draw.below(lines.len() + 1);
                lines.insert(at, draw.pick(FILLERS).replace("\r\n", eol));
            }
            let mut body = draw.bytes(40).to_vec();
            if draw.below(4) == 0 {
                let at = draw.below(body.len() + 1);
                body.splice(at..at, HEADER_LIKE.bytes());
            }
            // The blanks around a framing value: `Tabs::No` none is a tab, `Tabs::Some` one is,
            // `Tabs::Maybe` either (where another ambiguity decides the verdict).
            let around = |draw: &mut Draw<'_>, tabs: Tabs| {
                let tabbed = match tabs {
                    Tabs::No => 0,
                    Tabs::Some => 1 + draw.below(3),
                    Tabs::Maybe => draw.below(4),
                };
                let separator = if tabbed & 1 != 0 {
                    TAB_SEPARATORS
                } else {
                    SEPARATORS
                };
                let blanks = if tabbed & 2 != 0 { TAB_BLANKS } else { BLANKS };
                (draw.pick(separator), draw.pick(blanks))
            };
            let length = |draw: &mut Draw<'_>, len: usize, tabs: Tabs| {
                let name = draw.pick(LENGTH_NAMES);
                let (separator, blanks) = around(draw, tabs);
                format!("{name}{separator}{}{len}{blanks}", draw.pick(ZEROS))
            };
            let transfer = |draw: &mut Draw<'_>, tabs: Tabs| {
                let name = draw.pick(TRANSFER_NAMES);
                let (separator, blanks) = around(draw, tabs);
                format!("{name}{separator}{}{blanks}", draw.pick(CHUNKED))
            };
            let mut framing = Vec::new();
            // hyper keeps Transfer-Encoding, and drops Content-Length next to it.
            let (transfer_encoding, content_length) = match framed {
                Framed::Empty => {
                    body.clear();
                    (false, false)
                }
                Framed::Length => {
                    framing.push(length(draw, body.len(), Tabs::No));
                    (false, true)
                }
                Framed::Chunked => {
                    framing.push(transfer(draw, Tabs::No));
                    (true, false)
                }
                Framed::Ambiguous(Ambiguity::ContentLengthWithTransferEncoding) => {
                    let decoy = draw.below(100);
                    framing.push(length(draw, decoy, Tabs::Maybe));
                    framing.push(transfer(draw, Tabs::Maybe));
                    (true, false)
                }
                Framed::Ambiguous(Ambiguity::RepeatedContentLength) => {
                    framing.push(length(draw, body.len(), Tabs::Maybe));
                    framing.push(length(draw, body.len(), Tabs::Maybe));
                    (false, true)
                }
                Framed::Ambiguous(Ambiguity::TabInFramingValue) => {
                    if draw.below(2) == 0 {
                        framing.push(length(draw, body.len(), Tabs::Some));
                        (false, true)
                    } else {
                        framing.push(transfer(draw, Tabs::Some));
                        (true, false)
                    }
                }
            };
            let chunked = transfer_encoding;
            for line in framing {
                let at = draw.below(lines.len() + 1);
                lines.insert(at, line);
            }
            for line in lines {
                head.push_str(&line);
                head.push_str(eol);
            }
            head.push_str(eol);
            self.bytes.extend_from_slice(head.as_bytes());
            if chunked {
                self.chunk(draw, &body);
            } else {
                self.bytes.extend_from_slice(&body);
            }
            Generated {
                framed,
                transfer_encoding,
                content_length,
                body,
            }
        }

        fn chunk(&mut self, draw: &mut Draw<'_>, body: &[u8]) {
            let mut rest = body;
            loop {
                let size = if rest.is_empty() {
                    0
                } else {
                    (1 + draw.below(16)).min(rest.len())
                };
                let digits = if draw.below(2) == 0 {
                    format!("{size:x}")
                } else {
                    format!("{size:X}")
                };
                let line = format!(
                    "{}{digits}{}{}\r\n",
                    draw.pick(ZEROS),
                    draw.pick(CHUNK_BLANKS),
                    draw.pick(EXTENSIONS)
                );
                self.bytes.extend_from_slice(line.as_bytes());
                if size == 0 {
                    break;
                }
                self.bytes.extend_from_slice(&rest[..size]);
                self.bytes.extend_from_slice(b"\r\n");
                rest = &rest[size..];
            }
            for _ in 0..draw.below(3) {
                self.bytes.extend_from_slice(draw.pick(TRAILERS).as_bytes());
                self.bytes.extend_from_slice(b"\r\n");
            }
            self.bytes.extend_from_slice(b"\r\n");
        }

        pub fn finding(&self) -> Option<Finding> {
            self.ambiguous.map(|(request, ambiguity)| Finding {
                request: request as u64,
                ambiguity,
            })
        }

        /// Heads the tracker counts: all, or those before the ambiguous one.
        pub fn clean_heads(&self) -> u64 {
            self.ambiguous
                .map_or(self.requests.len(), |(index, _)| index) as u64
        }

        /// What the service sees: every request up to the ambiguous one (refused, then closed).
        pub fn expected_service(&self) -> Vec<Served> {
            let served = self
                .ambiguous
                .map_or(self.requests.len(), |(index, _)| index + 1);
            self.requests[..served]
                .iter()
                .map(|request| {
                    let (verdict, body) = match request.framed {
                        Framed::Ambiguous(ambiguity) => (Err(ambiguity), None),
                        _ => (Ok(()), Some(request.body.clone())),
                    };
                    Served {
                        verdict,
                        transfer_encoding: request.transfer_encoding,
                        content_length: request.content_length,
                        body,
                    }
                })
                .collect()
        }
    }
}

/// The error-head rewriter (`listener/error_heads.rs`, `ParseErrorHeads`) under any sequence of writes,
/// service calls, body ends, flushes and upgrades, drawn from `data`:
/// - every write is reported whole to hyper (its bookkeeping stays its own);
/// - while a response of the service is open, or after an upgrade, the bytes on the wire are
///   exactly the bytes written (a body holding hyper's error head passes byte for byte);
/// - outside a response, only a write that is hyper's error head to the letter is rewritten,
///   into the proxy's answer with the same status line.
pub fn error_heads(data: &[u8]) {
    use std::sync::{Arc, OnceLock};
    use tokio::io::AsyncWriteExt;

    use crate::listener::error_heads::{ParseErrorHeads, RefusedHeads, ResponseGate};

    const HEAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 04:00:00 GMT\r\n\r\n";
    static SHARED: OnceLock<crate::Shared> = OnceLock::new();
    let shared = SHARED
        .get_or_init(|| {
            let text = "[listen]\nhttps = \"127.0.0.1:0\"\n\n[tls]\ncert = \"fuzz-missing.crt\"\nkey = \"fuzz-missing.key\"\nself_signed_if_missing = true\n\n[log]\naccess = false\n";
            let snapshot = crate::config::load_str_with(text, "fuzz.toml", MissingCert::InMemory)
                .unwrap_or_else(|errors| panic!("fuzz config: {errors:?}"));
            Arc::new(arc_swap::ArcSwap::from_pointee(snapshot))
        })
        .clone();
    let gate = Arc::new(ResponseGate::default());
    let refused = RefusedHeads {
        shared,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        gate: gate.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|err| panic!("runtime: {err}"));
    runtime.block_on(async move {
        let mut io = Box::pin(ParseErrorHeads::new(Vec::<u8>::new(), refused));
        let mut end = None;
        let (mut open, mut tunnel) = (false, false);
        let mut ops = data.iter();
        while let Some(&op) = ops.next() {
            let write: Vec<u8> = match op % 8 {
                0 => {
                    // hyper drops a response's body before it takes the next request.
                    drop(end.take());
                    end = Some(gate.response_begins());
                    open = true;
                    continue;
                }
                1 => {
                    end = None;
                    continue;
                }
                2 => {
                    let _ = io.flush().await;
                    if end.is_none() {
                        open = false;
                    }
                    continue;
                }
                // A `101` is a response of the service: only while one is open.
                3 => {
                    if let Some(end) = &end {
                        end.upgraded();
                        tunnel = true;
                    }
                    continue;
                }
                4 => HEAD.to_vec(),
                // A write holding the head with one byte more or less: never rewritten.
                5 => HEAD[..HEAD.len() - 1].to_vec(),
                _ => {
                    let len = usize::from(ops.next().copied().unwrap_or(0) % 32);
                    ops.by_ref().take(len).copied().collect()
                }
            };
            let before = io.as_ref().get_ref().get_ref().len();
            let written = std::future::poll_fn(|cx| {
                tokio::io::AsyncWrite::poll_write(io.as_mut(), cx, &write)
            })
            .await
            .unwrap_or_else(|err| panic!("write: {err}"));
            assert_eq!(written, write.len(), "a write reported short");
            let out = &io.as_ref().get_ref().get_ref()[before..];
            if open || tunnel || write != HEAD {
                assert_eq!(
                    out,
                    &write[..],
                    "bytes changed (open {open}, tunnel {tunnel})"
                );
            } else {
                assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
                assert!(
                    out.windows(14).any(|w| w == b"x-request-id: "),
                    "no request id"
                );
            }
        }
        drop(end);
    });
}

/// The PROXY protocol header path (`listener::proxy_protocol`): read as the listener reads it,
/// [`frame`](crate::listener::proxy_protocol::frame) only ever asks for more bytes than it has,
/// never past [`MAX_V2`](crate::listener::proxy_protocol::MAX_V2), and a whole header is exactly
/// the bytes read (nothing of the stream after it is taken); `ppp` never panics on a framed
/// header, and a v1 header it accepts is the whole line. The guard of unlisted peers decides
/// once, and its verdict on a prefix never changes as more bytes arrive.
pub fn proxy_header(data: &[u8]) {
    use crate::listener::proxy_protocol::{frame, is_signature, parse, Frame, MAX_V2};

    let mut read = 0;
    loop {
        match frame(&data[..read]) {
            Frame::Need(total) => {
                assert!(total > read, "asked for {total} bytes with {read} read");
                assert!(total <= MAX_V2, "asked for {total} bytes");
                if total > data.len() {
                    break;
                }
                // The listener reads exactly up to `total`; so does this.
                read = total;
            }
            Frame::Whole(len) => {
                assert_eq!(len, read, "a whole header is the bytes read");
                if let Ok(source) = parse(&data[..len]) {
                    if data.starts_with(b"PROXY ") {
                        assert!(
                            data[..len].ends_with(b"\r\n"),
                            "v1 without CRLF: {source:?}"
                        );
                    }
                }
                break;
            }
            Frame::Invalid(_) => break,
        }
    }

    let mut verdict = None;
    for end in 0..=data.len().min(16) {
        let now = is_signature(&data[..end]);
        if let Some(decided) = verdict {
            assert_eq!(
                now,
                Some(decided),
                "the verdict on {:?} changed",
                &data[..end]
            );
        }
        verdict = verdict.or(now);
    }
}
