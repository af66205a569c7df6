//! What arrives for the height in progress: each input is checked (height, round window,
//! membership, signature, duplicates) before it is recorded, so that the rules only ever
//! see verified messages of members, and the verdict tells the network layer whether to
//! relay the message or penalise its sender.

use super::cache::Validity;
use super::{ignored, rejected, HeightState, Outbox};
use crate::messages::{Evidence, Output, Step, Timeout, Verdict};
use crate::votes::Added;
use timecoin_types::{Hash256, Proposal, PublicKey, Vote};

/// Why a proposal is malformed whatever its height, if it is.
pub(super) fn malformed(proposal: &Proposal, block_hash: Hash256) -> Option<Verdict> {
    if proposal.block_hash != block_hash {
        return Some(rejected("block hash does not match the proposal"));
    }
    if proposal.valid_round.is_some_and(|vr| vr >= proposal.round) {
        return Some(rejected("valid_round is not below the round"));
    }
    None
}

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    fn too_far_ahead(&self, out: &Outbox<'_, B>, round: u32) -> bool {
        round > self.round.saturating_add(out.config.max_rounds_ahead)
    }

    /// A round below the window of [`MAX_PAST_ROUNDS`](super::MAX_PAST_ROUNDS) that
    /// nothing pins.
    fn too_old(&self, round: u32) -> bool {
        round < self.round.saturating_sub(super::MAX_PAST_ROUNDS) && !self.pinned(round)
    }

    pub(super) fn note_round(&mut self, key: PublicKey, round: u32) {
        let entry = self.max_round_of.entry(key).or_insert(round);
        *entry = (*entry).max(round);
    }

    /// The verdict on a proposal of this height that needs no signature check, if there is
    /// one: decided already, not the round's proposer, a duplicate.
    pub(super) fn precheck_proposal(&self, proposal: &Proposal) -> Option<Verdict> {
        if self.decided {
            return Some(ignored("height already decided"));
        }
        if self
            .validators
            .proposer(self.height, proposal.round)
            .public_key
            != proposal.proposer
        {
            return Some(rejected("not the proposer of this round"));
        }
        let known = self
            .rounds
            .get(&proposal.round)
            .and_then(|r| r.proposal.as_ref());
        (known == Some(proposal)).then(|| ignored("duplicate proposal"))
    }

    pub(super) fn on_proposal(
        &mut self,
        out: &mut Outbox<'_, B>,
        proposal: Proposal,
        block: B,
        block_hash: Hash256,
        verified: bool,
    ) -> Verdict {
        if let Some(verdict) =
            malformed(&proposal, block_hash).or_else(|| self.precheck_proposal(&proposal))
        {
            return verdict;
        }
        let round = proposal.round;
        if !verified && proposal.verify(out.chain_id).is_err() {
            return rejected("bad signature");
        }
        self.note_round(proposal.proposer, round);
        if self.too_far_ahead(out, round) {
            self.progress(out);
            return ignored("round too far ahead");
        }
        if self.too_old(round) {
            return ignored("round too old");
        }
        let current_round = self.round;
        let rs = self.round_state(round);
        if let Some(first) = &rs.proposal {
            if rs.double_proposal_seen {
                return ignored("equivocating proposer already recorded");
            }
            rs.double_proposal_seen = true;
            let first = first.clone();
            out.outputs.push(Output::Evidence(Evidence::DoubleProposal {
                first,
                second: proposal,
            }));
            return Verdict::Accepted;
        }
        let pol_round = proposal.valid_round.filter(|_| round >= current_round);
        rs.proposal = Some(proposal);
        if let Some(vr) = pol_round {
            self.resend_prepare(out, vr, block_hash);
        }
        self.cache_block(out, block_hash, block, round, Validity::Pending);
        self.progress(out);
        Verdict::Accepted
    }

    pub(super) fn on_vote(
        &mut self,
        out: &mut Outbox<'_, B>,
        vote: Vote,
        verified: bool,
    ) -> Verdict {
        if self.decided {
            return ignored("height already decided");
        }
        if self.validators.weight_of(&vote.validator) == 0 {
            return rejected("voter is not in the validator set");
        }
        let round = vote.round;
        if let Some(rs) = self.rounds.get(&round) {
            if rs.votes(vote.kind).contains(&vote) {
                return ignored("duplicate vote");
            }
        }
        if !verified && vote.verify(out.chain_id).is_err() {
            return rejected("bad signature");
        }
        if self.too_far_ahead(out, round) {
            self.note_round(vote.validator, round);
            self.progress(out);
            return ignored("round too far ahead");
        }
        if self.too_old(round) {
            return ignored("round too old");
        }
        let verdict = self.record_vote(out, vote);
        self.progress(out);
        verdict
    }

    /// Counts a verified vote of a member.
    pub(super) fn record_vote(&mut self, out: &mut Outbox<'_, B>, vote: Vote) -> Verdict {
        let weight = self.validators.weight_of(&vote.validator);
        self.note_round(vote.validator, vote.round);
        match self
            .round_state(vote.round)
            .votes_mut(vote.kind)
            .add(vote.clone(), weight)
        {
            Added::New => Verdict::Accepted,
            Added::Duplicate => ignored("duplicate vote"),
            Added::Equivocation(first) => {
                out.outputs.push(Output::Evidence(Evidence::DoubleVote {
                    first: *first,
                    second: vote,
                }));
                Verdict::Accepted
            }
            Added::Conflicting => Verdict::Accepted,
            Added::Excess => ignored("equivocating voter already recorded"),
        }
    }

    /// A timer of the round in progress fired in the step it guards (the propose timer
    /// also later, as it repeats for as long as the round lasts).
    pub(super) fn on_timeout(&mut self, out: &mut Outbox<'_, B>, t: Timeout) -> Verdict {
        if t.height != self.height || self.decided {
            return ignored("stale timeout");
        }
        if t.round != self.round {
            return ignored("stale timeout");
        }
        match (t.step, self.step) {
            (Step::Propose, Step::Propose) => self.prepare_nil_on_propose_timeout(out),
            (Step::Propose, _) => self.resend_on_propose_timeout(out),
            (Step::Prepare, Step::Prepare) => self.precommit_nil_on_prepare_timeout(out),
            (Step::Precommit, _) => {
                if !self.next_round_on_precommit_timeout(out) {
                    return ignored("last round");
                }
            }
            _ => return ignored("stale timeout"),
        }
        self.progress(out);
        Verdict::Accepted
    }

    pub(super) fn on_validated(
        &mut self,
        out: &mut Outbox<'_, B>,
        hash: Hash256,
        valid: bool,
    ) -> Verdict {
        if self.decided {
            return ignored("height already decided");
        }
        if !self.settle_validity(&hash, valid) {
            return ignored("no block waiting for this validation");
        }
        self.progress(out);
        Verdict::Accepted
    }

    pub(super) fn on_built(
        &mut self,
        out: &mut Outbox<'_, B>,
        round: u32,
        block: B,
        hash: Hash256,
    ) -> Verdict {
        if self.decided || round != self.round || self.step != Step::Propose {
            return ignored("built block is stale");
        }
        if !self.is_our_turn(out) {
            return ignored("not our turn to propose");
        }
        if self
            .rounds
            .get(&round)
            .is_some_and(|r| r.proposal.is_some())
        {
            return ignored("round already has a proposal");
        }
        // The application built it from its own state: no need to ask it again.
        self.cache_block(out, hash, block.clone(), round, Validity::Valid);
        self.propose(out, None, hash, block);
        self.progress(out);
        Verdict::Accepted
    }
}
