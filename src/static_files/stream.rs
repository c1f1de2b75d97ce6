//! A file (or a byte range of it) as a response body, read in bounded chunks: memory per
//! response is at most two chunks, whatever the file's size.
//!
//! A chunk the page cache holds is read on the worker thread (`preadv2` with `RWF_NOWAIT`, which
//! returns `EAGAIN` rather than wait for the disk), into a buffer reused from chunk to chunk;
//! any other is read on tokio's blocking pool, so a slow disk never stalls a worker. The blocking
//! pool's two thread hand-offs per chunk were a quarter of the CPU serving a 1 MiB file (`perf`).
//!
//! The reused buffer is zeroed once, when allocated, not before every read: without `unsafe`,
//! `preadv2` needs initialized memory, and zeroing 128 KiB per chunk was 3% of the CPU serving a
//! 1 MiB file (`perf`). The chunk handed to hyper owns the buffer and gives it back when dropped.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
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
    /// The buffer of the reads on the worker thread, when no chunk handed to hyper holds it.
    spare: Arc<SpareBuffers>,
    /// The file system refused `RWF_NOWAIT` (or a read on the worker failed): blocking pool only.
    no_cached_reads: bool,
    #[cfg(test)]
    blocking_reads: usize,
}

impl FileBody {
    pub fn new(file: File, offset: u64, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            next_offset: offset,
            unread: len,
            unsent: len,
            reading: None,
            spare: Arc::default(),
            no_cached_reads: false,
            #[cfg(test)]
            blocking_reads: 0,
        }
    }

    /// The next chunk, or the part of it the page cache holds, read on this thread. `None`:
    /// not cached (or not possible here): read it on the blocking pool.
    fn read_cached(&mut self) -> Option<io::Result<Bytes>> {
        if self.no_cached_reads || self.unread == 0 || self.reading.is_some() {
            return None;
        }
        let len = usize::try_from(self.unread).map_or(CHUNK, |unread| unread.min(CHUNK));
        let mut buffer = self.spare.take();
        let read = rustix::io::preadv2(
            &*self.file,
            &mut [io::IoSliceMut::new(&mut buffer[..len])],
            self.next_offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(0) => {
                self.spare.give_back(buffer);
                Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                )))
            }
            Ok(n) => {
                self.next_offset += n as u64;
                self.unread -= n as u64;
                Some(Ok(Bytes::from_owner(Chunk {
                    buffer: Some(buffer),
                    len: n,
                    home: self.spare.clone(),
                })))
            }
            Err(rustix::io::Errno::AGAIN) => {
                self.spare.give_back(buffer);
                None
            }
            // EOPNOTSUPP (a file system without RWF_NOWAIT), EINTR, or a real error, which the
            // blocking read will meet and report again.
            Err(_) => {
                self.no_cached_reads = true;
                None
            }
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
        #[cfg(test)]
        {
            self.blocking_reads += 1;
        }
    }
}

/// Where a file body's read buffers wait while no chunk holds them. HTTP/1.1 copies a chunk
/// into hyper's buffer and drops it at once (one buffer serves the whole file); HTTP/2 keeps
/// a chunk until its frames are sent, and may read ahead of them: up to [`SPARE_BUFFERS`] are
/// kept, more are freed.
#[derive(Debug, Default)]
struct SpareBuffers(Mutex<Vec<Box<[u8]>>>);

const SPARE_BUFFERS: usize = 4;

impl SpareBuffers {
    /// A spare buffer, or a new one (zeroed once) while chunks hold them all.
    fn take(&self) -> Box<[u8]> {
        let spare = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| vec![0; CHUNK].into_boxed_slice())
    }

    fn give_back(&self, buffer: Box<[u8]>) {
        let mut spare = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE_BUFFERS {
            spare.push(buffer);
        }
    }
}

/// A chunk read on the worker: the buffer's first `len` bytes, which go back to the body's
/// spare when hyper drops the last `Bytes` made of it.
struct Chunk {
    buffer: Option<Box<[u8]>>,
    len: usize,
    home: Arc<SpareBuffers>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        self.buffer
            .as_deref()
            .map_or(&[], |buffer| &buffer[..self.len])
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.home.give_back(buffer);
        }
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
        if let Some(read) = this.read_cached() {
            return Poll::Ready(Some(match read {
                Ok(chunk) => {
                    this.unsent -= chunk.len() as u64;
                    Ok(Frame::data(chunk))
                }
                Err(err) => {
                    this.unread = 0;
                    this.unsent = 0;
                    Err(err)
                }
            }));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn temp_file(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file.flush().unwrap();
        let opened = File::open(file.path()).unwrap();
        (file, opened)
    }

    /// Whether this file system answers `RWF_NOWAIT` reads at all.
    fn nowait_supported(file: &File) -> bool {
        let mut byte = [0u8; 1];
        rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut byte)],
            0,
            rustix::io::ReadWriteFlags::NOWAIT,
        )
        .is_ok()
    }

    #[tokio::test]
    async fn a_cached_file_is_read_on_the_worker_whole_and_in_order() {
        let bytes = pattern(CHUNK * 3 + CHUNK / 2);
        let (_keep, file) = temp_file(&bytes);
        let supported = nowait_supported(&file);
        let (start, end) = (100, bytes.len() - 200);
        let mut body = FileBody::new(file, start as u64, (end - start) as u64);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert!(got == bytes[start..end], "the range, byte for byte");
        assert!(body.is_end_stream());
        if supported {
            // Just written: the page cache holds all of it.
            assert_eq!(body.blocking_reads, 0, "no chunk went to the blocking pool");
        }
    }

    #[tokio::test]
    async fn a_chunk_held_is_never_overwritten_and_a_chunk_dropped_lends_its_buffer() {
        let bytes = pattern(CHUNK * 3);
        let (_keep, file) = temp_file(&bytes);
        // Without RWF_NOWAIT every chunk comes from the blocking pool in its own buffer: the
        // contents are still checked, the buffer reuse is not.
        let reads_on_worker = nowait_supported(&file);
        let mut body = FileBody::new(file, 0, bytes.len() as u64);
        // Held (as HTTP/2 holds a chunk until its frames are sent): the next read gets a buffer
        // of its own.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_ne!(first.as_ptr(), second.as_ptr());
        assert!(first == bytes[..CHUNK] && second == bytes[CHUNK..2 * CHUNK]);
        // Dropped (as HTTP/1.1 drops a chunk once copied): its memory is read into again.
        let reused = second.as_ptr();
        drop(second);
        let third = body.frame().await.unwrap().unwrap().into_data().unwrap();
        if reads_on_worker {
            assert_eq!(third.as_ptr(), reused);
        }
        assert!(third == bytes[2 * CHUNK..]);
        assert!(first == bytes[..CHUNK], "the chunk still held is unchanged");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_file_that_shrinks_while_sent_is_an_error_not_a_short_body() {
        let bytes = pattern(CHUNK * 2);
        let (keep, file) = temp_file(&bytes);
        let mut body = FileBody::new(file, 0, bytes.len() as u64);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), CHUNK);
        keep.as_file().set_len((CHUNK / 2) as u64).unwrap();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.frame().await.is_none());
    }
}
