//! Response compression as the proxy does it: 1 MiB of HTML-like text, arriving in 16 KiB
//! chunks, through [`CompressBody`] with gzip (level 5) and brotli (quality 4). One thread, no
//! network: what one core can compress per second. The compressed size is printed once.
//!
//! `cargo bench --bench compress`

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body::{Body, Frame};
use rampart::compress::CompressBody;
use rampart::encoding::Encoding;

const CHUNK: usize = 16 * 1024;

/// Chunks that are always ready, like an upstream on loopback that sent everything.
struct Ready(VecDeque<Bytes>);

impl Body for Ready {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// A page of varied markup: numbers and words change line to line, as in a real listing.
fn page(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 128);
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
    let mut i: usize = 0;
    while out.len() < len {
        let line = format!(
            "<tr class=\"row-{}\"><td>{}</td><td><a href=\"/items/{}/\">{} {}</a></td><td>{}.{:02} EUR</td></tr>\n",
            i % 2,
            i,
            i * 7919 % 100_003,
            words[i % words.len()],
            words[(i * 3) % words.len()],
            i * 37 % 1000,
            i % 100
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Compresses `body` to the end; returns the compressed size. The body never waits.
fn compress(body: &Bytes, encoding: Encoding) -> usize {
    let chunks = (0..body.len())
        .step_by(CHUNK)
        .map(|start| body.slice(start..(start + CHUNK).min(body.len())))
        .collect();
    let mut compressed = pin!(CompressBody::new(Ready(chunks), encoding));
    let mut cx = Context::from_waker(Waker::noop());
    let mut size = 0;
    loop {
        match compressed.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => size += frame.into_data().map_or(0, |d| d.len()),
            Poll::Ready(None) => return size,
            Poll::Ready(Some(Err(err))) => panic!("compression failed: {err}"),
            Poll::Pending => unreachable!("the input is always ready"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let body = page(1 << 20);
    let mut group = c.benchmark_group("compress 1 MiB of HTML");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (name, encoding) in [("gzip", Encoding::Gzip), ("br", Encoding::Brotli)] {
        println!(
            "{name}: {} bytes → {} bytes",
            body.len(),
            compress(&body, encoding)
        );
        group.bench_function(name, |b| b.iter(|| compress(&body, encoding)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
