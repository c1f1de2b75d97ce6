//! The HTTP/2 connection preface, checked before hyper sees an `h2` connection.
//!
//! A client that negotiated `h2` by ALPN must open with the 24 bytes
//! `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113 §3.4); anything else is a connection error of type
//! PROTOCOL_ERROR, to be answered with a GOAWAY. Left to hyper, it was not: hyper-util's auto
//! builder sniffs the first bytes in `serve_connection_with_upgrades` whatever `http2_only` says,
//! so an HTTP/1.1 request on a connection that negotiated `h2` was served as HTTP/1.1, outside
//! the checks only HTTP/1 connections get (`framing.rs`), and a wrong preface ended in a bare
//! close.
//!
//! So the https listener reads the preface itself ([`read`], bounded by `header_timeout`) and
//! answers anything else with the server preface (an empty SETTINGS), a GOAWAY(PROTOCOL_ERROR)
//! and a TLS close_notify ([`refuse`]), as HAProxy does. A good preface is handed on to hyper
//! by [`Replay`], which gives those bytes back before reading on: they are the constant
//! [`PREFACE`], so it needs no buffer, only a count.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The server's answer to a wrong preface: its own preface (a SETTINGS frame, empty: the
/// defaults), then GOAWAY with last-stream-id 0 and PROTOCOL_ERROR (0x1), no debug data.
pub const REFUSAL: &[u8; 26] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, length 0, stream 0
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, length 8, stream 0
    0, 0, 0, 0, // last stream id 0
    0, 0, 0, 0x1, // PROTOCOL_ERROR
];

/// After the refusal, what the client still sends is read and dropped for this long (and up to
/// [`LINGER_BYTES`]), so that closing with unread bytes does not reset the connection (a TCP
/// RST) before the client has read the GOAWAY.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// How a connection's first bytes compare with the preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// All 24 bytes, and nothing more read.
    Valid,
    /// A byte that differs: answered at once, without waiting for the rest.
    Invalid,
    /// The client closed before sending 24 bytes, all of them right so far.
    Closed,
}

/// Reads the first bytes of `io` until they are the whole preface, or one differs, or the
/// client closes. Never reads past the preface (a read asks for at most what is missing).
pub async fn read<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Preface> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    while filled < PREFACE.len() {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(Preface::Closed);
        }
        if buf[filled..filled + n] != PREFACE[filled..filled + n] {
            return Ok(Preface::Invalid);
        }
        filled += n;
    }
    Ok(Preface::Valid)
}

/// Writes [`REFUSAL`], shuts the connection down (TLS close_notify), then lingers: reads and
/// drops what the client still sends, for at most [`LINGER`] and [`LINGER_BYTES`].
pub async fn refuse<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) -> io::Result<()> {
    io.write_all(REFUSAL).await?;
    io.shutdown().await?;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
    Ok(())
}

pin_project_lite::pin_project! {
    /// A connection whose preface [`read`] took: reads give [`PREFACE`] back first, then read
    /// from the connection. Writes pass through.
    pub struct Replay<T> {
        #[pin]
        inner: T,
        // Bytes of the preface given back so far.
        replayed: usize,
    }
}

impl<T> Replay<T> {
    /// `inner`: a connection whose first [`PREFACE.len()`](PREFACE) bytes were the preface and
    /// were read by [`read`].
    pub fn new(inner: T) -> Self {
        Replay { inner, replayed: 0 }
    }
}

impl<T: AsyncRead> AsyncRead for Replay<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Some(rest) = PREFACE
            .get(*this.replayed..)
            .filter(|rest| !rest.is_empty())
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Replay<T> {
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

    /// `read` on `bytes` written in pieces of the given sizes (then the client's EOF, when
    /// `close`), and what a `Replay` then reads: the whole stream, preface first.
    async fn check(pieces: &[&[u8]], close: bool) -> (Preface, Option<Vec<u8>>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let written: Vec<u8> = pieces.concat();
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for piece in pieces {
                client.write_all(&piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            if close {
                client.shutdown().await.unwrap();
            }
            client
        });
        let preface = read(&mut server).await.unwrap();
        let client = writer.await.unwrap();
        if preface != Preface::Valid {
            return (preface, None);
        }
        drop(client);
        let mut replayed = Vec::new();
        Replay::new(server)
            .read_to_end(&mut replayed)
            .await
            .unwrap();
        assert_eq!(replayed, written, "the replayed stream");
        (preface, Some(replayed))
    }

    #[tokio::test]
    async fn a_good_preface_is_replayed_whole_and_the_rest_follows() {
        let frames = b"\0\0\0\x04\0\0\0\0\0";
        let cases: [&[&[u8]]; 4] = [
            &[&PREFACE[..]],
            &[&PREFACE[..], &frames[..]],
            &[
                &PREFACE[..1],
                &PREFACE[1..7],
                &PREFACE[7..23],
                &PREFACE[23..],
                &frames[..],
            ],
            &[&[PREFACE.as_slice(), frames.as_slice()].concat()],
        ];
        for pieces in cases {
            let (preface, replayed) = check(pieces, false).await;
            assert_eq!(preface, Preface::Valid, "{pieces:?}");
            assert!(replayed.is_some_and(|r| r.starts_with(PREFACE)));
        }
    }

    #[tokio::test]
    async fn the_first_wrong_byte_is_enough() {
        let mut last_wrong = *PREFACE;
        last_wrong[23] = b'X';
        let cases: [&[&[u8]]; 4] = [
            &[&b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..]],
            &[&b"PRI * HTTP/1.1\r\n"[..]],
            &[&last_wrong[..]],
            // Right so far, then a wrong byte in a later read.
            &[&PREFACE[..10], &b"X"[..]],
        ];
        for pieces in cases {
            // The client does not close: the answer comes without waiting for 24 bytes.
            assert_eq!(check(pieces, false).await.0, Preface::Invalid, "{pieces:?}");
        }
    }

    #[tokio::test]
    async fn a_close_before_the_whole_preface_is_closed() {
        assert_eq!(check(&[], true).await.0, Preface::Closed);
        assert_eq!(check(&[&PREFACE[..23]], true).await.0, Preface::Closed);
    }

    #[tokio::test]
    async fn a_replay_fills_small_buffers() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"after").await.unwrap();
        drop(client);
        let mut replay = Replay::new(server);
        let mut got = Vec::new();
        let mut small = [0u8; 5];
        loop {
            let n = replay.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, [PREFACE.as_slice(), b"after"].concat());
    }

    #[tokio::test]
    async fn the_refusal_is_settings_then_goaway_protocol_error_then_close() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let refused = tokio::spawn(async move { refuse(&mut server).await });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        // The client closes: the linger ends at once.
        drop(client);
        refused.await.unwrap().unwrap();
        assert_eq!(got, REFUSAL);
        // SETTINGS: empty, stream 0.
        assert_eq!(&got[..9], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        // GOAWAY: 8 bytes, stream 0, last stream 0, PROTOCOL_ERROR.
        assert_eq!(&got[9..18], &[0, 0, 8, 0x7, 0, 0, 0, 0, 0]);
        assert_eq!(u32::from_be_bytes([got[18], got[19], got[20], got[21]]), 0);
        assert_eq!(
            u32::from_be_bytes([got[22], got[23], got[24], got[25]]),
            0x1
        );
    }
}
