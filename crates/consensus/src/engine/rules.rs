//! The rules of the algorithm, one function each, named after what they do and what fires
//! them. [`HeightState::progress`] applies them in a fixed order until none fires; the
//! timeout rules run when their timer fires, and `start_round` is StartRound (line 11).
//! A rule returns true when it fired (and so changed the state), false when its
//! condition does not hold, in which case it changed nothing.
//!
//! # Rounds that cannot succeed
//!
//! Three rules act, without waiting for a timer, once the votes of the current round show
//! that no block can gather 2/3 of the weight: nil has a quorum, or the strongest block
//! plus every member not heard from yet falls short. When that holds for prepares, a
//! validator still in the Propose step prepares nil and one in the Prepare step
//! precommits nil; when it holds for precommits, the next round starts. After a 2/2
//! split heals, say, each half's votes reach the other and show at once that the round
//! is lost, where the timers would have waited out a timeout per step. Why this is safe:
//!
//! 1. Nothing in the paper's safety proof depends on when a timer fires. A timeout's only
//!    effect is a nil vote (lines 57, 61) or StartRound(r + 1) (line 65), and an
//!    asynchronous network can delay every other message of the round past any timer, so
//!    the proof already covers a validator that votes nil or leaves round r at any moment,
//!    whatever it saw or sent in r. These rules are such a timer firing early: the lock
//!    and the valid value carry over unchanged, and the signer still refuses anything
//!    older than what it signed.
//! 2. Nothing is given up. An honest validator signs one vote per slot, so once its vote
//!    is counted, no later message of its adds weight to another value. A block short of
//!    2/3 even with every member not heard from could only get there through a second
//!    vote of a faulty validator, which liveness never counts on. With faulty weight
//!    f < T/3 of total T, a nil quorum is the common case: the honest weight behind it is
//!    at least 2T/3 − f, which leaves less than 2T/3 for any block. So the round decides
//!    nothing, or no honest validator locks in it, unless a faulty validator equivocates;
//!    and if one does, line 49 still scans every stored round, so a decision is never
//!    missed.

use super::cache::Validity;
use super::rounds::RoundState;
use super::{HeightState, Outbox};
use crate::messages::{Output, Step};
use crate::signer::STEP_PROPOSAL;
use timecoin_types::{Certificate, Hash256, VoteKind};

