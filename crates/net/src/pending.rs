//! Messages published while no subscribed peer was reachable.
//!
//! Consensus publishes from the very first slot, often before the first connection is up; the
//! messages wait here and are retried when a peer subscribes and on every maintenance tick. The
//! queue is bounded in count and bytes (the oldest message goes first) and stale entries expire,
//! since an old vote is worthless to the network.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Topic;

/// A message waiting for a subscribed peer.
pub(crate) struct PendingMessage {
    pub(crate) topic: Topic,
    pub(crate) data: Vec<u8>,
    queued_at: Instant,
}

/// Bounded FIFO of unpublished messages.
pub(crate) struct PendingQueue {
    items: VecDeque<PendingMessage>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    ttl: Duration,
}

impl PendingQueue {
    pub(crate) fn new(max_items: usize, max_bytes: usize, ttl: Duration) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_items,
            max_bytes,
            ttl,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends a message; returns how many older messages were dropped to make room.
    pub(crate) fn push(&mut self, topic: Topic, data: Vec<u8>, now: Instant) -> usize {
        let mut dropped = 0;
        while !self.items.is_empty()
            && (self.items.len() >= self.max_items || self.bytes + data.len() > self.max_bytes)
        {
            self.pop_front();
            dropped += 1;
        }
        self.bytes += data.len();
        self.items.push_back(PendingMessage {
            topic,
            data,
            queued_at: now,
        });
        dropped
    }

    /// Removes and returns, in order, the unexpired messages (of `topic` only, if given);
    /// expired ones are discarded. The caller re-queues what still cannot be published.
    pub(crate) fn take(&mut self, topic: Option<Topic>, now: Instant) -> Vec<PendingMessage> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        for item in self.items.drain(..) {
            if now.duration_since(item.queued_at) > self.ttl {
                self.bytes -= item.data.len();
            } else if topic.is_none_or(|t| t == item.topic) {
                self.bytes -= item.data.len();
                taken.push(item);
            } else {
                kept.push_back(item);
            }
        }
        self.items = kept;
        taken
    }

    /// Puts back messages returned by [`take`](Self::take) that are still unpublished, ahead of
    /// anything queued since, so the publication order is preserved.
    pub(crate) fn requeue(&mut self, messages: Vec<PendingMessage>) {
        for item in messages.into_iter().rev() {
            self.bytes += item.data.len();
            self.items.push_front(item);
        }
    }

    fn pop_front(&mut self) {
        if let Some(item) = self.items.pop_front() {
            self.bytes -= item.data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_when_full_and_keeps_order() {
        let now = Instant::now();
        let mut queue = PendingQueue::new(2, 100, Duration::from_secs(60));
        assert_eq!(queue.push(Topic::Tx, vec![1], now), 0);
        assert_eq!(queue.push(Topic::Prepare, vec![2], now), 0);
        assert_eq!(queue.push(Topic::Tx, vec![3], now), 1);
        let taken = queue.take(Some(Topic::Tx), now);
        assert_eq!(taken.iter().map(|m| m.data[0]).collect::<Vec<_>>(), [3]);
        assert_eq!(queue.len(), 1);
        queue.requeue(taken);
        let all = queue.take(None, now);
        assert_eq!(all.iter().map(|m| m.data[0]).collect::<Vec<_>>(), [3, 2]);
        assert!(queue.is_empty());
    }

    #[test]
    fn byte_bound_and_expiry() {
        let now = Instant::now();
        let mut queue = PendingQueue::new(10, 5, Duration::from_secs(1));
        queue.push(Topic::Tx, vec![0; 3], now);
        assert_eq!(queue.push(Topic::Tx, vec![0; 3], now), 1);
        assert_eq!(queue.len(), 1);
        let later = now + Duration::from_secs(2);
        assert!(queue.take(None, later).is_empty());
        assert!(queue.is_empty());
        assert_eq!(queue.bytes, 0);
    }
}
