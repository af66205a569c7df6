//! Unit tests of the engine's rules, one scenario each, by subject. The helpers here
//! build a small network of known keys and feed one engine the messages of the others.

mod bounds;
mod evidence;
mod locking;
mod membership;
mod nil;
mod quorums;
mod restart;

use crate::*;
use timecoin_types::{
    Certificate, Hash256, Keypair, Proposal, PublicKey, Validator, ValidatorSet, Vote, VoteKind,
};

const CHAIN: &str = "test-chain";

#[derive(Clone, Debug, PartialEq)]
struct Blk(u64);

fn hash_of(b: &Blk) -> Hash256 {
    Hash256::digest(&b.0.to_be_bytes())
}

struct Net {
    keys: Vec<Keypair>,
    set: ValidatorSet,
}

impl Net {
    fn new(weights: &[u64]) -> Net {
        let keys: Vec<Keypair> = (0..weights.len())
            .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
            .collect();
        let set = ValidatorSet::new(
            keys.iter()
                .zip(weights)
                .map(|(k, &w)| Validator::with_own_reward_address(k.public(), w))
                .collect(),
        )
        .unwrap();
        Net { keys, set }
    }

    fn key_of(&self, pk: &PublicKey) -> &Keypair {
        self.keys.iter().find(|k| k.public() == *pk).unwrap()
    }

    fn proposer(&self, h: u64, r: u32) -> &Keypair {
        self.key_of(&self.set.proposer(h, r).public_key)
    }

    /// Index of the key that proposes round `r` at `h`.
    fn proposer_index(&self, h: u64, r: u32) -> usize {
        (0..self.keys.len())
            .find(|&i| self.keys[i].public() == self.proposer(h, r).public())
            .unwrap()
    }

    /// Index of a key that does not propose rounds `0..rounds` at `h`.
    fn non_proposer(&self, h: u64, rounds: u32) -> usize {
        (0..self.keys.len())
            .find(|&i| (0..rounds).all(|r| self.proposer(h, r).public() != self.keys[i].public()))
            .unwrap()
    }

    fn engine(&self, me: Option<usize>) -> Engine<Blk> {
        let signer = me.map(|i| Signer::new(self.keys[i].clone(), None));
        Engine::new(CHAIN.into(), Config::default(), signer)
    }

    fn vote(&self, i: usize, kind: VoteKind, h: u64, r: u32, b: Option<&Blk>) -> Input<Blk> {
        Input::Vote(Vote::sign(CHAIN, &self.keys[i], kind, h, r, b.map(hash_of)))
    }

    /// The proposal of round `r` for `b`, by its proposer.
    fn proposal(&self, h: u64, r: u32, vr: Option<u32>, b: &Blk) -> Input<Blk> {
        proposal_by(self.proposer(h, r), h, r, vr, b, hash_of(b))
    }

    /// Feeds votes of `kind` for `b` from every validator in `who`.
    fn votes(
        &self,
        e: &mut Engine<Blk>,
        who: &[usize],
        kind: VoteKind,
        h: u64,
        r: u32,
        b: Option<&Blk>,
    ) -> Vec<Output<Blk>> {
        let mut out = Vec::new();
        for &i in who {
            let handled = e.handle(self.vote(i, kind, h, r, b));
            assert_eq!(handled.verdict, Verdict::Accepted, "vote of {i}");
            out.extend(handled.outputs);
        }
        out
    }
}

/// A proposal for `b` signed by `key`, handed in with `block_hash` as the block's hash.
fn proposal_by(
    key: &Keypair,
    h: u64,
    r: u32,
    vr: Option<u32>,
    b: &Blk,
    block_hash: Hash256,
) -> Input<Blk> {
    Input::Proposal {
        proposal: Proposal::sign(CHAIN, key, h, r, vr, hash_of(b)),
        block: b.clone(),
        block_hash,
    }
}

fn timeout(height: u64, round: u32, step: Step) -> Input<Blk> {
    Input::Timeout(Timeout {
        height,
        round,
        step,
    })
}

fn validated(height: u64, b: &Blk, valid: bool) -> Input<Blk> {
    Input::BlockValidated {
        height,
        block_hash: hash_of(b),
        valid,
    }
}

fn built(height: u64, round: u32, b: &Blk) -> Input<Blk> {
    Input::BlockBuilt {
        height,
        round,
        block: b.clone(),
        block_hash: hash_of(b),
    }
}

fn ignored(v: &Verdict) -> bool {
    matches!(v, Verdict::Ignored(_))
}

fn rejected(v: &Verdict) -> bool {
    matches!(v, Verdict::Rejected(_))
}

/// Every vote broadcast, ours or relayed.
fn sent_votes(out: &[Output<Blk>]) -> Vec<(VoteKind, u32, Option<Hash256>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::BroadcastVote(v) => Some((v.kind, v.round, v.block_hash)),
            _ => None,
        })
        .collect()
}

/// A vote of `kind` in `round` for `b`, as [`sent_votes`] lists it.
fn vote_for(kind: VoteKind, round: u32, b: &Blk) -> (VoteKind, u32, Option<Hash256>) {
    (kind, round, Some(hash_of(b)))
}

