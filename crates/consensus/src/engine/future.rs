//! Messages for the next height, kept until it starts: a validator that commits a height a
//! little later than the others would otherwise miss the first votes of the next one.
//!
//! Only the next height is buffered, because only its validator set is known (the chain fixes
//! the set of h + 1 when it applies h − 1). A message from a key outside that set, or a
//! proposal from anyone but the round's proposer, is invalid on every node at this height and
//! refused before its signature is checked; a message for a later height is ignored, since
//! nothing can tell yet whether its signer is a member. What is buffered is bounded per
//! member and in total, so that no one can fill the memory or crowd out an honest
//! validator's messages.

use super::{ignored, rejected};
use crate::messages::{Config, Verdict};
use std::collections::BTreeMap;
use timecoin_types::{Proposal, PublicKey, ValidatorSet, Vote};

/// How many heights past the current one are buffered: the one whose set is known.
pub const FUTURE_HEIGHTS: u64 = 1;
/// Most buffered messages per member for the next height: an honest validator sends at most
/// three per round, so this covers several rounds.
pub const MAX_BUFFERED_PER_KEY: usize = 16;
/// Most buffered messages for the next height, whoever signed them.
pub const MAX_BUFFERED_PER_HEIGHT: usize = 4096;

/// A message for the next height, already checked as far as possible before its height
/// starts (membership, signature, hash, round sanity).
pub(super) enum Buffered<B> {
    Proposal(Proposal, B),
    Vote(Vote),
}

impl<B> Buffered<B> {
    fn signed(&self) -> Signed<'_> {
        match self {
            Buffered::Proposal(p, _) => Signed::Proposal(p),
            Buffered::Vote(v) => Signed::Vote(v),
        }
    }
}

/// The signed part of a message, which is all the checks before buffering look at.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Signed<'a> {
    Proposal(&'a Proposal),
    Vote(&'a Vote),
}

impl Signed<'_> {
    /// The height it is for and who signed it.
    fn signer(self) -> (u64, PublicKey) {
        match self {
            Signed::Proposal(p) => (p.height, p.proposer),
            Signed::Vote(v) => (v.height, v.validator),
        }
    }
}

/// The next height, its validator set and what is buffered for it.
pub(super) struct FutureHeights<B> {
    next: Option<(u64, ValidatorSet)>,
    items: Vec<Buffered<B>>,
    per_key: BTreeMap<PublicKey, usize>,
    blocks: usize,
}

impl<B> Default for FutureHeights<B> {
    fn default() -> Self {
        FutureHeights {
            next: None,
            items: Vec::new(),
            per_key: BTreeMap::new(),
            blocks: 0,
        }
    }
}

impl<B> FutureHeights<B> {
    /// Called when `height` starts: returns the messages buffered for it, in arrival order
    /// (nothing if they were for another height), and buffers for `height + 1`, voted on by
    /// `next_set`, from now on.
    pub(super) fn start(&mut self, height: u64, next_set: ValidatorSet) -> Vec<Buffered<B>> {
        let buffered = match &self.next {
            Some((next, _)) if *next == height => std::mem::take(&mut self.items),
            _ => Vec::new(),
        };
        *self = FutureHeights {
            next: Some((height + 1, next_set)),
            ..FutureHeights::default()
        };
        buffered
    }

    /// The verdict on `item` that needs no signature check, if there is one: wrong height,
    /// not a member or not the round's proposer, a duplicate.
    pub(super) fn precheck(&self, item: Signed<'_>) -> Option<Verdict> {
        let Some((next, set)) = &self.next else {
            return Some(ignored("no height started yet"));
        };
        let (height, key) = item.signer();
        if height < *next {
            return Some(ignored("old height"));
        }
        if height > *next {
            return Some(ignored(
                "height too far ahead: its validator set is not known yet",
            ));
        }
        match item {
            Signed::Proposal(p) if set.proposer(p.height, p.round).public_key != key => {
                return Some(rejected("not the proposer of this round"));
            }
            Signed::Vote(_) if set.weight_of(&key) == 0 => {
                return Some(rejected("signer is not in the validator set of its height"));
            }
            _ => {}
        }
        let duplicate = self.items.iter().any(|b| b.signed() == item);
        duplicate.then(|| ignored("duplicate of a buffered message"))
    }

    /// Keeps a message for the next height, within the bounds.
    pub(super) fn buffer(&mut self, chain_id: &str, config: &Config, item: Buffered<B>) -> Verdict {
        if let Some(verdict) = self.precheck(item.signed()) {
            return verdict;
        }
        let (_, key) = item.signed().signer();
        if self.items.len() >= MAX_BUFFERED_PER_HEIGHT {
            return ignored("future height buffer full");
        }
        if self.per_key.get(&key).copied().unwrap_or(0) >= MAX_BUFFERED_PER_KEY {
            return ignored("future height buffer full for this signer");
        }
        let is_proposal = matches!(item, Buffered::Proposal(..));
        if is_proposal && self.blocks >= config.max_cached_blocks {
            return ignored("future height block buffer full");
        }
        // Last, being the expensive check: a forgery must not use up a member's share.
        let signed = match &item {
            Buffered::Proposal(p, _) => p.verify(chain_id),
            Buffered::Vote(v) => v.verify(chain_id),
        };
        if signed.is_err() {
            return rejected("bad signature");
        }
        *self.per_key.entry(key).or_default() += 1;
        if is_proposal {
            self.blocks += 1;
        }
        self.items.push(item);
        Verdict::Accepted
    }
}
