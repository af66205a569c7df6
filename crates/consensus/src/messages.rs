//! What goes into and comes out of the engine.

use crate::signer::SignerState;
use serde::{Deserialize, Serialize};
use timecoin_types::{Certificate, Hash256, Proposal, Vote};

/// Timeouts and memory bounds of the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// How long to wait for the round's proposal (round 0), in milliseconds. The same
    /// timer then repeats while the round lasts, re-sending this validator's votes of the
    /// round, because gossip does not retransmit messages lost to a partition.
    pub timeout_propose_ms: u64,
    /// How long to wait for a prepare quorum on one value after 2/3 of any prepares.
    pub timeout_prepare_ms: u64,
    /// How long to wait for a precommit quorum on one block after 2/3 of any precommits.
    pub timeout_precommit_ms: u64,
    /// Added to every timeout per round, so rounds eventually outlast any network delay.
    pub timeout_delta_ms: u64,
    /// Messages for rounds further ahead than this are not stored (they still count toward
    /// a round skip).
    pub max_rounds_ahead: u32,
    /// Most blocks kept per height; the cache is emptied at decision.
    pub max_cached_blocks: usize,
}

impl Default for Config {
    /// LAN defaults: a round with a silent proposer costs about 1 s (its propose timeout;
    /// the nil votes that follow move to the next round as soon as they arrive).
    fn default() -> Config {
        Config {
            timeout_propose_ms: 1000,
            timeout_prepare_ms: 500,
            timeout_precommit_ms: 500,
            timeout_delta_ms: 250,
            max_rounds_ahead: 10,
            max_cached_blocks: 16,
        }
    }
}

impl Config {
    /// The duration of the timeout for `step` in `round`: the base grows linearly with the
    /// round so that after enough rounds every honest message arrives in time.
    pub fn timeout_ms(&self, step: Step, round: u32) -> u64 {
        let base = match step {
            Step::Propose => self.timeout_propose_ms,
            Step::Prepare => self.timeout_prepare_ms,
            Step::Precommit => self.timeout_precommit_ms,
        };
        base.saturating_add(self.timeout_delta_ms.saturating_mul(u64::from(round)))
    }
}

/// The phase of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Waiting for the round's proposal.
    Propose,
    /// Prepared (or chose not to); waiting for a prepare quorum.
    Prepare,
    /// Precommitted (or chose not to); waiting for a precommit quorum.
    Precommit,
}

/// A timer the node set on the engine's request and hands back when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timeout {
    /// Height the timer belongs to.
    pub height: u64,
    /// Round the timer belongs to.
    pub round: u32,
    /// Step the timer guards.
    pub step: Step,
}

/// An event for the engine.
#[derive(Clone, Debug)]
pub enum Input<B> {
    /// A proposal with its block, from the network or a sync.
    Proposal {
        /// The signed proposal.
        proposal: Proposal,
        /// The proposed block.
        block: B,
        /// The hash the caller computed from `block`; must equal `proposal.block_hash`.
        block_hash: Hash256,
    },
    /// A prepare or precommit vote.
    Vote(Vote),
    /// A timer set by [`Output::ScheduleTimeout`] fired.
    Timeout(Timeout),
    /// The application's answer to [`Output::ValidateBlock`].
    BlockValidated {
        /// Height of the block.
        height: u64,
        /// The block checked.
        block_hash: Hash256,
        /// Whether the block is valid.
        valid: bool,
    },
    /// The application's answer to [`Output::BuildBlock`].
    BlockBuilt {
        /// Height asked for.
        height: u64,
        /// Round asked for.
        round: u32,
        /// The new block.
        block: B,
        /// Its hash.
        block_hash: Hash256,
    },
    /// A peer started listening to votes (it connected, or a partition healed). Gossip
    /// does not retransmit what it missed, so our votes of the round in progress, and the
    /// votes that justify them, are sent again, and a round that stalled is ended as its
    /// timers would. The caller bounds how often.
    PeerJoined,
}

/// Proof that a validator signed two conflicting messages for one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    /// Two different votes for one (height, round, kind).
    DoubleVote {
        /// The vote seen first (the one that counted).
        first: Vote,
        /// The conflicting vote.
        second: Vote,
    },
    /// Two different proposals for one (height, round).
    DoubleProposal {
        /// The proposal seen first (the one that counted).
        first: Proposal,
        /// The conflicting proposal.
        second: Proposal,
    },
}

/// Something the node must do.
#[derive(Clone, Debug)]
pub enum Output<B> {
    /// Persist this state durably before sending the messages that follow it.
    PersistSigner(SignerState),
    /// Gossip our proposal and its block.
    BroadcastProposal {
        /// The signed proposal.
        proposal: Proposal,
        /// Its block.
        block: B,
    },
    /// Gossip a vote: ours, or others' signed prepares relayed as a proof of lock.
    BroadcastVote(Vote),
    /// Set a timer; hand `timeout` back as [`Input::Timeout`] after `after_ms`.
    ScheduleTimeout {
        /// What to hand back.
        timeout: Timeout,
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// Ask the application whether a block is valid; answer with [`Input::BlockValidated`].
    ValidateBlock {
        /// Height of the block.
        height: u64,
        /// Its hash.
        block_hash: Hash256,
        /// The block.
        block: B,
    },
    /// We propose this round and have no valid value: ask the application for a block;
    /// answer with [`Input::BlockBuilt`].
    BuildBlock {
        /// Height to build for.
        height: u64,
        /// Round to build for.
        round: u32,
    },
    /// The height is final.
    Decide {
        /// The height.
        height: u64,
        /// The round whose precommits decided it.
        round: u32,
        /// The decided block.
        block_hash: Hash256,
        /// The block, if we received it and did not find it invalid; otherwise the node
        /// fetches it, with its certificate, from peers.
        block: Option<B>,
        /// The precommits that formed the quorum.
        certificate: Certificate,
    },
    /// The first sighting of an equivocation.
    Evidence(Evidence),
}

/// How the network layer should treat the message it passed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: relay it.
    Accepted,
    /// Harmless but useless (duplicate, old, too far ahead): drop without penalty.
    Ignored(String),
    /// Provably bad (bad signature, non-member, wrong proposer, hash mismatch, impossible
    /// round): drop and penalise the peer.
    Rejected(String),
}

/// The engine's answer to one input.
#[derive(Clone, Debug)]
pub struct Handled<B> {
    /// What to do with the message.
    pub verdict: Verdict,
    /// What to do next, in order.
    pub outputs: Vec<Output<B>>,
}
