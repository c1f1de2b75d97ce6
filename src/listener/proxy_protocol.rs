//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary) on the public listeners: a peer in
//! `listen.proxy_protocol_from` (an L4 load balancer) opens every connection with a header
//! naming the client, and that client is who every stage sees.
//!
//! The header is parsed by the `ppp` crate. What this module adds is the reading: exactly the
//! header's bytes are taken from the socket (never a byte of the TLS or HTTP that follows, so
//! nothing has to be pushed back), bounded by size ([`MAX_V1`], [`MAX_V2`]) and, by the caller,
//! by `client.header_timeout`. [`frame`] decides, from the bytes read so far, how many more are
//! needed; it is the part fuzzed (`fuzz/fuzz_targets/proxy_header.rs`).
//!
//! Peers not listed may not send a header: [`HeaderGuard`] watches the first bytes of their
//! connections and fails the read when they are a PROXY signature, so a client can never
//! choose its own address.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// v1: `PROXY TCP6 <39> <39> <5> <5>\r\n` is 107 bytes at most (the spec's bound).
pub const MAX_V1: usize = 107;
/// v2: 16 bytes, then addresses (216 at most, for unix sockets) and TLVs. 536 is the spec's
/// advice for a receiver's buffer, room for a balancer's TLVs (AWS NLB sends a few).
pub const MAX_V2: usize = 536;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What the bytes read so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Read until this many bytes are there (always more than now).
    Need(usize),
    /// The header is the first this many bytes (exactly the bytes read).
    Whole(usize),
    /// Not a header, or too long.
    Invalid(&'static str),
}

/// How far a header read so far goes. Never asks for a byte past the header's end: a v1 header
/// is read byte by byte up to its `\n`, a v2 header by its length field.
pub fn frame(read: &[u8]) -> Frame {
    let n = read.len();
    let v1 = &V1_PREFIX[..n.min(V1_PREFIX.len())];
    let v2 = &V2_SIGNATURE[..n.min(V2_SIGNATURE.len())];
    if read.starts_with(V1_PREFIX) {
        return match memchr::memchr(b'\n', read) {
            Some(end) if end + 1 == n => Frame::Whole(n),
            // Bytes past the end were never asked for; a caller that passes them gets this.
            Some(_) => Frame::Invalid("bytes after the header's end"),
            None if n >= MAX_V1 => Frame::Invalid("v1 header longer than 107 bytes"),
            None => Frame::Need(n + 1),
        };
    }
    if n < V1_PREFIX.len() && read == v1 {
        // "PROX" could still be either (it cannot be v2, but a short read decides nothing).
        return Frame::Need(V1_PREFIX.len());
    }
    if read[..v2.len()] != *v2 {
        return Frame::Invalid("no PROXY protocol signature");
    }
    if n < 16 {
        return Frame::Need(16);
    }
    if read[12] >> 4 != 2 {
        return Frame::Invalid("v2 header of an unknown version");
    }
    let total = 16 + usize::from(u16::from_be_bytes([read[14], read[15]]));
    if total > MAX_V2 {
        return Frame::Invalid("v2 header longer than 536 bytes");
    }
    match n.cmp(&total) {
        std::cmp::Ordering::Less => Frame::Need(total),
        std::cmp::Ordering::Equal => Frame::Whole(n),
        std::cmp::Ordering::Greater => Frame::Invalid("bytes after the header's end"),
    }
}

/// What a whole header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address and port.
    Client(SocketAddr),
    /// No client: a v2 `LOCAL` header (the balancer's own health check), or v1 `UNKNOWN`, or a
    /// family without addresses. The connection is the balancer's own.
    Local,
}

/// Why a connection from a listed peer was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    #[error("the connection closed before a whole PROXY protocol header")]
    Closed,
}

impl Refused {
    /// The `reason` label of `rampart_proxy_protocol_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refused::Invalid(_) => "invalid",
            Refused::Closed => "missing",
        }
    }
}