/// How many times `vote` (kind, round, value) is broadcast.
fn times_sent(out: &[Output<Blk>], vote: (VoteKind, u32, Option<Hash256>)) -> usize {
    sent_votes(out).into_iter().filter(|v| *v == vote).count()
}

/// Whether a timer of `step` is asked for.
fn schedules(out: &[Output<Blk>], step: Step) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == step))
}

/// Whether any timer is asked for.
fn schedules_any(out: &[Output<Blk>]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::ScheduleTimeout { .. }))
}

fn decision(out: &[Output<Blk>]) -> Option<(u32, Hash256, Option<Blk>, Certificate)> {
    out.iter().find_map(|o| match o {
        Output::Decide {
            round,
            block_hash,
            block,
            certificate,
            ..
        } => Some((*round, *block_hash, block.clone(), certificate.clone())),
        _ => None,
    })
}

fn evidence(out: &[Output<Blk>]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Evidence(_)))
        .count()
}

/// Delivers the round's proposal and validates it; returns the outputs.
fn propose_valid(
    net: &Net,
    e: &mut Engine<Blk>,
    h: u64,
    r: u32,
    vr: Option<u32>,
    b: &Blk,
) -> Vec<Output<Blk>> {
    let handled = e.handle(net.proposal(h, r, vr, b));
    assert_eq!(handled.verdict, Verdict::Accepted);
    let mut out = handled.outputs;
    let asked = out.iter().any(
        |o| matches!(o, Output::ValidateBlock { block_hash, .. } if *block_hash == hash_of(b)),
    );
    if asked {
        out.extend(e.handle(validated(h, b, true)).outputs);
    }
    out
}

/// A network of validators of `weights` and the engine of one that does not propose rounds
/// 0..3, started at height 1; with the indices of the others.
fn started(weights: &[u64]) -> (Net, Engine<Blk>, Vec<usize>) {
    let net = Net::new(weights);
    let me = net.non_proposer(1, 3);
    let mut e = net.engine(Some(me));
    e.start_height(1, net.set.clone(), net.set.clone());
    let o = others(&net, me);
    (net, e, o)
}

fn others(net: &Net, me: usize) -> Vec<usize> {
    (0..net.keys.len()).filter(|&i| i != me).collect()
}

/// Leaves round `r` of height 1 after the nil precommits of `who`: at once when they leave
/// no block a precommit quorum, else by the precommit timer; returns the outputs of both.
fn leave_round(net: &Net, e: &mut Engine<Blk>, who: &[usize], r: u32) -> Vec<Output<Blk>> {
    let mut out = net.votes(e, who, VoteKind::Precommit, 1, r, None);
    out.extend(e.handle(timeout(1, r, Step::Precommit)).outputs);
    out
}

/// Round `r` of height 1 passes without a proposal for us: the propose timer fires (we
/// prepare nil), then we leave the round as in [`leave_round`] with two others' nil
/// precommits.
fn time_out_round(net: &Net, e: &mut Engine<Blk>, o: &[usize], r: u32) {
    e.handle(timeout(1, r, Step::Propose));
    leave_round(net, e, &o[..2], r);
}

/// As [`started`] with four equal weights, then locked on `a` in round 0 and moved to
/// round 1 by timeouts.
fn locked_on(a: &Blk) -> (Net, Engine<Blk>, Vec<usize>) {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    propose_valid(&net, &mut e, 1, 0, None, a);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(a));
    assert_eq!(e.signer().unwrap().state().locked, Some((0, hash_of(a))));
    leave_round(&net, &mut e, &o[..2], 0);
    assert_eq!(e.round(), 1);
    (net, e, o)
}

/// The set of `net`'s validators `who`.
fn subset(net: &Net, who: &[usize]) -> ValidatorSet {
    let members = who
        .iter()
        .map(|&i| net.set.get(&net.keys[i].public()).unwrap().clone())
        .collect();
    ValidatorSet::new(members).unwrap()
}

/// Five validators and the sets of a change at height 2, where key 0 leaves and key 4 joins:
/// keys 0 to 3 at height 1, keys 1 to 4 from height 2 on.
fn set_change() -> (Net, ValidatorSet, ValidatorSet) {
    let net = Net::new(&[1, 1, 1, 1, 1]);
    let (before, after) = (subset(&net, &[0, 1, 2, 3]), subset(&net, &[1, 2, 3, 4]));
    (net, before, after)
}

/// Feeds the round-0 proposal of `h` under `set`, validated, then the votes of `who`.
fn run_height(
    net: &Net,
    e: &mut Engine<Blk>,
    set: &ValidatorSet,
    h: u64,
    who: &[usize],
) -> Vec<Output<Blk>> {
    let b = Blk(h * 100);
    let proposer = net.key_of(&set.proposer(h, 0).public_key);
    let mut out = e
        .handle(proposal_by(proposer, h, 0, None, &b, hash_of(&b)))
        .outputs;
    out.extend(e.handle(validated(h, &b, true)).outputs);
    for kind in [VoteKind::Prepare, VoteKind::Precommit] {
        out.extend(net.votes(e, who, kind, h, 0, Some(&b)));
    }
    out
}
