//! Response compression of proxied responses: brotli or gzip, chosen from the request's
//! `Accept-Encoding`, for compressible responses the upstream left uncompressed. The body is
//! compressed as it streams (never collected), and flushed whenever the upstream pauses, so a
//! slow stream reaches the client as it is produced.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::write::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use tokio::io::AsyncWrite;

use crate::body::{BoxError, ResponseBody};
use crate::encoding::{self, Encoding};

/// Smaller bodies are sent as they are: the gain is a few hundred bytes at most, and they fit
/// in one or two TCP segments anyway. A body of unknown length (chunked) is compressed.
pub const MIN_SIZE: u64 = 1024;
/// zlib's level 5: nearly level 6's ratio at a good deal more speed, for on-the-fly work.
const GZIP_LEVEL: i32 = 5;
/// Brotli quality 4 beats gzip -6 on ratio at a similar speed; the default 11 is for
/// precompressing static files, far too slow per request.
const BROTLI_QUALITY: i32 = 4;
/// A 512 KiB window (as ngx_brotli's default) bounds the encoder's memory per response.
const BROTLI_WINDOW_BITS: i32 = 19;

/// Headers that describe the exact bytes sent: they would be wrong for a compressed body, so a
/// response carrying one is not compressed.
static DIGEST_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("content-digest"),
    HeaderName::from_static("repr-digest"),
    HeaderName::from_static("digest"),
    HeaderName::from_static("content-md5"),
];

/// What compression needs to know of a request, taken before the request moves upstream.
#[derive(Debug, Clone, Copy)]
pub struct Negotiation {
    /// `None`: the client accepts neither coding.
    encoding: Option<Encoding>,
    /// A HEAD answer gets the headers a GET would get; it has no body to compress.
    head: bool,
}

impl Negotiation {
    /// A request with `Cache-Control: no-transform` (RFC 9111 §5.2.1.6) gets no coding. The
    /// request's `Range` is not needed: a 206 is never compressed, and a 200 to a range request
    /// is the whole representation.
    pub fn of<B>(request: &Request<B>) -> Negotiation {
        let headers = request.headers();
        Negotiation {
            encoding: negotiate(headers).filter(|_| !no_transform(headers)),
            head: request.method() == Method::HEAD,
        }
    }

    /// Compresses `response` when it qualifies (see [`compressible_response`]) and the client
    /// accepts a coding. Every response that qualifies gets `Vary: Accept-Encoding`, compressed
    /// or not, so a cache never hands one client's coding to another.
    pub fn apply(&self, mut response: Response<ResponseBody>) -> Response<ResponseBody> {
        if !compressible_response(response.status(), response.headers()) {
            return response;
        }
        let headers = response.headers_mut();
        vary_on_accept_encoding(headers);
        let Some(encoding) = self.encoding else {
            return response;
        };
        headers.insert(CONTENT_ENCODING, encoding.content_encoding());
        // The length and byte ranges were those of the uncompressed body.
        headers.remove(CONTENT_LENGTH);
        headers.remove(ACCEPT_RANGES);
        weaken_etag(headers);
        if self.head {
            // Keep the upstream's empty body: it tells hyper to send no body and no length.
            return response;
        }
        response.map(|body| ResponseBody::boxed(CompressBody::new(body, encoding)))
    }
}

/// The coding to use for a request's `Accept-Encoding`: the best accepted one (see
/// [`encoding::accepted`]), `None` when the client accepts neither.
pub fn negotiate(headers: &HeaderMap) -> Option<Encoding> {
    encoding::accepted(headers).first().copied()
}