/// Parses a whole header (as [`frame`] delimited it) with `ppp`.
pub fn parse(header: &[u8]) -> Result<Source, Refused> {
    if header.starts_with(V1_PREFIX) {
        // The line ends in CRLF (`ppp` lets `PROXY UNKNOWN\n` through without one).
        if !header.ends_with(b"\r\n") {
            return Err(Refused::Invalid("v1 header without CRLF".into()));
        }
        let text = std::str::from_utf8(header)
            .map_err(|_| Refused::Invalid("v1 header is not text".into()))?;
        let parsed = ppp::v1::Header::try_from(text)
            .map_err(|err| Refused::Invalid(format!("v1: {err}")))?;
        if parsed.header.len() != header.len() {
            return Err(Refused::Invalid("v1: stray bytes".into()));
        }
        return Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(ip) => {
                Source::Client(SocketAddr::from((ip.source_address, ip.source_port)))
            }
            ppp::v1::Addresses::Tcp6(ip) => {
                Source::Client(SocketAddr::from((ip.source_address, ip.source_port)))
            }
            ppp::v1::Addresses::Unknown => Source::Local,
        });
    }
    let parsed =
        ppp::v2::Header::try_from(header).map_err(|err| Refused::Invalid(format!("v2: {err}")))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(Source::Local);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(ip) => {
            Source::Client(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        ppp::v2::Addresses::IPv6(ip) => {
            Source::Client(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => Source::Local,
    })
}

/// Reads one header from a listed peer: exactly its bytes, at most [`MAX_V2`]. The caller bounds
/// it with `client.header_timeout`.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Source, Refused> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match frame(&buf) {
            Frame::Whole(_) => return parse(&buf),
            Frame::Invalid(reason) => return Err(Refused::Invalid(reason.into())),
            Frame::Need(total) => {
                let start = buf.len();
                buf.resize(total, 0);
                if stream.read_exact(&mut buf[start..]).await.is_err() {
                    return Err(Refused::Closed);
                }
            }
        }
    }
}

/// The reading side of a connection from a peer not in `proxy_protocol_from`: its first bytes
/// must not be a PROXY protocol signature (`PROXY ` or v2's 12 bytes). If they are, the read
/// fails and the connection is closed without an answer. Later bytes pass untouched.
pub struct HeaderGuard<S> {
    inner: S,
    /// The first bytes seen (up to 12), and how many; `None` once cleared.
    seen: Option<([u8; 12], usize)>,
    /// Counts a refusal (`rampart_proxy_protocol_refused_total{reason="unlisted"}`).
    refused: Option<prometheus::IntCounter>,
}

