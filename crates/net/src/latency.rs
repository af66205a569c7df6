//! A latency injector for benchmarks (netem is not available everywhere): a TCP transport whose
//! connections hold every received byte back for a fixed one-way delay plus uniform jitter.
//!
//! Off unless [`NetConfig::latency`](crate::NetConfig::latency) is set; nothing on the wire
//! changes, so a node with the injector talks to any other node. Each node delays what *it
//! receives*, so between two nodes that both run it every message takes one `one_way` (plus
//! jitter), and a request-response round trip two.
//!
//! The delay is applied to received bytes rather than to sent frames, directly on the TCP
//! stream (below noise and yamux, so handshakes, every substream and every protocol are delayed
//! alike):
//!
//! * back-pressure is the one TCP already has: when a connection's delay buffer is full the
//!   wrapper stops reading the socket, the kernel's receive window closes and the sender slows
//!   down. Delaying writes instead would have to either accept bytes it has not sent (a
//!   `poll_flush` that lies to noise and yamux) or stall every flush for the whole delay;
//! * a byte is stamped when it is read off the socket, in the receiver's clock, so no clock or
//!   coordination between the two ends is needed.
//!
//! Order within a connection is preserved: a chunk read at `t` is released at
//! `max(previous release, t + one_way + U[0, jitter])`, so jitter delays, but never reorders,
//! the stream. `one_way` is therefore a floor of the delay, and the mean is
//! `one_way + jitter / 2` (somewhat more under bursts, which queue behind earlier chunks).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Received bytes one connection may hold back (chunk bookkeeping included). A connection's
/// throughput is then at most this much per `one_way`: 4 MiB per 50 ms is 80 MiB/s, far above
/// what a validator sends.
pub(crate) const MAX_DELAYED_BYTES: usize = 4 << 20;
/// What each held-back chunk is charged beyond its bytes (its entry and allocation), so that a
/// peer sending one byte at a time cannot make the buffer's memory exceed its byte bound.
const CHUNK_OVERHEAD: usize = 64;
/// Largest single read from the socket.
const READ_SIZE: usize = 16 * 1024;

/// The latency a node injects on every connection (benchmarks only): each received byte is
/// held back `one_way` plus a uniformly drawn `[0, jitter]`, without reordering the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// The fixed part of the delay, applied to every byte; a lower bound.
    pub one_way: Duration,
    /// The width of the uniform jitter added to `one_way` (zero for none).
    pub jitter: Duration,
}

impl Latency {
    /// `one_way` plus a draw from `[0, jitter]`.
    fn sample(&self, rng: &mut SplitMix64) -> Duration {
        let width = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        if width == 0 {
            return self.one_way;
        }
        let draw = rng.next() % width.saturating_add(1);
        self.one_way.saturating_add(Duration::from_nanos(draw))
    }
}

/// A small, fast generator for the jitter; nothing depends on its quality.
struct SplitMix64(u64);

