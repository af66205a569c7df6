//! The consensus state machine of one validator (or follower), one height at a time.
//!
//! It follows "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic): rounds of
//! Propose → Prepare → Precommit with a lock and a valid value; rules fire the moment their
//! quorum is seen and timers only cover failures. The comments cite the paper's rules by
//! their line numbers in its Algorithm 1.

use crate::messages::{Config, Evidence, Handled, Input, Output, Step, Timeout, Verdict};
use crate::signer::{Signer, STEP_PROPOSAL};
use crate::votes::{Added, VoteSet};
use std::collections::BTreeMap;
use timecoin_types::{Certificate, Hash256, Proposal, PublicKey, ValidatorSet, Vote, VoteKind};

/// How many heights past the current one are buffered.
pub const FUTURE_HEIGHTS: u64 = 2;
/// Most buffered messages per signer key per future height: an honest validator sends at
/// most three per round, so this covers several rounds.
pub const MAX_BUFFERED_PER_KEY: usize = 16;
/// Most buffered messages per future height, whoever signed them.
pub const MAX_BUFFERED_PER_HEIGHT: usize = 4096;
/// Earlier rounds of the height in progress kept in full, counting back from the current
/// one: late votes of a recent round can still decide it or give a newer valid value.
/// Older rounds are dropped unless the protocol still needs them (the valid and locked
/// rounds, the latest earlier round with precommits, rounds a proof of lock cites), so a
/// height that takes many rounds holds at most `MAX_PAST_ROUNDS + 3` earlier rounds plus
/// one per cited round of the current and future rounds' proposals.
pub const MAX_PAST_ROUNDS: u32 = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Validity {
    Pending,
    Valid,
    Invalid,
}

struct CachedBlock<B> {
    block: B,
    validity: Validity,
    /// Highest round that proposed it: eviction drops the oldest first.
    round: u32,
}

#[derive(Default)]
struct RoundState {
    proposal: Option<Proposal>,
    double_proposal_seen: bool,
    prepares: VoteSet,
    precommits: VoteSet,
    prepare_timeout_set: bool,
    precommit_timeout_set: bool,
    lock_rule_fired: bool,
}

impl RoundState {
    fn votes(&mut self, kind: VoteKind) -> &mut VoteSet {
        match kind {
            VoteKind::Prepare => &mut self.prepares,
            VoteKind::Precommit => &mut self.precommits,
        }
    }
}

/// A message for a future height, already checked as far as possible without its
/// validator set (signature, hash, round sanity).
enum Buffered<B> {
    Proposal(Proposal, B),
    Vote(Vote),
}

#[derive(Default)]
struct FutureBuffer<B> {
    items: Vec<Buffered<B>>,
    per_key: BTreeMap<PublicKey, usize>,
    blocks: usize,
}

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

/// The parts of the engine the height's rules need besides the height's state.
struct Ctx<'a, B> {
    chain_id: &'a str,
    config: &'a Config,
    signer: Option<&'a mut Signer>,
    out: Vec<Output<B>>,
}

/// The consensus engine: feed it [`Input`]s, carry out its [`Output`]s.
pub struct Engine<B> {
    chain_id: String,
    config: Config,
    signer: Option<Signer>,
    current: Option<HeightState<B>>,
    future: BTreeMap<u64, FutureBuffer<B>>,
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
            future: BTreeMap::new(),
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

