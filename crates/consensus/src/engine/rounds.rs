//! The rounds of the height in progress kept in memory: each round's proposal, votes and
//! fired-once flags, and the bound that keeps a height stuck for many rounds (a long
//! partition) from holding every round's votes until it is decided.

use super::HeightState;
use crate::votes::VoteSet;
use timecoin_types::{Proposal, VoteKind};

/// Earlier rounds of the height in progress kept in full, counting back from the current
/// one: late votes of a recent round can still decide it or give a newer valid value.
/// Older rounds are dropped unless the protocol still needs them (the valid and locked
/// rounds, the latest earlier round with precommits, rounds a proof of lock cites), so a
/// height that takes many rounds holds at most `MAX_PAST_ROUNDS + 3` earlier rounds plus
/// one per cited round of the current and future rounds' proposals.
pub const MAX_PAST_ROUNDS: u32 = 8;

/// What one round has seen, and which of its once-per-round rules already fired.
#[derive(Default)]
pub(super) struct RoundState {
    pub(super) proposal: Option<Proposal>,
    pub(super) double_proposal_seen: bool,
    pub(super) prepares: VoteSet,
    pub(super) precommits: VoteSet,
    pub(super) prepare_timeout_set: bool,
    pub(super) precommit_timeout_set: bool,
    pub(super) lock_rule_fired: bool,
    /// The propose timer fired past the Propose step: the round outlasted its propose
    /// timeout without reaching its next quorum.
    pub(super) stalled: bool,
}

impl RoundState {
    pub(super) fn votes(&self, kind: VoteKind) -> &VoteSet {
        match kind {
            VoteKind::Prepare => &self.prepares,
            VoteKind::Precommit => &self.precommits,
        }
    }

    pub(super) fn votes_mut(&mut self, kind: VoteKind) -> &mut VoteSet {
        match kind {
            VoteKind::Prepare => &mut self.prepares,
            VoteKind::Precommit => &mut self.precommits,
        }
    }
}

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    pub(super) fn round_state(&mut self, round: u32) -> &mut RoundState {
        self.rounds.entry(round).or_default()
    }

    /// Whether an earlier round holds something the protocol needs whatever its age: the
    /// valid round's prepares (the proof of lock we re-propose and relay), the locked
    /// round's, the latest earlier precommits (re-sent so that laggards can leave that
    /// round) and the prepares a proof of lock of the current or a future round cites
    /// (line 28 checks them).
    pub(super) fn pinned(&self, round: u32) -> bool {
        self.valid.is_some_and(|(r, _)| r == round)
            || self.locked.is_some_and(|(r, _)| r == round)
            || self.latest_earlier_precommits() == Some(round)
            || self
                .rounds
                .range(self.round..)
                .any(|(_, rs)| rs.proposal.as_ref().and_then(|p| p.valid_round) == Some(round))
    }

    /// The latest round below the current one with precommits.
    pub(super) fn latest_earlier_precommits(&self) -> Option<u32> {
        self.rounds
            .range(..self.round)
            .rev()
            .find(|(_, rs)| rs.precommits.total() > 0)
            .map(|(r, _)| *r)
    }

    /// Drops the earlier rounds outside the window that nothing pins. Votes for such
    /// rounds are then ignored as too old.
    pub(super) fn prune_rounds(&mut self) {
        let floor = self.round.saturating_sub(MAX_PAST_ROUNDS);
        let keep: Vec<u32> = self
            .rounds
            .range(..floor)
            .map(|(r, _)| *r)
            .filter(|r| self.pinned(*r))
            .collect();
        self.rounds.retain(|r, _| *r >= floor || keep.contains(r));
    }
}