impl<S> HeaderGuard<S> {
    /// `watch`: the counter of refusals, to look at all (`None` for a listed peer, whose
    /// header was read already).
    pub fn new(inner: S, watch: Option<prometheus::IntCounter>) -> Self {
        HeaderGuard {
            inner,
            seen: watch.is_some().then_some(([0; 12], 0)),
            refused: watch,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

/// Whether `start` (the first bytes of a connection) is a PROXY signature, or could still become
/// one: `Some(true)` it is, `Some(false)` it cannot be, `None` not known yet.
pub fn is_signature(start: &[u8]) -> Option<bool> {
    for signature in [V1_PREFIX, &V2_SIGNATURE[..]] {
        let n = start.len().min(signature.len());
        if start[..n] == signature[..n] {
            if n == signature.len() {
                return Some(true);
            }
            return None;
        }
    }
    Some(false)
}

/// The error of a read that met a PROXY header from a peer not listed.
#[derive(Debug, thiserror::Error)]
#[error("a PROXY protocol header from a peer not in proxy_protocol_from")]
pub struct UnlistedHeader;

impl<S: AsyncRead + Unpin> AsyncRead for HeaderGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some((seen, count))) = (&result, &mut this.seen) {
            let new = &buf.filled()[before..];
            let take = new.len().min(seen.len() - *count);
            seen[*count..*count + take].copy_from_slice(&new[..take]);
            *count += take;
            match is_signature(&seen[..*count]) {
                Some(true) => {
                    if let Some(counter) = &this.refused {
                        counter.inc();
                    }
                    this.seen = None;
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        UnlistedHeader,
                    )));
                }
                Some(false) => this.seen = None,
                // A read of 0 bytes (end of stream) ends the watch too.
                None if new.is_empty() => this.seen = None,
                None => {}
            }
        }
        result
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for HeaderGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    #[test]
    fn v1_is_framed_at_its_newline() {
        let header = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 443\r\n";
        for n in 0..header.len() {
            assert!(
                matches!(frame(&header[..n]), Frame::Need(m) if m > n),
                "{n}"
            );
        }
        assert_eq!(frame(header), Frame::Whole(header.len()));
        assert_eq!(
            parse(header),
            Ok(Source::Client("192.0.2.7:51000".parse().unwrap()))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Source::Local));
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(frame(&long[..MAX_V1]), Frame::Invalid(_)));
        assert!(parse(b"PROXY TCP4 192.0.2.7 nope 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n").is_err());
        // Found by the mutation loop below: `ppp` alone accepts this one.
        assert!(parse(b"PROXY UNKNOWN\n").is_err());
    }

    #[test]
    fn v2_is_framed_by_its_length() {
        let mut addresses = vec![192, 0, 2, 7, 10, 0, 0, 1];
        addresses.extend_from_slice(&51000u16.to_be_bytes());
        addresses.extend_from_slice(&443u16.to_be_bytes());
        let header = v2(1, 0x11, &addresses);
        assert_eq!(frame(&header[..5]), Frame::Need(16));
        assert_eq!(frame(&header[..16]), Frame::Need(28));
        assert_eq!(frame(&header), Frame::Whole(28));
        assert_eq!(
            parse(&header),
            Ok(Source::Client("192.0.2.7:51000".parse().unwrap()))
        );
        assert_eq!(parse(&v2(0, 0x00, &[])), Ok(Source::Local));
        let huge = v2(1, 0x11, &[0; 600]);
        assert!(matches!(frame(&huge[..16]), Frame::Invalid(_)));
        let mut wrong_version = header.clone();
        wrong_version[12] = 0x11;
        assert!(matches!(frame(&wrong_version[..16]), Frame::Invalid(_)));
        // A TLS ClientHello or an HTTP request is no header.
        assert!(matches!(frame(&[0x16, 3, 1]), Frame::Invalid(_)));
        assert!(matches!(frame(b"GET / HTTP/1.1"), Frame::Invalid(_)));
        assert_eq!(frame(b""), Frame::Need(6));
    }

    /// The fuzz oracle (`listener::fuzz::proxy_header`) over mutations of the corpus seeds, with
    /// a fixed seed: a cheap stand-in for cargo-fuzz in every `cargo test`.
    /// `H13_MUTATIONS=2000000 cargo test --lib mutated_headers` runs more.
    #[test]
    fn mutated_headers_keep_the_oracle() {
        let rounds: u64 = std::env::var("H13_MUTATIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let mut addresses = vec![192, 0, 2, 7, 10, 0, 0, 1];
        addresses.extend_from_slice(&[0x9c, 0x40, 1, 0xbb]);
        let seeds: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.9 10.0.0.1 40000 443\r\nGET /".to_vec(),
            b"PROXY TCP6 2001:db8::9 2001:db8::1 40000 443\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(1, 0x11, &addresses),
            v2(0, 0x00, &[]),
            v2(1, 0x21, &[0; 36]),
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..rounds {
            let mut input = seeds[(next() % seeds.len() as u64) as usize].clone();
            for _ in 0..(next() % 4) {
                let at = (next() % (input.len() as u64 + 1)) as usize;
                match next() % 4 {
                    0 if at < input.len() => input[at] = next() as u8,
                    1 => input.insert(at, next() as u8),
                    2 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.truncate(at),
                }
            }
            crate::listener::fuzz::proxy_header(&input);
        }
    }

    #[test]
    fn signatures_are_recognized_as_they_arrive() {
        assert_eq!(is_signature(b"PRO"), None);
        assert_eq!(is_signature(b"PROXY "), Some(true));
        assert_eq!(is_signature(b"POST /"), Some(false));
        assert_eq!(is_signature(&V2_SIGNATURE[..5]), None);
        assert_eq!(is_signature(V2_SIGNATURE), Some(true));
        assert_eq!(is_signature(&[0x16, 3, 1, 2, 0]), Some(false));
    }
}
