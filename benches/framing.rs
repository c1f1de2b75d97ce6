//! The framing tracker on the HTTP/1 read path (`listener::framing`): every byte hyper reads
//! from a client passes it, so its cost is added to every request.
//!
//! - a browser's GET head (532 bytes, 12 header lines with cookies), in one read;
//! - the same head split into 64-byte reads (a slow or fragmented client);
//! - a POST of 64 KiB with `Content-Length`, the body skipped by counting;
//! - the same body chunked in 4 KiB chunks, each size line parsed.
//!
//! The tracker is created outside the timed part (`iter_batched`) for the one-shot cases.
//! `cargo bench --bench framing`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rampart::listener::framing::FramingTracker;

const LIMIT: usize = 4 * 32 * 1024;

fn browser_get() -> Vec<u8> {
    b"GET /accounts/profile/?tab=settings HTTP/1.1\r\n\
      Host: app.example.com\r\n\
      User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
      Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
      Accept-Language: en-US,en;q=0.5\r\n\
      Accept-Encoding: gzip, deflate, br, zstd\r\n\
      Connection: keep-alive\r\n\
      Cookie: csrftoken=Yx8dG1; sessionid=abc123def456ghi789; theme=dark\r\n\
      Upgrade-Insecure-Requests: 1\r\n\
      Sec-Fetch-Dest: document\r\n\
      Sec-Fetch-Mode: navigate\r\n\
      Sec-Fetch-Site: same-origin\r\n\
      Cache-Control: max-age=0\r\n\r\n"
        .to_vec()
}

fn post_head(framing: &str) -> Vec<u8> {
    format!(
        "POST /api/upload HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let get = browser_get();
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(get.len() as u64));
    group.bench_function("browser GET head, one read", |b| {
        b.iter_batched(
            || FramingTracker::new(LIMIT),
            |mut tracker| black_box(tracker.feed(black_box(&get))),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("browser GET head, 64-byte reads", |b| {
        b.iter_batched(
            || FramingTracker::new(LIMIT),
            |mut tracker| {
                for read in get.chunks(64) {
                    black_box(tracker.feed(black_box(read)));
                }
            },
            BatchSize::SmallInput,
        )
    });

    let body = vec![b'x'; 64 * 1024];
    let mut fixed = post_head(&format!("Content-Length: {}", body.len()));
    fixed.extend_from_slice(&body);
    let mut chunked = post_head("Transfer-Encoding: chunked");
    for chunk in body.chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for (name, bytes) in [
        ("64 KiB POST, Content-Length, 16 KiB reads", &fixed),
        ("64 KiB POST, 4 KiB chunks, 16 KiB reads", &chunked),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || FramingTracker::new(LIMIT),
                |mut tracker| {
                    for read in bytes.chunks(16 * 1024) {
                        black_box(tracker.feed(black_box(read)));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
