//! A file (or a byte range of it) as a response body, read in bounded chunks on blocking
//! threads: memory per response is at most two chunks, whatever the file's size.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// Bytes per read. Large enough that a 1 MiB file costs 8 blocking-pool round trips, small
/// enough that many concurrent downloads stay cheap.
pub const CHUNK: usize = 128 * 1024;

/// Streams `len` bytes from `offset`. The next chunk is read while the current one is being
/// sent (one read ahead).
#[derive(Debug)]
pub struct FileBody {
    file: Arc<File>,
    /// Where the next read starts, and how much is left to read.
    next_offset: u64,
    unread: u64,
    /// Bytes not yet handed to hyper (what `size_hint` reports).
    unsent: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    pub fn new(file: File, offset: u64, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            next_offset: offset,
            unread: len,
            unsent: len,
            reading: None,
        }
    }

    /// Starts reading the next chunk, if any is left.
    fn read_ahead(&mut self) {
        if self.unread == 0 || self.reading.is_some() {
            return;
        }
        let len = usize::try_from(self.unread).map_or(CHUNK, |unread| unread.min(CHUNK));
        let file = self.file.clone();
        let offset = self.next_offset;
        self.reading = Some(tokio::task::spawn_blocking(move || {
            read_exact_at(&file, offset, len)
        }));
        self.next_offset += len as u64;
        self.unread -= len as u64;
    }
}

/// Reads exactly `len` bytes at `offset`. A file that shrank under us is an error: the
/// response would otherwise end short of its Content-Length without saying so.
pub fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ))
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Bytes::from(buf))
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        this.read_ahead();
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let result = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined.unwrap_or_else(|err| Err(io::Error::other(err))),
        };
        this.reading = None;
        match result {
            Ok(chunk) => {
                this.unsent -= chunk.len() as u64;
                this.read_ahead();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Err(err) => {
                this.unread = 0;
                this.unsent = 0;
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.unsent == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.unsent)
    }
}