impl SplitMix64 {
    /// A different seed per connection (a process-wide counter mixed with the clock).
    fn seeded() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64 ^ d.as_secs());
        SplitMix64(nanos ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Bytes read off the socket together, and when they may be handed on.
struct Chunk {
    release: Instant,
    data: Vec<u8>,
    /// How much of `data` has been handed on already.
    taken: usize,
}

/// The end of the inner stream (EOF, or the error it failed with), delivered in order after
/// the bytes before it.
struct End {
    release: Instant,
    error: Option<io::Error>,
}

/// A stream whose reads are delayed by a [`Latency`]; writes pass straight through.
///
/// Every poll of a read first reads the inner stream for as long as it has bytes and the
/// buffer has room (stamping each chunk's release time on arrival), then hands on what is due,
/// or waits on a timer for the earliest chunk. A full buffer leaves the inner stream unread
/// (back-pressure); it is read again as soon as the consumer takes bytes out.
pub(crate) struct Delayed<T> {
    inner: T,
    latency: Latency,
    /// Bound of `held`.
    capacity: usize,
    queue: VecDeque<Chunk>,
    /// Bytes in `queue` plus [`CHUNK_OVERHEAD`] per chunk.
    held: usize,
    /// Release time of the last chunk (or of the end): later chunks never go before it.
    last_release: Option<Instant>,
    end: Option<End>,
    timer: Pin<Box<Sleep>>,
    scratch: Box<[u8]>,
    rng: SplitMix64,
}

impl<T> Delayed<T> {
    /// Wraps `inner`, holding back at most `capacity` bytes (bookkeeping included).
    pub(crate) fn new(inner: T, latency: Latency, capacity: usize) -> Self {
        Delayed {
            inner,
            latency,
            capacity: capacity.max(CHUNK_OVERHEAD + 1),
            queue: VecDeque::new(),
            held: 0,
            last_release: None,
            end: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            scratch: vec![0; READ_SIZE].into_boxed_slice(),
            rng: SplitMix64::seeded(),
        }
    }

    /// The release time of something arriving now: its own delay, but not before anything
    /// that arrived earlier.
    fn next_release(&mut self) -> Instant {
        let own = Instant::now() + self.latency.sample(&mut self.rng);
        let release = self.last_release.map_or(own, |last| last.max(own));
        self.last_release = Some(release);
        release
    }

    /// Queues the first `n` bytes of the scratch buffer.
    fn push(&mut self, n: usize) {
        let release = self.next_release();
        let bytes = &self.scratch[..n];
        // Held back behind the previous chunk anyway: one chunk, one entry.
        if let Some(last) = self.queue.back_mut() {
            if last.release == release {
                last.data.extend_from_slice(bytes);
                self.held += n;
                return;
            }
        }
        self.queue.push_back(Chunk {
            release,
            data: bytes.to_vec(),
            taken: 0,
        });
        self.held += n + CHUNK_OVERHEAD;
    }

    /// Waits for `deadline` on the timer; `Ready` once it has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

impl<T: AsyncRead + Unpin> Delayed<T> {
    /// Reads the inner stream while it has bytes and the buffer has room; a `Pending` read
    /// leaves the task registered for the next bytes.
    fn fill(&mut self, cx: &mut Context<'_>) {
        while self.end.is_none() && self.held + CHUNK_OVERHEAD < self.capacity {
            let room = (self.capacity - self.held - CHUNK_OVERHEAD).min(self.scratch.len());
            match Pin::new(&mut self.inner).poll_read(cx, &mut self.scratch[..room]) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    let release = self.next_release();
                    self.end = Some(End {
                        release,
                        error: None,
                    });
                }
                Poll::Ready(Ok(n)) => self.push(n),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    let release = self.next_release();
                    self.end = Some(End {
                        release,
                        error: Some(e),
                    });
                }
            }
        }
    }

    /// Bytes held back now, bookkeeping included (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Delayed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.fill(cx);
        // A timer that fires re-checks once; tokio's timers never fire early, so a second
        // round always finds the chunk due.
        for _ in 0..2 {
            let now = Instant::now();
            let deadline = if let Some(front) = this.queue.front_mut() {
                if front.release <= now {
                    let available = &front.data[front.taken..];
                    let n = available.len().min(buf.len());
                    buf[..n].copy_from_slice(&available[..n]);
                    front.taken += n;
                    if front.taken == front.data.len() {
                        this.held -= front.data.len() + CHUNK_OVERHEAD;
                        this.queue.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                front.release
            } else if let Some(end) = &mut this.end {
                if end.release <= now {
                    // The error once, then end of stream.
                    return Poll::Ready(end.error.take().map_or(Ok(0), Err));
                }
                end.release
            } else {
                // Nothing held and nothing ended: `fill` left the inner stream pending.
                return Poll::Pending;
            };
            if this.poll_timer(cx, deadline).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Delayed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests;