/// Whether a response may be compressed, whatever the client accepts: it has a body of a
/// compressible type of at least [`MIN_SIZE`] (or of unknown length), the upstream did not
/// encode it, it is not a range, and nothing forbids transforming it.
pub fn compressible_response(status: StatusCode, headers: &HeaderMap) -> bool {
    // 1xx, 204 and 304 have no body; a 206 is a byte range of the uncompressed representation.
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    let encoded = headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        value
            .to_str()
            .map_or(true, |text| !text.trim().eq_ignore_ascii_case("identity"))
    });
    if encoded || headers.contains_key(CONTENT_RANGE) {
        return false;
    }
    // RFC 9111 §5.2.2.6: a proxy must not change the content of a no-transform response.
    if no_transform(headers) || DIGEST_HEADERS.iter().any(|name| headers.contains_key(name)) {
        return false;
    }
    let large_enough = match headers.get(CONTENT_LENGTH) {
        None => true,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .is_some_and(|length| length >= MIN_SIZE),
    };
    large_enough && headers.get(CONTENT_TYPE).is_some_and(compressible_type)
}

/// `Cache-Control: no-transform`, in any of the header's lines.
fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// Text and text-like types. Media that is already compressed (images, audio, video, zip,
/// gzip, woff2, octet-stream) gains nothing; `text/event-stream` is left alone so every event
/// reaches the client as it is sent.
fn compressible_type(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let kind = kind.to_ascii_lowercase();
    let subtype = subtype.to_ascii_lowercase();
    if subtype.ends_with("+json") || subtype.ends_with("+xml") {
        return true;
    }
    match kind.as_str() {
        "text" => subtype != "event-stream",
        "application" => matches!(
            subtype.as_str(),
            "json"
                | "javascript"
                | "x-javascript"
                | "ecmascript"
                | "xml"
                | "wasm"
                | "vnd.ms-fontobject"
        ),
        "font" => matches!(subtype.as_str(), "ttf" | "otf"),
        "image" => matches!(subtype.as_str(), "x-icon" | "vnd.microsoft.icon"),
        _ => false,
    }
}

/// Appends `Vary: Accept-Encoding` unless the response already varies on it (or on
/// everything, `Vary: *`).
fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    let varies = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|token| {
                let token = token.trim();
                token == "*" || token.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A strong ETag names the exact bytes of the uncompressed body; the compressed body is only
/// semantically the same, so its ETag becomes weak (`"x"` → `W/"x"`), as nginx does.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"\"") {
        let mut weak = Vec::with_capacity(etag.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, weak);
        }
    }
}

/// A compressor writing into memory: it never waits, so it is driven from within `poll_frame`.
/// Brotli's state is large (several KiB before its buffers), hence the box.
enum Encoder {
    Brotli(Box<BrotliEncoder<Vec<u8>>>),
    Gzip(GzipEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(encoding: Encoding) -> Encoder {
        match encoding {
            Encoding::Brotli => {
                let params = async_compression::brotli::EncoderParams::default()
                    .quality(Level::Precise(BROTLI_QUALITY))
                    .window_size(BROTLI_WINDOW_BITS);
                Encoder::Brotli(Box::new(BrotliEncoder::with_params(Vec::new(), params)))
            }
            Encoding::Gzip => Encoder::Gzip(GzipEncoder::with_quality(
                Vec::new(),
                Level::Precise(GZIP_LEVEL),
            )),
        }
    }

    fn writer(&mut self) -> Pin<&mut (dyn AsyncWrite + Unpin)> {
        let writer: &mut (dyn AsyncWrite + Unpin) = match self {
            Encoder::Brotli(encoder) => encoder.as_mut(),
            Encoder::Gzip(encoder) => encoder,
        };
        Pin::new(writer)
    }

    fn write(&mut self, cx: &mut Context<'_>, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let written = ready_now(self.writer().poll_write(cx, data))?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[written..];
        }
        Ok(())
    }

    /// Pushes out everything written so far as complete compressed blocks.
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        ready_now(self.writer().poll_flush(cx))
    }

    /// Ends the compressed stream (gzip's trailer, brotli's last block).
    fn finish(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        ready_now(self.writer().poll_shutdown(cx))
    }

    /// The compressed bytes produced since the last call, if any.
    fn take_output(&mut self) -> Option<Bytes> {
        let output = match self {
            Encoder::Brotli(encoder) => encoder.get_mut(),
            Encoder::Gzip(encoder) => encoder.get_mut(),
        };
        (!output.is_empty()).then(|| Bytes::from(std::mem::take(output)))
    }
}

