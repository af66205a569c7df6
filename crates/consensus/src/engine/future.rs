//! Messages for heights not started yet, kept until their height starts: a validator that
//! commits a height a little later than the others would otherwise miss the first votes of
//! the next one. Bounded per height and per signer, so that no one can fill the memory.

use super::{ignored, rejected};
use crate::messages::{Config, Verdict};
use std::collections::BTreeMap;
use timecoin_types::{Proposal, PublicKey, Vote};

/// How many heights past the current one are buffered.
pub const FUTURE_HEIGHTS: u64 = 2;
/// Most buffered messages per signer key per future height: an honest validator sends at
/// most three per round, so this covers several rounds.
pub const MAX_BUFFERED_PER_KEY: usize = 16;
/// Most buffered messages per future height, whoever signed them.
pub const MAX_BUFFERED_PER_HEIGHT: usize = 4096;

/// A message for a future height, already checked as far as possible without its
/// validator set (signature, hash, round sanity).
pub(super) enum Buffered<B> {
    Proposal(Proposal, B),
    Vote(Vote),
}

struct FutureBuffer<B> {
    items: Vec<Buffered<B>>,
    per_key: BTreeMap<PublicKey, usize>,
    blocks: usize,
}

/// The buffered messages of each future height.
pub(super) struct FutureHeights<B> {
    heights: BTreeMap<u64, FutureBuffer<B>>,
}

impl<B> Default for FutureHeights<B> {
    fn default() -> Self {
        FutureHeights {
            heights: BTreeMap::new(),
        }
    }
}

impl<B> FutureHeights<B> {
    /// The messages buffered for `height`, in arrival order; those of lower heights are
    /// dropped with them.
    pub(super) fn take(&mut self, height: u64) -> Vec<Buffered<B>> {
        let buffered = self.heights.remove(&height);
        self.heights = self.heights.split_off(&height.saturating_add(1));
        buffered.map_or_else(Vec::new, |buf| buf.items)
    }

    /// Keeps a message for a future height, within the bounds.
    pub(super) fn buffer(
        &mut self,
        current: Option<u64>,
        chain_id: &str,
        config: &Config,
        item: Buffered<B>,
    ) -> Verdict {
        let (height, key) = match &item {
            Buffered::Proposal(p, _) => (p.height, p.proposer),
            Buffered::Vote(v) => (v.height, v.validator),
        };
        let Some(current) = current else {
            return ignored("no height started yet");
        };
        if height <= current {
            return ignored("old height");
        }
        if height - current > FUTURE_HEIGHTS {
            return ignored("height too far ahead");
        }
        let buf = self.heights.entry(height).or_insert_with(|| FutureBuffer {
            items: Vec::new(),
            per_key: BTreeMap::new(),
            blocks: 0,
        });
        let duplicate = buf.items.iter().any(|b| match (b, &item) {
            (Buffered::Proposal(a, _), Buffered::Proposal(c, _)) => a == c,
            (Buffered::Vote(a), Buffered::Vote(c)) => a == c,
            _ => false,
        });
        if duplicate {
            return ignored("duplicate of a buffered message");
        }
        if buf.items.len() >= MAX_BUFFERED_PER_HEIGHT {
            return ignored("future height buffer full");
        }
        if buf.per_key.get(&key).copied().unwrap_or(0) >= MAX_BUFFERED_PER_KEY {
            return ignored("future height buffer full for this signer");
        }
        let is_proposal = matches!(item, Buffered::Proposal(..));
        if is_proposal && buf.blocks >= config.max_cached_blocks {
            return ignored("future height block buffer full");
        }
        // The set of that height is not known yet, but the signature is: checking it keeps
        // forgeries from using up an honest validator's share of the buffer.
        let signed = match &item {
            Buffered::Proposal(p, _) => p.verify(chain_id),
            Buffered::Vote(v) => v.verify(chain_id),
        };
        if signed.is_err() {
            return rejected("bad signature");
        }
        *buf.per_key.entry(key).or_default() += 1;
        if is_proposal {
            buf.blocks += 1;
        }
        buf.items.push(item);
        Verdict::Accepted
    }
}
