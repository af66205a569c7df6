use super::*;

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{AsyncReadExt, SinkExt, TryStreamExt};

/// The `i`-th byte of a test stream: not periodic in any chunk size used here.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8) ^ (i >> 16)) as u8
}

/// Bytes of a stream that counts what was read from it and never ends.
struct Endless {
    read: Arc<AtomicU64>,
}

impl AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        buf.fill(7);
        Poll::Ready(Ok(buf.len()))
    }
}

/// Some bytes, then an error.
struct Failing {
    sent: bool,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.sent {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        self.sent = true;
        buf[..3].copy_from_slice(b"abc");
        Poll::Ready(Ok(3))
    }
}

#[test]
fn jitter_stays_within_its_bounds() {
    let latency = Latency {
        one_way: Duration::from_millis(50),
        jitter: Duration::from_millis(5),
    };
    let mut rng = SplitMix64::seeded();
    let draws: Vec<Duration> = (0..10_000).map(|_| latency.sample(&mut rng)).collect();
    assert!(draws.iter().all(|d| *d >= latency.one_way));
    assert!(draws.iter().all(|d| *d <= latency.one_way + latency.jitter));
    // Uniform: both halves of the range are hit often.
    let low = draws
        .iter()
        .filter(|d| **d < Duration::from_micros(52_500))
        .count();
    assert!(
        (4_000..6_000).contains(&low),
        "{low} of 10000 in the lower half"
    );
    let fixed = Latency {
        jitter: Duration::ZERO,
        ..latency
    };
    assert_eq!(fixed.sample(&mut rng), fixed.one_way);
}

/// Pieces arrive one per millisecond; with jitter six times the gap between them, releasing
/// each at its own draw would reorder the stream. Every byte must come out in order, and none
/// before `one_way` after it was sent.
#[tokio::test]
async fn jitter_delays_but_never_reorders() {
    let latency = Latency {
        one_way: Duration::from_millis(20),
        jitter: Duration::from_millis(6),
    };
    const PIECES: usize = 100;
    const PIECE: usize = 97;
    let (mut tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(PIECES);
    let sent_at = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(1));
            for piece in 0..PIECES {
                pace.tick().await;
                let bytes = (piece * PIECE..(piece + 1) * PIECE).map(pattern).collect();
                sent_at.lock().unwrap().push(Instant::now());
                tx.send(Ok(bytes)).await.unwrap();
            }
        })
    };
    let mut reader = Delayed::new(rx.into_async_read(), latency, MAX_DELAYED_BYTES);
    let mut received = Vec::new();
    let mut buf = [0u8; 61];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        let now = Instant::now();
        let sent_at = sent_at.lock().unwrap();
        for offset in received.len()..received.len() + n {
            let sent = sent_at[offset / PIECE];
            assert!(
                now - sent >= latency.one_way,
                "byte {offset} delivered {:?} after it was sent",
                now - sent
            );
        }
        received.extend_from_slice(&buf[..n]);
    }
    writer.await.unwrap();
    let expected: Vec<u8> = (0..PIECES * PIECE).map(pattern).collect();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "bytes reordered or changed");
}

#[tokio::test]
async fn a_full_buffer_stops_reading_the_inner_stream() {
    let read = Arc::new(AtomicU64::new(0));
    let capacity = 100_000;
    let latency = Latency {
        one_way: Duration::from_secs(3600),
        jitter: Duration::ZERO,
    };
    let mut delayed = Delayed::new(Endless { read: read.clone() }, latency, capacity);
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    let mut buf = [0u8; 1024];
    assert!(Pin::new(&mut delayed)
        .poll_read(&mut cx, &mut buf)
        .is_pending());
    let first = read.load(Ordering::Relaxed);
    assert!(first > 0, "the inner stream was read");
    assert!(delayed.held() <= capacity, "{} held", delayed.held());
    assert!(
        first as usize <= capacity,
        "{first} bytes read into the buffer"
    );
    // Full: polling again takes nothing more from the inner stream (its sender is held back).
    assert!(Pin::new(&mut delayed)
        .poll_read(&mut cx, &mut buf)
        .is_pending());
    assert_eq!(read.load(Ordering::Relaxed), first);
}

#[tokio::test]
async fn the_end_and_errors_come_after_the_bytes_before_them() {
    let latency = Latency {
        one_way: Duration::from_millis(30),
        jitter: Duration::from_millis(3),
    };
    let start = Instant::now();
    let mut delayed = Delayed::new(
        futures::io::Cursor::new(b"hello".to_vec()),
        latency,
        MAX_DELAYED_BYTES,
    );
    let mut out = Vec::new();
    delayed.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"hello");
    assert!(start.elapsed() >= latency.one_way);

    let mut failing = Delayed::new(Failing { sent: false }, latency, MAX_DELAYED_BYTES);
    let mut buf = [0u8; 16];
    assert_eq!(failing.read(&mut buf).await.unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
    let error = failing.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    // Once reported, the stream is over.
    assert_eq!(failing.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test]
async fn writes_pass_straight_through() {
    let latency = Latency {
        one_way: Duration::from_secs(3600),
        jitter: Duration::ZERO,
    };
    let mut delayed = Delayed::new(futures::io::Cursor::new(Vec::new()), latency, 1 << 16);
    futures::AsyncWriteExt::write_all(&mut delayed, b"now")
        .await
        .unwrap();
    assert_eq!(delayed.inner.get_ref(), b"now");
}