    /// Starts `height` with its validator set, once the previous height is committed.
    /// Resumes in the persisted round (with the persisted lock) when the signer's state is
    /// at this height, and replays the messages buffered for it.
    ///
    /// After a restart the node should also hand back, as [`Input::Proposal`], the
    /// proposals of this height it logged before the crash (a write-ahead log, as
    /// CometBFT keeps): the restored lock names a block, and if every validator locked on
    /// it lost the block, nobody can propose it again and the height cannot finish.
    pub fn start_height(&mut self, height: u64, validators: ValidatorSet) -> Vec<Output<B>> {
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
                hs.round = state.round;
                hs.locked = state.locked;
                hs.valid = state.valid;
                resume_vote = signer.last_vote(height);
            }
        }
        let buffered = self.future.remove(&height);
        self.future = self.future.split_off(&height.saturating_add(1));
        let mut ctx = Ctx {
            chain_id: &self.chain_id,
            config: &self.config,
            signer: self.signer.as_mut(),
            out: Vec::new(),
        };
        let round = hs.round;
        hs.start_round(&mut ctx, round);
        if let Some(vote) = resume_vote {
            // The vote may have been lost in the crash: send it again (the signer state
            // covering it is already persisted) and continue from the step after it.
            hs.step = match vote.kind {
                VoteKind::Prepare => Step::Prepare,
                VoteKind::Precommit => Step::Precommit,
            };
            ctx.out.push(Output::BroadcastVote(vote.clone()));
            hs.record_vote(&mut ctx, vote);
        }
        if let Some(buf) = buffered {
            for item in buf.items {
                match item {
                    Buffered::Proposal(p, block) => {
                        let hash = p.block_hash;
                        hs.on_proposal(&mut ctx, p, block, hash, true);
                    }
                    Buffered::Vote(v) => {
                        hs.on_vote(&mut ctx, v, true);
                    }
                }
            }
        }
        hs.progress(&mut ctx);
        let out = ctx.out;
        self.current = Some(hs);
        out
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input<B>) -> Handled<B> {
        let current_height = self.current.as_ref().map(|h| h.height);
        let mut ctx = Ctx {
            chain_id: &self.chain_id,
            config: &self.config,
            signer: self.signer.as_mut(),
            out: Vec::new(),
        };
        let verdict = match (input, self.current.as_mut()) {
            (
                Input::Proposal {
                    proposal,
                    block,
                    block_hash,
                },
                Some(hs),
            ) if proposal.height == hs.height => {
                hs.on_proposal(&mut ctx, proposal, block, block_hash, false)
            }
            (
                Input::Proposal {
                    proposal,
                    block,
                    block_hash,
                },
                _,
            ) => {
                if proposal.block_hash != block_hash {
                    rejected("block hash does not match the proposal")
                } else if proposal.valid_round.is_some_and(|vr| vr >= proposal.round) {
                    rejected("valid_round is not below the round")
                } else {
                    buffer(
                        &mut self.future,
                        current_height,
                        self.chain_id.as_str(),
                        self.config.max_cached_blocks,
                        Buffered::Proposal(proposal, block),
                    )
                }
            }
            (Input::Vote(vote), Some(hs)) if vote.height == hs.height => {
                hs.on_vote(&mut ctx, vote, false)
            }
            (Input::Vote(vote), _) => buffer(
                &mut self.future,
                current_height,
                self.chain_id.as_str(),
                self.config.max_cached_blocks,
                Buffered::Vote(vote),
            ),
            (Input::Timeout(t), Some(hs)) => hs.on_timeout(&mut ctx, t),
            (
                Input::BlockValidated {
                    height,
                    block_hash,
                    valid,
                },
                Some(hs),
            ) if height == hs.height => hs.on_validated(&mut ctx, block_hash, valid),
            (
                Input::BlockBuilt {
                    height,
                    round,
                    block,
                    block_hash,
                },
                Some(hs),
            ) if height == hs.height => hs.on_built(&mut ctx, round, block, block_hash),
            _ => ignored("not for the height in progress"),
        };
        Handled {
            verdict,
            outputs: ctx.out,
        }
    }
}

