//! What the Byzantine validators of a scenario do: equivocate (two versions of every
//! proposal and vote, each to half of the network), stay silent, or send junk. Honest
//! validators must stay safe and live through all of it, and no honest one may ever be
//! taken for a culprit.

use super::{Event, Msg, Rng, Sim, SimBlock, CHAIN_ID};
use timecoin_consensus::Evidence;
use timecoin_types::{Hash256, Keypair, Proposal, Signature, Vote, VoteKind};

/// What a validator does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Follows the protocol (may still crash and restart).
    Honest,
    /// Runs the engine but sends two different proposals and two different votes, each to
    /// half of the network.
    Equivocate,
    /// Never sends anything.
    Silent,
    /// Sends a stream of malformed, forged, misaddressed or random signed messages.
    Garbage,
}

impl Behavior {
    /// One of the Byzantine behaviours, at random.
    pub(super) fn draw_byzantine(rng: &mut Rng) -> Behavior {
        match rng.range(0, 2) {
            0 => Behavior::Equivocate,
            1 => Behavior::Silent,
            _ => Behavior::Garbage,
        }
    }
}

impl Sim<'_> {
    /// Evidence must be two different, validly signed messages for one slot, and its
    /// culprit must not be honest.
    pub(super) fn check_evidence(&self, e: &Evidence) -> Result<(), String> {
        let (culprit, genuine, what) = match e {
            Evidence::DoubleVote { first, second } => {
                let signed = |v: &Vote| v.verify(CHAIN_ID).is_ok();
                (first.validator, genuine(first, second, signed), "vote")
            }
            Evidence::DoubleProposal { first, second } => {
                let signed = |p: &Proposal| p.verify(CHAIN_ID).is_ok();
                (first.proposer, genuine(first, second, signed), "proposal")
            }
        };
        if !genuine {
            return Err(format!("bogus {what} evidence"));
        }
        if let Some(j) = self.nodes.iter().position(|n| n.key.public() == culprit) {
            if self.honest(j) {
                return Err(format!("honest node {j} equivocated: {e:?}"));
            }
        }
        Ok(())
    }

    /// Gossips a message of node `i`: as it is, or with a conflicting twin when `i`
    /// equivocates.
    pub(super) fn gossip(&mut self, i: usize, msg: Msg) {
        if self.nodes[i].behavior != Behavior::Equivocate {
            self.broadcast(i, msg);
            return;
        }
        let twin = self.twin(i, &msg);
        self.split(i, msg, twin);
    }

    /// A message of node `i` for the same slot as `msg` but for another value: a proposal
    /// for a sibling block (invalid half of the time), a vote for nil instead of a block
    /// or for a random block instead of nil.
    fn twin(&mut self, i: usize, msg: &Msg) -> Msg {
        let key = &self.nodes[i].key;
        match msg {
            Msg::Proposal(proposal, block) => {
                let other = SimBlock {
                    payload: block.payload ^ 1,
                    invalid: self.rng.chance(500),
                    ..block.clone()
                };
                let second = Proposal::sign(
                    CHAIN_ID,
                    key,
                    proposal.height,
                    proposal.round,
                    proposal.valid_round,
                    other.hash(),
                );
                Msg::Proposal(second, other)
            }
            Msg::Vote(vote) => {
                let value = match vote.block_hash {
                    Some(_) => None,
                    None => Some(Hash256::digest(&self.rng.next_u64().to_be_bytes())),
                };
                let second = Vote::sign(CHAIN_ID, key, vote.kind, vote.height, vote.round, value);
                Msg::Vote(second)
            }
        }
    }

    /// Sends `a` to a random half of the others and `b` to the rest, then the other
    /// version one hop later: gossip relays what honest peers accepted, so everyone
    /// eventually sees both, in an order the equivocator chose.
    fn split(&mut self, from: usize, a: Msg, b: Msg) {
        for to in 0..self.nodes.len() {
            if to != from {
                let (first, second) = if self.rng.chance(500) {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                self.send(from, to, first);
                let relay = self.s.latency_ms + self.rng.range(0, self.s.jitter_ms);
                self.send_after(from, to, second, relay);
            }
        }
    }

    /// One message of junk from a Byzantine validator to everyone, and the next one
    /// scheduled.
    pub(super) fn garbage(&mut self, i: usize) {
        let height = self.chain.last_key_value().map_or(1, |(h, _)| h + 1) + self.rng.range(0, 2);
        let round = self.rng.range(0, 12) as u32;
        let kind = if self.rng.chance(500) {
            VoteKind::Prepare
        } else {
            VoteKind::Precommit
        };
        let random_hash = Hash256::digest(&self.rng.next_u64().to_be_bytes());
        let key = self.nodes[i].key.clone();
        let msg = match self.rng.range(0, 5) {
            // Validly signed votes for random blocks and rounds: counted, and
            // equivocations when they collide.
            0 => Msg::Vote(Vote::sign(
                CHAIN_ID,
                &key,
                kind,
                height,
                round,
                Some(random_hash),
            )),
            // A forged vote in an honest validator's name.
            1 => {
                let victim = self.rng.range(0, self.nodes.len() as u64 - 1) as usize;
                let mut v = Vote::sign(CHAIN_ID, &key, kind, height, round, Some(random_hash));
                v.validator = self.nodes[victim].key.public();
                v.signature = Signature([self.rng.next_u64() as u8; 64]);
                Msg::Vote(v)
            }
            // A key outside the set.
            2 => {
                let outsider = Keypair::from_seed([self.rng.next_u64() as u8; 32]);
                Msg::Vote(Vote::sign(CHAIN_ID, &outsider, kind, height, round, None))
            }
            // Another chain.
            3 => Msg::Vote(Vote::sign("other-chain", &key, kind, height, round, None)),
            // A proposal that may not be ours to make, for a block that may not match.
            4 => {
                let block = SimBlock {
                    height,
                    round,
                    proposer: i,
                    payload: self.rng.next_u64(),
                    invalid: true,
                };
                let hash = if self.rng.chance(500) {
                    block.hash()
                } else {
                    random_hash
                };
                Msg::Proposal(
                    Proposal::sign(CHAIN_ID, &key, height, round, None, hash),
                    block,
                )
            }
            // A round far in the future.
            _ => Msg::Vote(Vote::sign(
                CHAIN_ID,
                &key,
                kind,
                height,
                u32::MAX - round,
                None,
            )),
        };
        self.broadcast(i, msg);
        let next = self.now + self.rng.range(50, 300);
        self.push(next, Event::Garbage { node: i });
    }
}

/// Two different messages, both validly signed.
fn genuine<M: PartialEq>(first: &M, second: &M, signed: impl Fn(&M) -> bool) -> bool {
    signed(first) && signed(second) && first != second
}
