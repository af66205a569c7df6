//! This validator's own messages: every signature goes through the signer, whose state is
//! handed out to be persisted before the message it covers, so that a restart can never
//! make this validator equivocate.

use super::{HeightState, Outbox};
use crate::messages::{Output, Step, Timeout};
use timecoin_types::{Hash256, VoteKind};

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    pub(super) fn is_our_turn(&self, out: &Outbox<'_, B>) -> bool {
        out.signer.as_ref().is_some_and(|s| {
            self.validators.proposer(self.height, self.round).public_key == s.public_key()
        })
    }

    /// Asks for the timer of `step` in the round in progress.
    pub(super) fn schedule(&self, out: &mut Outbox<'_, B>, step: Step) {
        out.outputs.push(Output::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                step,
            },
            after_ms: out.config.timeout_ms(step, self.round),
        });
    }

    /// Emits the signer state when it changed without a signature (a new valid value).
    pub(super) fn persist_locks(&self, out: &mut Outbox<'_, B>) {
        if let Some(signer) = out.signer.as_deref_mut() {
            if signer.record_locks(self.height, self.locked, self.valid) {
                out.outputs
                    .push(Output::PersistSigner(signer.state().clone()));
            }
        }
    }

    /// Moves to the Prepare step with our prepare for `value` (nil: `None`).
    pub(super) fn prepare(&mut self, out: &mut Outbox<'_, B>, value: Option<Hash256>) {
        self.step = Step::Prepare;
        self.vote(out, VoteKind::Prepare, value);
    }

    /// Moves to the Precommit step with our precommit for `value` (nil: `None`).
    pub(super) fn precommit(&mut self, out: &mut Outbox<'_, B>, value: Option<Hash256>) {
        self.step = Step::Precommit;
        self.vote(out, VoteKind::Precommit, value);
    }

    /// Signs, counts and broadcasts our vote, if we are a member and the guard agrees.
    fn vote(&mut self, out: &mut Outbox<'_, B>, kind: VoteKind, value: Option<Hash256>) {
        let Some(signer) = out.signer.as_deref_mut() else {
            return;
        };
        if self.validators.weight_of(&signer.public_key()) == 0 {
            return;
        }
        match signer.sign_vote(out.chain_id, kind, self.height, self.round, value) {
            Ok(vote) => {
                signer.record_locks(self.height, self.locked, self.valid);
                out.outputs
                    .push(Output::PersistSigner(signer.state().clone()));
                out.outputs.push(Output::BroadcastVote(vote.clone()));
                self.record_vote(out, vote);
            }
            Err(e) => {
                // Already signed for this slot before a restart: keep the lock persisted.
                tracing::warn!(height = self.height, round = self.round, "{e}");
                self.persist_locks(out);
            }
        }
    }

    /// Signs and broadcasts our proposal of the round in progress, with its proof of lock
    /// when it re-proposes the valid value.
    pub(super) fn propose(
        &mut self,
        out: &mut Outbox<'_, B>,
        valid_round: Option<u32>,
        hash: Hash256,
        block: B,
    ) {
        let Some(signer) = out.signer.as_deref_mut() else {
            return;
        };
        match signer.sign_proposal(out.chain_id, self.height, self.round, valid_round, hash) {
            Ok(proposal) => {
                signer.record_locks(self.height, self.locked, self.valid);
                out.outputs
                    .push(Output::PersistSigner(signer.state().clone()));
                out.outputs.push(Output::BroadcastProposal {
                    proposal: proposal.clone(),
                    block,
                });
                if let Some(vr) = valid_round {
                    // The proof of lock travels with the re-proposal: validators locked
                    // on another block need it to prepare, and gossip may have lost it.
                    self.send_pol(out, vr, hash);
                }
                self.note_round(proposal.proposer, proposal.round);
                let round = proposal.round;
                self.round_state(round).proposal = Some(proposal);
            }
            Err(e) => {
                // Already signed for this slot before a restart: keep the lock persisted.
                tracing::warn!(height = self.height, round = self.round, "{e}");
                self.persist_locks(out);
            }
        }
    }
}