/// Keeps a message for a future height, within the bounds.
fn buffer<B>(
    future: &mut BTreeMap<u64, FutureBuffer<B>>,
    current: Option<u64>,
    chain_id: &str,
    max_blocks: usize,
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
    let buf = future.entry(height).or_insert_with(|| FutureBuffer {
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
    if is_proposal && buf.blocks >= max_blocks {
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

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    fn round_state(&mut self, round: u32) -> &mut RoundState {
        self.rounds.entry(round).or_default()
    }

    fn too_far_ahead(&self, ctx: &Ctx<'_, B>, round: u32) -> bool {
        round > self.round.saturating_add(ctx.config.max_rounds_ahead)
    }

    /// A round below the window of [`MAX_PAST_ROUNDS`] that nothing pins.
    fn too_old(&self, round: u32) -> bool {
        round < self.round.saturating_sub(MAX_PAST_ROUNDS) && !self.pinned(round)
    }

    /// Whether an earlier round holds something the protocol needs whatever its age: the
    /// valid round's prepares (the proof of lock we re-propose and relay), the locked
    /// round's, the latest earlier precommits (re-sent so that laggards can leave that
    /// round) and the prepares a proof of lock of the current or a future round cites
    /// (line 28 checks them).
    fn pinned(&self, round: u32) -> bool {
        self.valid.is_some_and(|(r, _)| r == round)
            || self.locked.is_some_and(|(r, _)| r == round)
            || self.latest_earlier_precommits() == Some(round)
            || self
                .rounds
                .range(self.round..)
                .any(|(_, rs)| rs.proposal.as_ref().and_then(|p| p.valid_round) == Some(round))
    }

    /// The latest round below the current one with precommits.
    fn latest_earlier_precommits(&self) -> Option<u32> {
        self.rounds
            .range(..self.round)
            .rev()
            .find(|(_, rs)| rs.precommits.total() > 0)
            .map(|(r, _)| *r)
    }

    /// Drops the earlier rounds outside the window that nothing pins: without this a
    /// height stuck for many rounds (a long partition) would keep every round's votes
    /// until it is decided. Votes for such rounds are then ignored as too old.
    fn prune_rounds(&mut self) {
        let floor = self.round.saturating_sub(MAX_PAST_ROUNDS);
        let keep: Vec<u32> = self
            .rounds
            .range(..floor)
            .map(|(r, _)| *r)
            .filter(|r| self.pinned(*r))
            .collect();
        self.rounds.retain(|r, _| *r >= floor || keep.contains(r));
    }

    fn note_round(&mut self, key: PublicKey, round: u32) {
        let entry = self.max_round_of.entry(key).or_insert(round);
        *entry = (*entry).max(round);
    }

    fn on_proposal(
        &mut self,
        ctx: &mut Ctx<'_, B>,
        proposal: Proposal,
        block: B,
        block_hash: Hash256,
        verified: bool,
    ) -> Verdict {
        if self.decided {
            return ignored("height already decided");
        }
        if proposal.block_hash != block_hash {
            return rejected("block hash does not match the proposal");
        }
        if proposal.valid_round.is_some_and(|vr| vr >= proposal.round) {
            return rejected("valid_round is not below the round");
        }
        if self
            .validators
            .proposer(self.height, proposal.round)
            .public_key
            != proposal.proposer
        {
            return rejected("not the proposer of this round");
        }
        let round = proposal.round;
        if self.rounds.get(&round).and_then(|r| r.proposal.as_ref()) == Some(&proposal) {
            return ignored("duplicate proposal");
        }
        if !verified && proposal.verify(ctx.chain_id).is_err() {
            return rejected("bad signature");
        }
        self.note_round(proposal.proposer, round);
        if self.too_far_ahead(ctx, round) {
            self.progress(ctx);
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
            ctx.out.push(Output::Evidence(Evidence::DoubleProposal {
                first,
                second: proposal,
            }));
            return Verdict::Accepted;
        }
        let pol_round = proposal.valid_round.filter(|_| round >= current_round);
        rs.proposal = Some(proposal);
        if let Some(vr) = pol_round {
            self.resend_prepare(ctx, vr, block_hash);
        }
        self.cache_block(ctx, block_hash, block, round, Validity::Pending);
        self.progress(ctx);
        Verdict::Accepted
    }

    fn on_vote(&mut self, ctx: &mut Ctx<'_, B>, vote: Vote, verified: bool) -> Verdict {
        if self.decided {
            return ignored("height already decided");
        }
        if self.validators.weight_of(&vote.validator) == 0 {
            return rejected("voter is not in the validator set");
        }
        let round = vote.round;
        if let Some(rs) = self.rounds.get_mut(&round) {
            if rs.votes(vote.kind).contains(&vote) {
                return ignored("duplicate vote");
            }
        }
        if !verified && vote.verify(ctx.chain_id).is_err() {
            return rejected("bad signature");
        }
        if self.too_far_ahead(ctx, round) {
            self.note_round(vote.validator, round);
            self.progress(ctx);
            return ignored("round too far ahead");
        }
        if self.too_old(round) {
            return ignored("round too old");
        }
        let verdict = self.record_vote(ctx, vote);
        self.progress(ctx);
        verdict
    }

    /// Counts a verified vote of a member.
    fn record_vote(&mut self, ctx: &mut Ctx<'_, B>, vote: Vote) -> Verdict {
        let weight = self.validators.weight_of(&vote.validator);
        self.note_round(vote.validator, vote.round);
        match self
            .round_state(vote.round)
            .votes(vote.kind)
            .add(vote.clone(), weight)
        {
            Added::New => Verdict::Accepted,
            Added::Duplicate => ignored("duplicate vote"),
            Added::Equivocation(first) => {
                ctx.out.push(Output::Evidence(Evidence::DoubleVote {
                    first: *first,
                    second: vote,
                }));
                Verdict::Accepted
            }
            Added::Conflicting => Verdict::Accepted,
            Added::Excess => ignored("equivocating voter already recorded"),
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_, B>, t: Timeout) -> Verdict {
        if t.height != self.height || self.decided {
            return ignored("stale timeout");
        }
        if t.round != self.round {
            return ignored("stale timeout");
        }
        match (t.step, self.step) {
            // Line 57: no proposal in time. The timer then repeats for as long as the
            // round lasts (see `rebroadcast`).
            (Step::Propose, Step::Propose) => {
                self.step = Step::Prepare;
                self.vote(ctx, VoteKind::Prepare, None);
                self.schedule(ctx, Step::Propose);
            }
            (Step::Propose, _) => {
                self.rebroadcast(ctx);
                self.schedule(ctx, Step::Propose);
            }
            // Line 61: no prepare quorum on one value in time.
            (Step::Prepare, Step::Prepare) => {
                self.step = Step::Precommit;
                self.vote(ctx, VoteKind::Precommit, None);
            }
            // Line 65: no decision in this round: next round.
            (Step::Precommit, _) => match self.round.checked_add(1) {
                Some(next) => self.start_round(ctx, next),
                None => return ignored("last round"),
            },
            _ => return ignored("stale timeout"),
        }
        self.progress(ctx);
        Verdict::Accepted
    }

    fn on_validated(&mut self, ctx: &mut Ctx<'_, B>, hash: Hash256, valid: bool) -> Verdict {
        if self.decided {
            return ignored("height already decided");
        }
        match self.blocks.get_mut(&hash) {
            Some(b) if b.validity == Validity::Pending => {
                b.validity = if valid {
                    Validity::Valid
                } else {
                    Validity::Invalid
                };
            }
            _ => return ignored("no block waiting for this validation"),
        }
        self.progress(ctx);
        Verdict::Accepted
    }

    fn on_built(&mut self, ctx: &mut Ctx<'_, B>, round: u32, block: B, hash: Hash256) -> Verdict {
        if self.decided || round != self.round || self.step != Step::Propose {
            return ignored("built block is stale");
        }
        if !self.is_our_turn(ctx) {
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
        self.cache_block(ctx, hash, block.clone(), round, Validity::Valid);
        self.propose(ctx, None, hash, block);
        self.progress(ctx);
        Verdict::Accepted
    }

    fn is_our_turn(&self, ctx: &Ctx<'_, B>) -> bool {
        ctx.signer.as_ref().is_some_and(|s| {
            self.validators.proposer(self.height, self.round).public_key == s.public_key()
        })
    }

    /// Adds a block to the cache (asking the application to validate it), evicting the
    /// block of the oldest round that is neither locked nor valid when full.
    fn cache_block(
        &mut self,
        ctx: &mut Ctx<'_, B>,
        hash: Hash256,
        block: B,
        round: u32,
        validity: Validity,
    ) {
        if let Some(b) = self.blocks.get_mut(&hash) {
            b.round = b.round.max(round);
            return;
        }
        if self.blocks.len() >= ctx.config.max_cached_blocks {
            let keep = |h: &Hash256| {
                self.locked.is_some_and(|(_, l)| l == *h)
                    || self.valid.is_some_and(|(_, v)| v == *h)
            };
            let victim = self
                .blocks
                .iter()
                .filter(|(h, _)| !keep(h))
                .min_by_key(|(_, b)| b.round)
                .map(|(h, _)| *h);
            match victim {
                Some(v) => {
                    self.blocks.remove(&v);
                }
                None => return,
            }
        }
        if validity == Validity::Pending {
            ctx.out.push(Output::ValidateBlock {
                height: self.height,
                block_hash: hash,
                block: block.clone(),
            });
        }
        self.blocks.insert(
            hash,
            CachedBlock {
                block,
                validity,
                round,
            },
        );
    }

    fn validity(&self, hash: &Hash256) -> Option<Validity> {
        self.blocks.get(hash).map(|b| b.validity)
    }

    fn schedule(&self, ctx: &mut Ctx<'_, B>, step: Step) {
        ctx.out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                height: self.height,
                round: self.round,
                step,
            },
            after_ms: ctx.config.timeout_ms(step, self.round),
        });
    }

    /// Emits the signer state when it changed without a signature (a new valid value).
    fn persist_locks(&self, ctx: &mut Ctx<'_, B>) {
        if let Some(signer) = ctx.signer.as_deref_mut() {
            if signer.record_locks(self.height, self.locked, self.valid) {
                ctx.out.push(Output::PersistSigner(signer.state().clone()));
            }
        }
    }

    /// Signs, counts and broadcasts our vote, if we are a member and the guard agrees.
    fn vote(&mut self, ctx: &mut Ctx<'_, B>, kind: VoteKind, value: Option<Hash256>) {
        let Some(signer) = ctx.signer.as_deref_mut() else {
            return;
        };
        if self.validators.weight_of(&signer.public_key()) == 0 {
            return;
        }
        match signer.sign_vote(ctx.chain_id, kind, self.height, self.round, value) {
            Ok(vote) => {
                signer.record_locks(self.height, self.locked, self.valid);
                ctx.out.push(Output::PersistSigner(signer.state().clone()));
                ctx.out.push(Output::BroadcastVote(vote.clone()));
                self.record_vote(ctx, vote);
            }
            Err(e) => {
                // Already signed for this slot before a restart: keep the lock persisted.
                tracing::warn!(height = self.height, round = self.round, "{e}");
                self.persist_locks(ctx);
            }
        }
    }

    fn propose(&mut self, ctx: &mut Ctx<'_, B>, valid_round: Option<u32>, hash: Hash256, block: B) {
        let Some(signer) = ctx.signer.as_deref_mut() else {
            return;
        };
        match signer.sign_proposal(ctx.chain_id, self.height, self.round, valid_round, hash) {
            Ok(proposal) => {
                signer.record_locks(self.height, self.locked, self.valid);
                ctx.out.push(Output::PersistSigner(signer.state().clone()));
                ctx.out.push(Output::BroadcastProposal {
                    proposal: proposal.clone(),
                    block,
                });
                if let Some(vr) = valid_round {
                    // The proof of lock travels with the re-proposal: validators locked
                    // on another block need it to prepare, and gossip may have lost it.
                    self.send_pol(ctx, vr, hash);
                }
                self.note_round(proposal.proposer, proposal.round);
                let round = proposal.round;
                self.round_state(round).proposal = Some(proposal);
            }
            Err(e) => {
                // Already signed for this slot before a restart: keep the lock persisted.
                tracing::warn!(height = self.height, round = self.round, "{e}");
                self.persist_locks(ctx);
            }
        }
    }

    /// Sends our votes of the current round again, with the precommits that took us
    /// past the previous round and the prepares that justify our valid value.
    /// The paper assumes that gossip
    /// eventually delivers every message; gossipsub does not retransmit what a partition
    /// or a restart lost, so without this a validator that waits for 2/3 of any prepares
    /// or precommits (the condition that starts the prepare and precommit timers) could
    /// wait forever after the network heals. The round's propose timer, which repeats
    /// while the round lasts, drives it: a round that goes well is decided before it
    /// ever fires.
    fn rebroadcast(&mut self, ctx: &mut Ctx<'_, B>) {
        let Some(key) = ctx.signer.as_ref().map(|s| s.public_key()) else {
            return;
        };
        let Some(rs) = self.rounds.get(&self.round) else {
            return;
        };
        for set in [&rs.prepares, &rs.precommits] {
            if let Some(vote) = set.get(&key) {
                ctx.out.push(Output::BroadcastVote(vote.clone()));
            }
        }
        let pol = rs
            .proposal
            .as_ref()
            .and_then(|p| Some((p.valid_round?, p.block_hash)));
        // The precommits of the latest earlier round, which are what moved us on:
        // validators still in that round need 2/3 of them to time out and follow, and
        // some may be lost for good (a restarted validator cannot re-send what it signed
        // before its last message).
        let earlier = self
            .latest_earlier_precommits()
            .and_then(|r| self.rounds.get(&r));
        if let Some(rs) = earlier {
            for vote in rs.precommits.all() {
                ctx.out.push(Output::BroadcastVote(vote.clone()));
            }
        }
        if let Some((vr, hash)) = pol {
            self.resend_prepare(ctx, vr, hash);
        }
        // Everyone's valid value reaches everyone: the next honest proposer then holds
        // the most recent one and re-proposes it, which every honest lock accepts.
        if let Some((vr, hash)) = self.valid {
            self.send_pol(ctx, vr, hash);
        }
    }

    /// Relays the prepares that form the quorum for `hash` in `round` (they are signed,
    /// so anyone can forward them).
    fn send_pol(&self, ctx: &mut Ctx<'_, B>, round: u32, hash: Hash256) {
        if let Some(rs) = self.rounds.get(&round) {
            for vote in rs.prepares.votes_for(Some(hash)) {
                ctx.out.push(Output::BroadcastVote(vote.clone()));
            }
        }
    }

    /// Sends our prepare for `hash` in `round` again: a re-proposal names that round as
    /// its proof of lock, and validators that lost some of its prepares (they are not
    /// retransmitted by gossip) need them to unlock.
    fn resend_prepare(&mut self, ctx: &mut Ctx<'_, B>, round: u32, hash: Hash256) {
        let Some(key) = ctx.signer.as_ref().map(|s| s.public_key()) else {
            return;
        };
        let vote = self.rounds.get(&round).and_then(|rs| rs.prepares.get(&key));
        if let Some(vote) = vote.filter(|v| v.block_hash == Some(hash)) {
            ctx.out.push(Output::BroadcastVote(vote.clone()));
        }
    }

    /// Line 11: StartRound.
    fn start_round(&mut self, ctx: &mut Ctx<'_, B>, round: u32) {
        self.round = round;
        self.step = Step::Propose;
        self.prune_rounds();
        self.round_state(round);
        let already_proposed = ctx
            .signer
            .as_ref()
            .is_some_and(|s| s.has_passed(self.height, round, STEP_PROPOSAL));
        if self.is_our_turn(ctx) && !already_proposed {
            let reuse = self.valid.and_then(|(vr, hash)| {
                let b = self.blocks.get(&hash)?;
                (b.validity == Validity::Valid).then(|| (vr, hash, b.block.clone()))
            });
            match reuse {
                Some((vr, hash, block)) => self.propose(ctx, Some(vr), hash, block),
                None => ctx.out.push(Output::BuildBlock {
                    height: self.height,
                    round,
                }),
            }
        }
        // Also for the proposer: the application may never answer BuildBlock.
        self.schedule(ctx, Step::Propose);
    }

    /// Applies every rule whose condition holds until none does.
    fn progress(&mut self, ctx: &mut Ctx<'_, B>) {
        while !self.decided {
            if let Some((round, hash)) = self.decision() {
                self.decide(ctx, round, hash);
                return;
            }
            if let Some(round) = self.skip_target() {
                // Line 55: more than a third of the weight is in a later round.
                self.start_round(ctx, round);
                continue;
            }
            if !self.step_rules(ctx) {
                return;
            }
        }
    }

    /// Line 49: 2/3 of the weight precommitted one block in some round.
    fn decision(&self) -> Option<(u32, Hash256)> {
        self.rounds.iter().find_map(|(r, rs)| {
            rs.precommits.values().find_map(|(value, weight)| {
                let hash = value?;
                self.validators.is_quorum(weight).then_some((*r, hash))
            })
        })
    }

    fn decide(&mut self, ctx: &mut Ctx<'_, B>, round: u32, hash: Hash256) {
        let Some(rs) = self.rounds.get(&round) else {
            return;
        };
        let certificate = Certificate::from_votes(
            self.height,
            round,
            hash,
            rs.precommits.votes_for(Some(hash)),
        );
        let block = self.blocks.get(&hash).map(|b| b.block.clone());
        ctx.out.push(Output::Decide {
            height: self.height,
            round,
            block_hash: hash,
            block,
            certificate,
        });
        self.decided = true;
        // Nothing of the height is needed any more.
        self.blocks.clear();
        self.rounds.clear();
        self.max_round_of.clear();
    }

    /// The highest round above ours that members with more than a third of the weight
    /// have reached, if any.
    fn skip_target(&self) -> Option<u32> {
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
                return Some(round);
            }
        }
        None
    }

    /// The rules of the current round; true when one fired.
    ///
    /// Nil quorums. Two rules act on 2/3 of the weight voting nil in the current round
    /// without waiting for a timer: a nil prepare quorum makes a validator still in the
    /// Propose step prepare nil (line 44 then precommits nil), and a nil precommit quorum
    /// starts the next round. Why this is safe:
    ///
    /// 1. Nothing in the paper's safety proof depends on when a timer fires. A timeout's
    ///    only effect is a nil vote (lines 57, 61) or StartRound(r + 1) (line 65), and an
    ///    asynchronous network can delay every other message of the round past any timer,
    ///    so the proof already covers a validator that votes nil or leaves round r at any
    ///    moment, whatever it saw or sent in r. These rules are such a timer firing
    ///    early: the lock and the valid value carry over unchanged, and the signer still
    ///    refuses anything older than what it signed.
    /// 2. Nothing is given up. Let f < T/3 be the faulty weight of total T. If nil has
    ///    2/3 of the round's precommits (or prepares) and a block b had 2/3 too, the
    ///    honest weight behind each is at least 2T/3 − f (an equivocator's votes count
    ///    for every value they name, but only once toward the honest part); honest
    ///    validators sign one vote per slot, so these parts are disjoint and
    ///    2 × (2T/3 − f) ≤ T − f, i.e. f ≥ T/3: a contradiction. So after a nil precommit
    ///    quorum round r decides nothing, and after a nil prepare quorum no honest
    ///    validator locks in r and no proof of lock for r exists. (Line 49 still scans
    ///    every stored round, so a decision is never missed either way.)
    fn step_rules(&mut self, ctx: &mut Ctx<'_, B>) -> bool {
        let round = self.round;
        let set = &self.validators;
        let Some(rs) = self.rounds.get(&round) else {
            return false;
        };
        let proposal = rs.proposal.clone();
        let validity = proposal.as_ref().and_then(|p| self.validity(&p.block_hash));
        // A precommit shows its sender is done preparing: counting it toward "2/3 of any
        // prepares" lets a validator that lost some prepares (a restarted validator
        // cannot re-send a prepare it signed before its last precommit) still time out.
        let prepare_total = rs.precommits.voters().fold(rs.prepares.total(), |w, k| {
            if rs.prepares.get(k).is_some() {
                w
            } else {
                w.saturating_add(set.weight_of(k))
            }
        });
        let prepare_nil = rs.prepares.weight_for(None);
        let precommit_total = rs.precommits.total();
        let precommit_nil = rs.precommits.weight_for(None);
        let proposal_has_quorum = proposal
            .as_ref()
            .is_some_and(|p| set.is_quorum(rs.prepares.weight_for(Some(p.block_hash))));
        let lock_rule_fired = rs.lock_rule_fired;
        let (prepare_timeout_set, precommit_timeout_set) =
            (rs.prepare_timeout_set, rs.precommit_timeout_set);

        if self.step == Step::Propose && self.validators.is_quorum(prepare_nil) {
            // Line 44 reached from the Propose step: 2/3 of the weight prepared nil, so no
            // block can gather a prepare quorum in this round (see "Nil quorums" on `step_rules`) and
            // waiting for the proposal only holds back the nil precommit that the others
            // may need to leave the round. Preparing nil is what the propose timeout would
            // do; the next pass precommits nil.
            self.step = Step::Prepare;
            self.vote(ctx, VoteKind::Prepare, None);
            return true;
        }
        if self.step == Step::Propose {
            if let (Some(p), Some(validity)) = (&proposal, validity) {
                if validity != Validity::Pending {
                    let ok = validity == Validity::Valid;
                    let hash = p.block_hash;
                    let vote = match p.valid_round {
                        // Line 22: a fresh proposal.
                        None => Some(ok && self.locked.is_none_or(|(_, l)| l == hash)),
                        // Line 28: a re-proposal backed by a prepare quorum of `vr`.
                        Some(vr) => {
                            let pol = self
                                .rounds
                                .get(&vr)
                                .is_some_and(|r| set.is_quorum(r.prepares.weight_for(Some(hash))));
                            let free = self.locked.is_none_or(|(_, l)| l == hash);
                            if pol {
                                Some(ok && self.locked.is_none_or(|(lr, l)| lr <= vr || l == hash))
                            } else if free {
                                // Unlocked, or locked on this very block: line 22 would
                                // prepare it, so the POL (needed only to unlock) is not
                                // awaited. Waiting would stall rounds whenever a POL vote
                                // was lost, since gossip does not retransmit.
                                Some(ok)
                            } else {
                                None
                            }
                        }
                    };
                    if let Some(yes) = vote {
                        self.step = Step::Prepare;
                        self.vote(ctx, VoteKind::Prepare, yes.then_some(hash));
                        return true;
                    }
                }
            }
        }
        if self.step >= Step::Prepare
            && !lock_rule_fired
            && proposal_has_quorum
            && validity == Some(Validity::Valid)
        {
            // Line 36: a prepare quorum for the round's valid proposal.
            let hash = proposal.as_ref().map_or(Hash256::ZERO, |p| p.block_hash);
            self.round_state(round).lock_rule_fired = true;
            self.valid = Some((round, hash));
            if self.step == Step::Prepare {
                self.locked = Some((round, hash));
                self.step = Step::Precommit;
                self.vote(ctx, VoteKind::Precommit, Some(hash));
            } else {
                self.persist_locks(ctx);
            }
            return true;
        }
        if self.step == Step::Prepare {
            if !prepare_timeout_set && self.validators.is_quorum(prepare_total) {
                // Line 34.
                self.round_state(round).prepare_timeout_set = true;
                self.schedule(ctx, Step::Prepare);
                return true;
            }
            if self.validators.is_quorum(prepare_nil) {
                // Line 44.
                self.step = Step::Precommit;
                self.vote(ctx, VoteKind::Precommit, None);
                return true;
            }
        }
        if self.validators.is_quorum(precommit_nil) {
            // 2/3 of the weight precommitted nil: this round can decide nothing (see
            // `NIL_QUORUM_SAFETY`), so start the next one now instead of after the
            // precommit timeout, as CometBFT does. Our own precommit, if not sent yet,
            // is not needed by anyone: the quorum that moves the others on exists.
            if let Some(next) = round.checked_add(1) {
                self.start_round(ctx, next);
                return true;
            }
        }
        if !precommit_timeout_set && self.validators.is_quorum(precommit_total) {
            // Line 47.
            self.round_state(round).precommit_timeout_set = true;
            self.schedule(ctx, Step::Precommit);
            return true;
        }
        if let Some(pol) = self.newer_valid_value() {
            self.valid = Some(pol);
            self.persist_locks(ctx);
            return true;
        }
        false
    }

    /// A valid block with a prepare quorum in a round above the valid value's, up to the
    /// current one. The paper only takes the current round's (line 36); a proof of lock
    /// seen late, from a round the validator already left, is just as good a value to
    /// re-propose (receivers check the quorum of its valid_round themselves), and without
    /// it a lock whose proof reached only some validators could stay unresolved.
    fn newer_valid_value(&self) -> Option<(u32, Hash256)> {
        let floor = self.valid.map(|(r, _)| r);
        self.rounds
            .range(..=self.round)
            .rev()
            .take_while(|(r, _)| floor.is_none_or(|f| **r > f))
            .find_map(|(r, rs)| {
                rs.prepares.values().find_map(|(value, weight)| {
                    let hash = value?;
                    let valid = self.validity(&hash) == Some(Validity::Valid);
                    (valid && self.validators.is_quorum(weight)).then_some((*r, hash))
                })
            })
    }
}
