//! Votes of one kind in one round, counted by weight, and the thresholds the rules ask
//! about: the rules stay conditions on state (step, lock, validity) and only ask here
//! whether a quorum exists.

use std::collections::BTreeMap;
use timecoin_types::{Hash256, PublicKey, ValidatorSet, Vote};

/// Most conflicting votes kept per validator per round and kind: an equivocator gains
/// nothing from a third version, and the bound keeps memory finite.
const MAX_CONFLICTING: usize = 2;

/// What adding a vote did.
pub(crate) enum Added {
    /// First vote of its voter: counted.
    New,
    /// Already counted.
    Duplicate,
    /// The voter's first conflicting vote: evidence against it (the first vote is
    /// returned); counted for its own value only.
    Equivocation(Box<Vote>),
    /// A further conflicting vote of a known equivocator, counted for its own value only.
    Conflicting,
    /// Beyond what is kept of one equivocator: dropped.
    Excess,
}

/// The votes of each validator, with the weight behind each value. Ordered maps keep
/// iteration, and so the engine's outputs, deterministic.
///
/// A validator's weight counts once toward the total of all votes (the "2/3 of any"
/// conditions), but an equivocator's conflicting votes also count for the value each one
/// names, as in the paper, where a quorum for a value is 2f+1 messages for that value from
/// distinct senders. Counting only the first vote would let one equivocator give honest
/// validators different views of a round forever (each counts whichever version arrived
/// first), which stalls unlocking; counting all keeps views convergent once every message
/// arrived. Safety is unaffected: two quorums still share more than a third of the
/// weight, so some honest validator would have to vote twice.
#[derive(Default)]
pub(crate) struct VoteSet {
    first: BTreeMap<PublicKey, Vote>,
    conflicting: BTreeMap<(PublicKey, Option<Hash256>), Vote>,
    conflicts_of: BTreeMap<PublicKey, usize>,
    weights: BTreeMap<Option<Hash256>, u64>,
    total: u64,
}

impl VoteSet {
    /// Counts `vote` of a member with `weight`.
    pub(crate) fn add(&mut self, vote: Vote, weight: u64) -> Added {
        let Some(first) = self.first.get(&vote.validator) else {
            // Weights of distinct members of one set: their sum fits in u64.
            *self.weights.entry(vote.block_hash).or_default() += weight;
            self.total += weight;
            self.first.insert(vote.validator, vote);
            return Added::New;
        };
        let slot = (vote.validator, vote.block_hash);
        if first.block_hash == vote.block_hash || self.conflicting.contains_key(&slot) {
            return Added::Duplicate;
        }
        let conflicts = self.conflicts_of.entry(vote.validator).or_default();
        if *conflicts >= MAX_CONFLICTING {
            return Added::Excess;
        }
        *conflicts += 1;
        let result = if *conflicts == 1 {
            Added::Equivocation(Box::new(first.clone()))
        } else {
            Added::Conflicting
        };
        // One vote per validator per value: each value's weight stays within the total.
        *self.weights.entry(vote.block_hash).or_default() += weight;
        self.conflicting.insert(slot, vote);
        result
    }

    /// True when exactly this vote is already counted.
    pub(crate) fn contains(&self, vote: &Vote) -> bool {
        self.first.get(&vote.validator) == Some(vote)
            || self.conflicting.get(&(vote.validator, vote.block_hash)) == Some(vote)
    }

    /// The first vote of `key`, if any.
    pub(crate) fn get(&self, key: &PublicKey) -> Option<&Vote> {
        self.first.get(key)
    }

    /// Weight of all voters, each counted once.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// True when the votes for `value` carry 2/3 of the weight of `set`.
    pub(crate) fn quorum_for(&self, value: Option<Hash256>, set: &ValidatorSet) -> bool {
        set.is_quorum(self.weights.get(&value).copied().unwrap_or(0))
    }

    /// True when all voters together carry 2/3 of the weight of `set` ("2/3 of any").
    pub(crate) fn quorum_of_any(&self, set: &ValidatorSet) -> bool {
        set.is_quorum(self.total)
    }

    /// "2/3 of any" counting the voters of `later` too (each voter once): a vote of the
    /// next kind shows its sender is done with this one, even when its vote of this kind
    /// was lost.
    pub(crate) fn quorum_of_any_with(&self, later: &VoteSet, set: &ValidatorSet) -> bool {
        let weight = later.first.keys().fold(self.total, |w, k| {
            if self.first.contains_key(k) {
                w
            } else {
                w.saturating_add(set.weight_of(k))
            }
        });
        set.is_quorum(weight)
    }

    /// True when no block can gather 2/3 of the weight of `set` any more without a second
    /// vote of some validator: nil has a quorum, or the strongest block together with every
    /// member not heard from falls short of one.
    pub(crate) fn no_block_can_reach_quorum(&self, set: &ValidatorSet) -> bool {
        // Nil's quorum settles it even when equivocators also named blocks.
        if self.quorum_for(None, set) {
            return true;
        }
        let strongest = self
            .weights
            .iter()
            .filter(|(value, _)| value.is_some())
            .map(|(_, weight)| *weight)
            .max()
            .unwrap_or(0);
        let unheard = set.total_weight().saturating_sub(self.total);
        !set.is_quorum(strongest.saturating_add(unheard))
    }

    /// The blocks (not nil) whose votes carry 2/3 of the weight of `set`, in hash order.
    pub(crate) fn quorum_blocks<'a>(
        &'a self,
        set: &'a ValidatorSet,
    ) -> impl Iterator<Item = Hash256> + 'a {
        self.weights.iter().filter_map(|(value, weight)| {
            let hash = (*value)?;
            set.is_quorum(*weight).then_some(hash)
        })
    }

    /// Every counted vote.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Vote> {
        self.first.values().chain(self.conflicting.values())
    }

    /// The counted votes for `value`, at most one per validator.
    pub(crate) fn votes_for(&self, value: Option<Hash256>) -> impl Iterator<Item = &Vote> {
        self.all().filter(move |v| v.block_hash == value)
    }
}