/// A rule: true when it fired.
type Rule<B> = fn(&mut HeightState<B>, &mut Outbox<'_, B>) -> bool;

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    /// Applies every rule whose condition holds until none does. The order is part of the
    /// behaviour, since outputs come out in it: a decision first, then a round skip, then
    /// the rules of the round in progress.
    pub(super) fn progress(&mut self, out: &mut Outbox<'_, B>) {
        let rules: [Rule<B>; 11] = [
            Self::decide_on_precommit_quorum,
            Self::skip_to_later_round,
            Self::prepare_nil_when_no_block_can_be_prepared,
            Self::prepare_on_proposal,
            Self::prepare_on_proposal_with_pol,
            Self::precommit_on_prepare_quorum,
            Self::timeout_prepare_on_any_quorum,
            Self::precommit_nil_when_no_block_can_be_prepared,
            Self::next_round_when_no_block_can_be_committed,
            Self::timeout_precommit_on_any_quorum,
            Self::valid_value_on_newer_prepare_quorum,
        ];
        while !self.decided && rules.iter().any(|rule| rule(self, out)) {}
    }

    /// Line 11: StartRound. The proposer re-proposes its valid value, or asks the
    /// application for a block.
    pub(super) fn start_round(&mut self, out: &mut Outbox<'_, B>, round: u32) {
        self.round = round;
        self.step = Step::Propose;
        self.prune_rounds();
        self.round_state(round);
        let already_proposed = out
            .signer
            .as_ref()
            .is_some_and(|s| s.has_passed(self.height, round, STEP_PROPOSAL));
        if self.is_our_turn(out) && !already_proposed {
            // A valid round is below the round it is re-proposed in (a restart resumes in
            // the valid round at the latest, where it is not re-proposed).
            let reuse = self
                .valid
                .filter(|(vr, _)| *vr < round)
                .and_then(|(vr, hash)| Some((vr, hash, self.valid_block(&hash)?)));
            match reuse {
                Some((vr, hash, block)) => self.propose(out, Some(vr), hash, block),
                None => out.outputs.push(Output::BuildBlock {
                    height: self.height,
                    round,
                }),
            }
        }
        // Also for the proposer: the application may never answer BuildBlock.
        self.schedule(out, Step::Propose);
    }

    /// Line 49: 2/3 of the weight precommitted one block in some round, current or not.
    fn decide_on_precommit_quorum(&mut self, out: &mut Outbox<'_, B>) -> bool {
        let found = self.rounds.iter().find_map(|(r, rs)| {
            let hash = rs.precommits.quorum_blocks(&self.validators).next()?;
            Some((*r, rs, hash))
        });
        let Some((round, rs, hash)) = found else {
            return false;
        };
        let certificate = Certificate::from_votes(
            self.height,
            round,
            hash,
            rs.precommits.votes_for(Some(hash)),
        );
        out.outputs.push(Output::Decide {
            height: self.height,
            round,
            block_hash: hash,
            block: self.decided_block(&hash),
            certificate,
        });
        self.decided = true;
        // Nothing of the height is needed any more.
        self.blocks.clear();
        self.rounds.clear();
        self.max_round_of.clear();
        true
    }

    /// Line 55: members with more than a third of the weight are in later rounds, so at
    /// least one honest validator is: go to the highest such round.
    fn skip_to_later_round(&mut self, out: &mut Outbox<'_, B>) -> bool {
        let mut ahead: Vec<(u32, u64)> = self
            .max_round_of
            .iter()
            .filter(|(_, r)| **r > self.round)
            .map(|(k, r)| (*r, self.validators.weight_of(k)))
            .collect();
        ahead.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        let mut weight = 0u64;
        for (round, w) in ahead {
            weight = weight.saturating_add(w);
            if self.validators.exceeds_one_third(weight) {
                self.start_round(out, round);
                return true;
            }
        }
        false
    }

    /// Line 44 reached from the Propose step: no block can gather a prepare quorum in this
    /// round (see "Rounds that cannot succeed" in the module doc), so waiting for the
    /// proposal only holds back the nil precommit that the others may need to leave the
    /// round. Preparing nil is what the propose timeout would do; the next pass precommits
    /// nil.
    fn prepare_nil_when_no_block_can_be_prepared(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if self.step != Step::Propose || !self.no_block_can_win(VoteKind::Prepare) {
            return false;
        }
        self.prepare(out, None);
        true
    }

    /// Line 22: a fresh proposal, prepared when its block is valid and we are not locked
    /// on another one.
    fn prepare_on_proposal(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some((hash, None, ok)) = self.judged_proposal() else {
            return false;
        };
        let yes = ok && self.locked.is_none_or(|(_, l)| l == hash);
        self.prepare(out, yes.then_some(hash));
        true
    }

    /// Line 28: a re-proposal backed by a prepare quorum of its valid round, prepared when
    /// its block is valid and our lock is no newer than that round (or on this block).
    fn prepare_on_proposal_with_pol(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if self.step != Step::Propose {
            return false;
        }
        let Some((hash, Some(vr), ok)) = self.judged_proposal() else {
            return false;
        };
        let pol = self
            .rounds
            .get(&vr)
            .is_some_and(|r| r.prepares.quorum_for(Some(hash), &self.validators));
        let free = self.locked.is_none_or(|(_, l)| l == hash);
        let yes = if pol {
            ok && self.locked.is_none_or(|(lr, l)| lr <= vr || l == hash)
        } else if free {
            // Unlocked, or locked on this very block: line 22 would prepare it, so the
            // POL (needed only to unlock) is not awaited. Waiting would stall rounds
            // whenever a POL vote was lost, since gossip does not retransmit.
            ok
        } else {
            return false;
        };
        self.prepare(out, yes.then_some(hash));
        true
    }

    /// Line 36: a prepare quorum for the round's valid proposal, once per round: it
    /// becomes the valid value and, if we are still preparing, the lock we precommit.
    fn precommit_on_prepare_quorum(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if self.step < Step::Prepare {
            return false;
        }
        let Some(rs) = self.current() else {
            return false;
        };
        let Some(hash) = rs.proposal.as_ref().map(|p| p.block_hash) else {
            return false;
        };
        if rs.lock_rule_fired
            || !rs.prepares.quorum_for(Some(hash), &self.validators)
            || self.validity(&hash) != Some(Validity::Valid)
        {
            return false;
        }
        let round = self.round;
        self.round_state(round).lock_rule_fired = true;
        self.valid = Some((round, hash));
        if self.step == Step::Prepare {
            self.locked = Some((round, hash));
            self.precommit(out, Some(hash));
        } else {
            self.persist_locks(out);
        }
        true
    }

    /// Line 34: 2/3 of any prepares (or later votes) while preparing: the prepare timer
    /// starts, once per round.
    fn timeout_prepare_on_any_quorum(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if self.step != Step::Prepare {
            return false;
        }
        let Some(rs) = self.current() else {
            return false;
        };
        // A precommit shows its sender is done preparing: counting it lets a validator
        // that lost some prepares (a restarted validator cannot re-send a prepare it
        // signed before its last precommit) still time out.
        if rs.prepare_timeout_set
            || !rs
                .prepares
                .quorum_of_any_with(&rs.precommits, &self.validators)
        {
            return false;
        }
        let round = self.round;
        self.round_state(round).prepare_timeout_set = true;
        self.schedule(out, Step::Prepare);
        true
    }

    /// Line 44, or the prepare timeout early: no block can gather a prepare quorum in
    /// this round while we prepare: precommit nil.
    fn precommit_nil_when_no_block_can_be_prepared(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if self.step != Step::Prepare || !self.no_block_can_win(VoteKind::Prepare) {
            return false;
        }
        self.precommit(out, None);
        true
    }

    /// No block can gather a precommit quorum in this round (see "Rounds that cannot
    /// succeed" in the module doc), so it decides nothing: start the next one now instead
    /// of after the precommit timeout (CometBFT does so on a nil quorum). Our own
    /// precommit, if not sent yet, is not needed by anyone: the votes that show the round
    /// lost reach the others too.
    fn next_round_when_no_block_can_be_committed(&mut self, out: &mut Outbox<'_, B>) -> bool {
        if !self.no_block_can_win(VoteKind::Precommit) {
            return false;
        }
        let Some(next) = self.round.checked_add(1) else {
            return false;
        };
        self.start_round(out, next);
        true
    }

    /// Line 47: 2/3 of any precommits: the precommit timer starts, once per round.
    fn timeout_precommit_on_any_quorum(&mut self, out: &mut Outbox<'_, B>) -> bool {
        let Some(rs) = self.current() else {
            return false;
        };
        if rs.precommit_timeout_set || !rs.precommits.quorum_of_any(&self.validators) {
            return false;
        }
        let round = self.round;
        self.round_state(round).precommit_timeout_set = true;
        self.schedule(out, Step::Precommit);
        true
    }

    /// A valid block with a prepare quorum in a round above the valid value's, up to the
    /// current one, becomes the valid value. The paper only takes the current round's
    /// (line 36); a proof of lock seen late, from a round the validator already left, is
    /// just as good a value to re-propose (receivers check the quorum of its valid_round
    /// themselves), and without it a lock whose proof reached only some validators could
    /// stay unresolved.
    fn valid_value_on_newer_prepare_quorum(&mut self, out: &mut Outbox<'_, B>) -> bool {
        let floor = self.valid.map(|(r, _)| r);
        let newer = self
            .rounds
            .range(..=self.round)
            .rev()
            .take_while(|(r, _)| floor.is_none_or(|f| **r > f))
            .find_map(|(r, rs)| {
                let hash = rs
                    .prepares
                    .quorum_blocks(&self.validators)
                    .find(|hash| self.validity(hash) == Some(Validity::Valid))?;
                Some((*r, hash))
            });
        let Some(pol) = newer else {
            return false;
        };
        self.valid = Some(pol);
        self.persist_locks(out);
        true
    }

    /// Line 57: no proposal in time: prepare nil. The timer then repeats for as long as
    /// the round lasts (see [`Self::resend_on_propose_timeout`]).
    pub(super) fn prepare_nil_on_propose_timeout(&mut self, out: &mut Outbox<'_, B>) {
        self.prepare(out, None);
        self.schedule(out, Step::Propose);
    }

    /// The propose timer fired again past the Propose step: the round is taking long, so
    /// send again what gossip may have lost, and keep the timer going.
    pub(super) fn resend_on_propose_timeout(&mut self, out: &mut Outbox<'_, B>) {
        let round = self.round;
        self.round_state(round).stalled = true;
        self.rebroadcast(out);
        self.schedule(out, Step::Propose);
    }

    /// A peer joined ([`crate::Input::PeerJoined`]): it gets our votes again, and a stalled
    /// round ends the way its timers would end it, now: precommit nil while preparing, the
    /// next round while precommitting. A round stalls when its quorum is out of reach, as
    /// on either side of a split; after the heal the two sides may be in different rounds,
    /// and the side behind has not got the proposal of the round ahead (gossip sent it
    /// while they were apart and does not send it again), so waiting out that round's
    /// timers would cost a propose timeout or more. A fresh round's proposal reaches
    /// everyone. Safe as any early timer (see "Rounds that cannot succeed"); a round that
    /// goes well is decided long before it stalls, so joins leave a healthy network alone,
    /// and a round that could still have been decided costs one more round.
    pub(super) fn end_stalled_round_on_peer_joined(&mut self, out: &mut Outbox<'_, B>) {
        self.rebroadcast(out);
        if !self.current().is_some_and(|rs| rs.stalled) {
            return;
        }
        match self.step {
            Step::Prepare => self.precommit(out, None),
            Step::Precommit => {
                self.next_round_on_precommit_timeout(out);
            }
            // A stalled round is past the Propose step.
            Step::Propose => {}
        }
    }

    /// Line 61: no prepare quorum on one value in time: precommit nil.
    pub(super) fn precommit_nil_on_prepare_timeout(&mut self, out: &mut Outbox<'_, B>) {
        self.precommit(out, None);
    }

    /// Line 65: no decision in this round in time: the next round. False in the last
    /// round there is.
    pub(super) fn next_round_on_precommit_timeout(&mut self, out: &mut Outbox<'_, B>) -> bool {
        let Some(next) = self.round.checked_add(1) else {
            return false;
        };
        self.start_round(out, next);
        true
    }

    /// The round's proposal once the application judged its block: its hash, its valid
    /// round and whether the block is valid.
    fn judged_proposal(&self) -> Option<(Hash256, Option<u32>, bool)> {
        let p = self.current()?.proposal.as_ref()?;
        match self.validity(&p.block_hash)? {
            Validity::Pending => None,
            validity => Some((p.block_hash, p.valid_round, validity == Validity::Valid)),
        }
    }

    /// True when, in votes of `kind` of the round in progress, no block can gather 2/3 of
    /// the weight any more.
    fn no_block_can_win(&self, kind: VoteKind) -> bool {
        self.current()
            .is_some_and(|rs| rs.votes(kind).no_block_can_reach_quorum(&self.validators))
    }

    /// The state of the round in progress (it exists from its StartRound until the height
    /// is decided).
    fn current(&self) -> Option<&RoundState> {
        self.rounds.get(&self.round)
    }
}