/// The encoders write into a `Vec`, which is always ready; `Pending` would be a bug, reported as
/// an error rather than a stream that never wakes.
fn ready_now<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::Error::other(
            "the compressor did not complete in memory",
        )),
    }
}

pin_project_lite::pin_project! {
    /// A body compressed as it streams. Each upstream chunk is compressed as it arrives; when
    /// the upstream has nothing more ready, what was compressed so far is flushed to the
    /// client, so nothing waits in the compressor for the next chunk. An upstream error ends the
    /// stream with an error (the client sees a broken response, never a clean truncated one).
    /// Trailers are dropped.
    pub struct CompressBody<B> {
        #[pin]
        inner: B,
        encoder: Encoder,
        // Input written since the last flush.
        unflushed: bool,
        done: bool,
    }
}

impl<B> CompressBody<B> {
    pub fn new(inner: B, encoding: Encoding) -> Self {
        CompressBody {
            inner,
            encoder: Encoder::new(encoding),
            unflushed: false,
            done: false,
        }
    }
}

impl<B> Body for CompressBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        while !*this.done {
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if let Err(err) = this.encoder.write(cx, &data) {
                        *this.done = true;
                        return Poll::Ready(Some(Err(err.into())));
                    }
                    *this.unflushed = true;
                    if let Some(output) = this.encoder.take_output() {
                        return Poll::Ready(Some(Ok(Frame::data(output))));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(err.into())));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if let Err(err) = this.encoder.finish(cx) {
                        return Poll::Ready(Some(Err(err.into())));
                    }
                    return Poll::Ready(this.encoder.take_output().map(|out| Ok(Frame::data(out))));
                }
                Poll::Pending => {
                    if !*this.unflushed {
                        return Poll::Pending;
                    }
                    *this.unflushed = false;
                    if let Err(err) = this.encoder.flush(cx) {
                        *this.done = true;
                        return Poll::Ready(Some(Err(err.into())));
                    }
                    return match this.encoder.take_output() {
                        Some(output) => Poll::Ready(Some(Ok(Frame::data(output)))),
                        None => Poll::Pending,
                    };
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn accept(value: &'static str) -> Option<Encoding> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static(value),
        );
        negotiate(&headers)
    }

    #[test]
    fn negotiation_follows_q_values() {
        use Encoding::{Brotli, Gzip};
        assert_eq!(negotiate(&HeaderMap::new()), None);
        assert_eq!(accept(""), None);
        assert_eq!(accept("gzip, deflate, br, zstd"), Some(Brotli));
        assert_eq!(accept("gzip"), Some(Gzip));
        assert_eq!(accept("x-gzip"), Some(Gzip));
        assert_eq!(accept("GZIP;Q=0.5"), Some(Gzip));
        assert_eq!(accept("br;q=0.5, gzip"), Some(Gzip));
        assert_eq!(accept("br;q=0.8, gzip;q=0.8"), Some(Brotli));
        assert_eq!(accept("br;q=0, gzip"), Some(Gzip));
        assert_eq!(accept("br;q=0, gzip;q=0.000"), None);
        assert_eq!(accept("*"), Some(Brotli));
        assert_eq!(accept("*;q=0.5, br;q=0"), Some(Gzip));
        assert_eq!(accept("gzip, *;q=0"), Some(Gzip));
        assert_eq!(accept("deflate, zstd"), None);
        assert_eq!(accept("identity"), None);
        assert_eq!(accept("gzip;q=0.5, identity;q=0.9"), None);
        assert_eq!(accept("gzip;q=0.9, identity;q=0.9"), Some(Gzip));
        assert_eq!(accept("gzip, identity;q=0"), Some(Gzip));
        assert_eq!(accept("gzip, gzip;q=0"), None);
        assert_eq!(accept(" gzip ; q = 1.000 "), Some(Gzip));
    }

    #[test]
    fn malformed_weights_are_ignored() {
        assert_eq!(accept("gzip;q=2"), None);
        assert_eq!(accept("gzip;q=1.5"), None);
        assert_eq!(accept("gzip;q=0.1234"), None);
        assert_eq!(accept("gzip;q=-1"), None);
        assert_eq!(accept("gzip;q="), None);
        assert_eq!(accept("gzip;q"), None);
        assert_eq!(accept("br;q=x, gzip"), Some(Encoding::Gzip));
        assert_eq!(accept("gzip;level=1"), Some(Encoding::Gzip));
    }

    #[test]
    fn compressible_types() {
        let yes = [
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "text/plain",
            "application/json",
            "application/problem+json",
            "application/javascript",
            "application/xml",
            "application/atom+xml",
            "image/svg+xml",
            "application/wasm",
            "font/ttf",
        ];
        let no = [
            "text/event-stream",
            "image/png",
            "image/jpeg",
            "video/mp4",
            "audio/mpeg",
            "application/zip",
            "application/gzip",
            "font/woff2",
            "application/octet-stream",
            "application/pdf",
            "json",
            "",
        ];
        for ty in yes {
            assert!(compressible_type(&HeaderValue::from_static(ty)), "{ty}");
        }
        for ty in no {
            assert!(!compressible_type(&HeaderValue::from_static(ty)), "{ty}");
        }
    }

    fn response_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn which_responses_qualify() {
        let ok = StatusCode::OK;
        assert!(compressible_response(ok, &response_headers(&[])));
        assert!(compressible_response(
            ok,
            &response_headers(&[("content-length", "1024")])
        ));
        assert!(!compressible_response(
            ok,
            &response_headers(&[("content-length", "1023")])
        ));
        assert!(!compressible_response(
            ok,
            &response_headers(&[("content-length", "x")])
        ));
        assert!(compressible_response(
            StatusCode::NOT_FOUND,
            &response_headers(&[])
        ));
        for status in [204, 206, 304, 101] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!compressible_response(status, &response_headers(&[])));
        }
        assert!(compressible_response(
            ok,
            &response_headers(&[("content-encoding", "identity")])
        ));
        assert!(!compressible_response(
            ok,
            &response_headers(&[("content-encoding", "gzip")])
        ));
        assert!(!compressible_response(
            ok,
            &response_headers(&[("content-range", "bytes */5000")])
        ));
        assert!(!compressible_response(
            ok,
            &response_headers(&[("cache-control", "public, No-Transform")])
        ));
        assert!(!compressible_response(
            ok,
            &response_headers(&[("content-digest", "sha-256=:x:")])
        ));
        let mut untyped = HeaderMap::new();
        untyped.insert(CONTENT_LENGTH, HeaderValue::from_static("5000"));
        assert!(!compressible_response(ok, &untyped));
    }

    #[test]
    fn vary_is_merged_once() {
        let mut headers = HeaderMap::new();
        vary_on_accept_encoding(&mut headers);
        vary_on_accept_encoding(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);

        let mut headers = response_headers(&[("vary", "Cookie")]);
        vary_on_accept_encoding(&mut headers);
        let values: Vec<_> = headers.get_all(VARY).iter().collect();
        assert_eq!(values, ["Cookie", "Accept-Encoding"]);

        for existing in ["*", "cookie, accept-encoding"] {
            let mut headers = HeaderMap::new();
            headers.insert(VARY, HeaderValue::from_static(existing));
            vary_on_accept_encoding(&mut headers);
            let values: Vec<_> = headers.get_all(VARY).iter().collect();
            assert_eq!(values, [existing]);
        }
    }

    #[test]
    fn strong_etags_become_weak() {
        let mut headers = response_headers(&[("etag", "\"abc\"")]);
        weaken_etag(&mut headers);
        assert_eq!(headers[ETAG], "W/\"abc\"");
        weaken_etag(&mut headers);
        assert_eq!(headers[ETAG], "W/\"abc\"");
    }

    /// One step of a scripted upstream body.
    enum Step {
        Data(&'static [u8]),
        Trailers,
        Error,
        /// Nothing more, ever (an upstream that stalls).
        Stall,
    }

    struct Scripted(std::collections::VecDeque<Step>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            match self.0.pop_front() {
                None => Poll::Ready(None),
                Some(Step::Data(data)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(data))))),
                Some(Step::Trailers) => Poll::Ready(Some(Ok(Frame::trailers(HeaderMap::new())))),
                Some(Step::Error) => Poll::Ready(Some(Err(io::Error::other("upstream broke")))),
                Some(Step::Stall) => {
                    self.0.push_front(Step::Stall);
                    Poll::Pending
                }
            }
        }
    }

    /// The frames the compressed body yields until it ends or waits for its upstream.
    async fn compress(steps: Vec<Step>, encoding: Encoding) -> Vec<Result<Bytes, BoxError>> {
        let body = CompressBody::new(Scripted(steps.into()), encoding);
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        let wait = std::time::Duration::from_millis(300);
        while let Ok(Some(frame)) = tokio::time::timeout(wait, body.frame()).await {
            out.push(frame.map(|f| f.into_data().unwrap()));
        }
        out
    }

    fn concat(frames: Vec<Result<Bytes, BoxError>>) -> Vec<u8> {
        frames
            .into_iter()
            .flat_map(|f| f.unwrap().to_vec())
            .collect()
    }

    async fn decode(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                async_compression::tokio::bufread::GzipDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .await
                    .unwrap();
            }
            Encoding::Brotli => {
                async_compression::tokio::bufread::BrotliDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .await
                    .unwrap();
            }
        }
        out
    }

    #[tokio::test]
    async fn bodies_round_trip() {
        let text: &'static [u8] = (0..20_000)
            .flat_map(|i| format!("line {i} of a compressible body\n").into_bytes())
            .collect::<Vec<u8>>()
            .leak();
        for encoding in [Encoding::Gzip, Encoding::Brotli] {
            let steps = text
                .chunks(7000)
                .map(Step::Data)
                .chain([Step::Trailers])
                .collect();
            let compressed = concat(compress(steps, encoding).await);
            assert!(compressed.len() < text.len() / 5, "{encoding:?}");
            assert_eq!(decode(encoding, &compressed).await, text, "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn what_arrived_is_flushed_when_the_upstream_stalls() {
        for encoding in [Encoding::Gzip, Encoding::Brotli] {
            let steps = vec![
                Step::Data(b"first part, "),
                Step::Data(b"then more"),
                Step::Stall,
            ];
            let compressed = concat(compress(steps, encoding).await);
            let mut decoded = Vec::new();
            match encoding {
                Encoding::Gzip => {
                    let mut decoder = async_compression::tokio::write::GzipDecoder::new(Vec::new());
                    decoder.write_all(&compressed).await.unwrap();
                    decoder.flush().await.unwrap();
                    decoded.extend_from_slice(decoder.get_ref());
                }
                Encoding::Brotli => {
                    let mut decoder =
                        async_compression::tokio::write::BrotliDecoder::new(Vec::new());
                    decoder.write_all(&compressed).await.unwrap();
                    decoder.flush().await.unwrap();
                    decoded.extend_from_slice(decoder.get_ref());
                }
            }
            assert_eq!(decoded, b"first part, then more", "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn an_upstream_error_ends_the_stream_with_an_error() {
        let steps = vec![Step::Data(b"some text"), Step::Error];
        let frames = compress(steps, Encoding::Gzip).await;
        assert!(frames.last().unwrap().is_err());
    }
}
