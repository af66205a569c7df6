//! The consensus state machine of one validator (or follower), one height at a time.
//!
//! It follows "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic): rounds of
//! Propose → Prepare → Precommit with a lock and a valid value; rules fire the moment their
//! quorum is seen and timers only cover failures. The comments cite the paper's rules by
//! their line numbers in its Algorithm 1.
//!
//! One job per file: [`Engine`] here routes inputs and owns the height in progress;
//! `intake` checks and records what arrives, `rules` holds the algorithm's rules (one
//! function each), `actions` signs and sends this validator's own messages, `resend`
//! makes up for messages gossip lost, `rounds` bounds the rounds kept in memory, `cache`
//! the blocks, and `future` the messages of heights not started yet.

mod actions;
mod cache;
mod future;
mod intake;
mod resend;
mod rounds;
mod rules;

pub use future::{FUTURE_HEIGHTS, MAX_BUFFERED_PER_HEIGHT, MAX_BUFFERED_PER_KEY};
pub use rounds::MAX_PAST_ROUNDS;

use crate::messages::{Config, Handled, Input, Output, Step, Verdict};
use crate::signer::Signer;
use cache::CachedBlock;
use future::{Buffered, FutureHeights, Signed};
use rounds::RoundState;
use std::collections::BTreeMap;
use timecoin_types::{Hash256, Proposal, PublicKey, ValidatorSet, VoteKind};

/// Everything about the height in progress.
struct HeightState<B> {
    height: u64,
    validators: ValidatorSet,
    round: u32,
    step: Step,
    locked: Option<(u32, Hash256)>,
    valid: Option<(u32, Hash256)>,
    rounds: BTreeMap<u32, RoundState>,
    blocks: BTreeMap<Hash256, CachedBlock<B>>,
    /// Highest round each member sent a verified message for: bounded memory for the
    /// round-skip rule even when the rounds themselves are too far ahead to store.
    max_round_of: BTreeMap<PublicKey, u32>,
    decided: bool,
}

/// Where the height's rules put their outputs, in order. It also lends them what of the
/// engine they need to produce those outputs: the chain id and the signer to sign, the
/// configuration to time and bound.
struct Outbox<'a, B> {
    chain_id: &'a str,
    config: &'a Config,
    signer: Option<&'a mut Signer>,
    outputs: Vec<Output<B>>,
}

impl<'a, B> Outbox<'a, B> {
    fn new(chain_id: &'a str, config: &'a Config, signer: Option<&'a mut Signer>) -> Self {
        Outbox {
            chain_id,
            config,
            signer,
            outputs: Vec::new(),
        }
    }
}

/// The consensus engine: feed it [`Input`]s, carry out its [`Output`]s.
pub struct Engine<B> {
    chain_id: String,
    config: Config,
    signer: Option<Signer>,
    current: Option<HeightState<B>>,
    future: FutureHeights<B>,
}

fn ignored(why: &str) -> Verdict {
    Verdict::Ignored(why.to_string())
}

fn rejected(why: &str) -> Verdict {
    Verdict::Rejected(why.to_string())
}

impl<B: Clone + std::fmt::Debug> Engine<B> {
    /// An engine for `chain_id`. Without a signer it is a follower: it decides but never
    /// signs.
    pub fn new(chain_id: String, config: Config, signer: Option<Signer>) -> Self {
        Engine {
            chain_id,
            config,
            signer,
            current: None,
            future: FutureHeights::default(),
        }
    }

    /// The height in progress (0 before the first [`Engine::start_height`]).
    pub fn height(&self) -> u64 {
        self.current.as_ref().map_or(0, |h| h.height)
    }

    /// The round in progress.
    pub fn round(&self) -> u32 {
        self.current.as_ref().map_or(0, |h| h.round)
    }

    /// The step in progress.
    pub fn step(&self) -> Step {
        self.current.as_ref().map_or(Step::Propose, |h| h.step)
    }

    /// True once the height in progress is decided.
    pub fn is_decided(&self) -> bool {
        self.current.as_ref().is_some_and(|h| h.decided)
    }

    /// Makes a follower vote from its next [`Engine::start_height`] on (which restores the
    /// signer's lock): the node holds the signer back while it checks that no other process
    /// signs with the same key.
    pub fn enable_signer(&mut self, signer: Signer) {
        self.signer = Some(signer);
    }

    /// The signer, if this engine votes.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The rounds of the height in progress held in memory: what the memory bound tests
    /// look at.
    #[cfg(test)]
    pub(crate) fn rounds_in_memory(&self) -> Vec<u32> {
        self.current
            .as_ref()
            .map_or_else(Vec::new, |h| h.rounds.keys().copied().collect())
    }

