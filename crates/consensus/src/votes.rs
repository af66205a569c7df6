//! Votes of one kind in one round, counted by weight.

use std::collections::{BTreeMap, BTreeSet};
use timecoin_types::{Hash256, PublicKey, Vote};

/// What adding a vote did.
pub(crate) enum Added {
    /// New vote, counted.
    New,
    /// The identical vote was already counted.
    Duplicate,
    /// The voter already voted differently: not counted; the first vote is returned for
    /// the evidence.
    Equivocation(Box<Vote>),
    /// An equivocation of a voter already caught in this set.
    KnownEquivocation,
}

/// The first vote of each validator, with the weight behind each value. Ordered maps keep
/// iteration, and so the engine's outputs, deterministic.
#[derive(Default)]
pub(crate) struct VoteSet {
    votes: BTreeMap<PublicKey, Vote>,
    weights: BTreeMap<Option<Hash256>, u64>,
    total: u64,
    equivocators: BTreeSet<PublicKey>,
}

impl VoteSet {
    /// Counts `vote` with `weight` unless its voter already voted.
    pub(crate) fn add(&mut self, vote: Vote, weight: u64) -> Added {
        if let Some(first) = self.votes.get(&vote.validator) {
            if *first == vote {
                return Added::Duplicate;
            }
            if !self.equivocators.insert(vote.validator) {
                return Added::KnownEquivocation;
            }
            return Added::Equivocation(Box::new(first.clone()));
        }
        // Weights of distinct members of one set: their sum fits in u64.
        *self.weights.entry(vote.block_hash).or_default() += weight;
        self.total += weight;
        self.votes.insert(vote.validator, vote);
        Added::New
    }

    /// True when exactly this vote is already counted.
    pub(crate) fn contains(&self, vote: &Vote) -> bool {
        self.votes.get(&vote.validator) == Some(vote)
    }

    /// Weight of the votes for `value`.
    pub(crate) fn weight_for(&self, value: Option<Hash256>) -> u64 {
        self.weights.get(&value).copied().unwrap_or(0)
    }

    /// Weight of all counted votes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Each value with the weight behind it.
    pub(crate) fn values(&self) -> impl Iterator<Item = (Option<Hash256>, u64)> + '_ {
        self.weights.iter().map(|(k, w)| (*k, *w))
    }

    /// The counted votes for `value`.
    pub(crate) fn votes_for(&self, value: Option<Hash256>) -> impl Iterator<Item = &Vote> {
        self.votes.values().filter(move |v| v.block_hash == value)
    }
}