    /// Starts `height` with its validator set, once the previous height is committed;
    /// `next_validators` votes on `height + 1` (the chain has fixed it already) and decides
    /// which messages for that height are buffered. Resumes with the persisted lock and
    /// valid value when the signer's state is at this height, in the highest of the rounds
    /// it names (the last signed message's, the lock's, the valid value's: a proposal must
    /// never carry a valid round at or above its own), and replays the messages buffered for
    /// it.
    ///
    /// After a restart the node should also hand back, as [`Input::Proposal`], the
    /// proposals of this height it logged before the crash (a write-ahead log, as
    /// CometBFT keeps): the restored lock names a block, and if every validator locked on
    /// it lost the block, nobody can propose it again and the height cannot finish.
    pub fn start_height(
        &mut self,
        height: u64,
        validators: ValidatorSet,
        next_validators: ValidatorSet,
    ) -> Vec<Output<B>> {
        let mut hs = HeightState {
            height,
            validators,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            rounds: BTreeMap::new(),
            blocks: BTreeMap::new(),
            max_round_of: BTreeMap::new(),
            decided: false,
        };
        let mut resume_vote = None;
        if let Some(signer) = &self.signer {
            let state = signer.state();
            if state.step != 0 && state.height == height {
                let rounds = [state.locked, state.valid].into_iter().flatten();
                hs.round = rounds.map(|(r, _)| r).fold(state.round, u32::max);
                hs.locked = state.locked;
                hs.valid = state.valid;
                // The last vote is resumed only in its own round; a later round starts
                // afresh.
                resume_vote = signer.last_vote(height).filter(|v| v.round == hs.round);
            }
        }
        let buffered = self.future.start(height, next_validators);
        let mut out = Outbox::new(&self.chain_id, &self.config, self.signer.as_mut());
        let round = hs.round;
        hs.start_round(&mut out, round);
        if let Some(vote) = resume_vote {
            // The vote may have been lost in the crash: send it again (the signer state
            // covering it is already persisted) and continue from the step after it.
            hs.step = match vote.kind {
                VoteKind::Prepare => Step::Prepare,
                VoteKind::Precommit => Step::Precommit,
            };
            out.outputs.push(Output::BroadcastVote(vote.clone()));
            hs.record_vote(&mut out, vote);
        }
        for item in buffered {
            match item {
                Buffered::Proposal(p, block) => {
                    let hash = p.block_hash;
                    hs.on_proposal(&mut out, p, block, hash, true);
                }
                Buffered::Vote(v) => {
                    hs.on_vote(&mut out, v, true);
                }
            }
        }
        hs.progress(&mut out);
        self.current = Some(hs);
        out.outputs
    }

    /// The verdict on `proposal` that needs neither its signature nor its block, if there
    /// is one (an old or far height, not the round's proposer, a duplicate, a valid round not
    /// below the round). The node asks before it verifies the signature and decodes the
    /// block, so that what would be refused anyway costs it nothing.
    pub fn precheck_proposal(&self, proposal: &Proposal) -> Option<Verdict> {
        if proposal.valid_round.is_some_and(|vr| vr >= proposal.round) {
            return Some(rejected("valid_round is not below the round"));
        }
        match &self.current {
            Some(hs) if proposal.height == hs.height => hs.precheck_proposal(proposal),
            _ => self.future.precheck(Signed::Proposal(proposal)),
        }
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input<B>) -> Handled<B> {
        let mut out = Outbox::new(&self.chain_id, &self.config, self.signer.as_mut());
        let verdict = match (input, self.current.as_mut()) {
            (
                Input::Proposal {
                    proposal,
                    block,
                    block_hash,
                },
                Some(hs),
            ) if proposal.height == hs.height => {
                hs.on_proposal(&mut out, proposal, block, block_hash, false)
            }
            (
                Input::Proposal {
                    proposal,
                    block,
                    block_hash,
                },
                _,
            ) => intake::malformed(&proposal, block_hash).unwrap_or_else(|| {
                let item = Buffered::Proposal(proposal, block);
                self.future.buffer(&self.chain_id, &self.config, item)
            }),
            (Input::Vote(vote), Some(hs)) if vote.height == hs.height => {
                hs.on_vote(&mut out, vote, false)
            }
            (Input::Vote(vote), _) => {
                let item = Buffered::Vote(vote);
                self.future.buffer(&self.chain_id, &self.config, item)
            }
            (Input::Timeout(t), Some(hs)) => hs.on_timeout(&mut out, t),
            (
                Input::BlockValidated {
                    height,
                    block_hash,
                    valid,
                },
                Some(hs),
            ) if height == hs.height => hs.on_validated(&mut out, block_hash, valid),
            (
                Input::BlockBuilt {
                    height,
                    round,
                    block,
                    block_hash,
                },
                Some(hs),
            ) if height == hs.height => hs.on_built(&mut out, round, block, block_hash),
            (Input::PeerJoined, Some(hs)) if !hs.decided => {
                hs.end_stalled_round_on_peer_joined(&mut out);
                hs.progress(&mut out);
                Verdict::Accepted
            }
            _ => ignored("not for the height in progress"),
        };
        Handled {
            verdict,
            outputs: out.outputs,
        }
    }
}
