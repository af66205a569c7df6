//! Unit tests of the engine's rules, one scenario each.

use crate::*;
use proptest::prelude::*;
use timecoin_types::{
    Address, Certificate, Hash256, Keypair, Proposal, PublicKey, Signature, Validator,
    ValidatorSet, Vote, VoteKind,
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
                .map(|(k, &w)| Validator {
                    public_key: k.public(),
                    weight: w,
                    reward_address: Address::of(&k.public()),
                })
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

    fn proposal(&self, h: u64, r: u32, vr: Option<u32>, b: &Blk) -> Input<Blk> {
        let p = Proposal::sign(CHAIN, self.proposer(h, r), h, r, vr, hash_of(b));
        Input::Proposal {
            proposal: p,
            block: b.clone(),
            block_hash: hash_of(b),
        }
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

fn own_votes(out: &[Output<Blk>]) -> Vec<(VoteKind, u32, Option<Hash256>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::BroadcastVote(v) => Some((v.kind, v.round, v.block_hash)),
            _ => None,
        })
        .collect()
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
        out.extend(
            e.handle(Input::BlockValidated {
                height: h,
                block_hash: hash_of(b),
                valid: true,
            })
            .outputs,
        );
    }
    out
}

/// An engine for a non-proposer of rounds 0..3, started at height 1.
fn started(net: &Net) -> (Engine<Blk>, usize) {
    let me = net.non_proposer(1, 3);
    let mut e = net.engine(Some(me));
    e.start_height(1, net.set.clone());
    (e, me)
}

fn others(net: &Net, me: usize) -> Vec<usize> {
    (0..net.keys.len()).filter(|&i| i != me).collect()
}

#[test]
fn happy_path_decides_with_a_verifying_certificate() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let a = Blk(7);
    let out = propose_valid(&net, &mut e, 1, 0, None, &a);
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 0, Some(hash_of(&a)))]
    );
    // PersistSigner comes before the vote it covers.
    let persist = out
        .iter()
        .position(|o| matches!(o, Output::PersistSigner(_)))
        .unwrap();
    let send = out
        .iter()
        .position(|o| matches!(o, Output::BroadcastVote(_)))
        .unwrap();
    assert!(persist < send);
    let o = others(&net, me);
    let out = net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Precommit, 0, Some(hash_of(&a)))]
    );
    assert_eq!(e.step(), Step::Precommit);
    assert_eq!(e.signer().unwrap().state().locked, Some((0, hash_of(&a))));
    let out = net.votes(&mut e, &o[..1], VoteKind::Precommit, 1, 0, Some(&a));
    assert!(decision(&out).is_none());
    let out = net.votes(&mut e, &o[1..2], VoteKind::Precommit, 1, 0, Some(&a));
    let (round, hash, block, cert) = decision(&out).unwrap();
    assert_eq!((round, hash, block), (0, hash_of(&a), Some(a)));
    assert_eq!(cert.verify_for(CHAIN, &net.set, 1, &hash), Ok(3));
    assert!(e.is_decided());
    let late = e.handle(net.vote(o[2], VoteKind::Precommit, 1, 0, Some(&Blk(7))));
    assert!(matches!(late.verdict, Verdict::Ignored(_)));
}

#[test]
fn quorum_is_exactly_two_thirds_of_the_weight() {
    // Total 6: 4 is exactly two thirds, 3 is not.
    let net = Net::new(&[2, 1, 1, 2]);
    let heavy: Vec<usize> = (0..4)
        .filter(|&i| net.set.weight_of(&net.keys[i].public()) == 2)
        .collect();
    let light: Vec<usize> = (0..4)
        .filter(|&i| net.set.weight_of(&net.keys[i].public()) == 1)
        .collect();
    let a = Blk(1);
    let mut follower = net.engine(None);
    follower.start_height(1, net.set.clone());
    let out = net.votes(
        &mut follower,
        &[heavy[0], light[0]],
        VoteKind::Precommit,
        1,
        0,
        Some(&a),
    );
    assert!(decision(&out).is_none());
    let out = net.votes(
        &mut follower,
        &[light[1]],
        VoteKind::Precommit,
        1,
        0,
        Some(&a),
    );
    let (_, _, block, cert) = decision(&out).unwrap();
    assert_eq!(block, None, "decided without ever seeing the block");
    assert_eq!(cert.verify(CHAIN, &net.set), Ok(4));
    assert_eq!(cert.signatures.len(), 3);
    let _ = heavy[1];
}

#[test]
fn follower_never_signs() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(None);
    e.start_height(1, net.set.clone());
    let a = Blk(3);
    let mut out = propose_valid(&net, &mut e, 1, 0, None, &a);
    out.extend(net.votes(&mut e, &[0, 1, 2], VoteKind::Prepare, 1, 0, Some(&a)));
    out.extend(net.votes(&mut e, &[0, 1, 2], VoteKind::Precommit, 1, 0, Some(&a)));
    assert!(own_votes(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(o, Output::PersistSigner(_))));
    assert!(decision(&out).is_some());
}

#[test]
fn proposer_builds_and_proposes() {
    let net = Net::new(&[1, 1, 1, 1]);
    let me = (0..4)
        .find(|&i| net.keys[i].public() == net.proposer(1, 0).public())
        .unwrap();
    let mut e = net.engine(Some(me));
    let out = e.start_height(1, net.set.clone());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::BuildBlock {
            height: 1,
            round: 0
        }
    )));
    let b = Blk(9);
    let handled = e.handle(Input::BlockBuilt {
        height: 1,
        round: 0,
        block: b.clone(),
        block_hash: hash_of(&b),
    });
    let out = handled.outputs;
    assert!(matches!(out[0], Output::PersistSigner(_)));
    assert!(
        matches!(&out[1], Output::BroadcastProposal { proposal, .. } if proposal.block_hash == hash_of(&b))
    );
    // Its own block needs no validation round trip: it prepares at once.
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 0, Some(hash_of(&b)))]
    );
    let again = e.handle(Input::BlockBuilt {
        height: 1,
        round: 0,
        block: Blk(10),
        block_hash: hash_of(&Blk(10)),
    });
    assert!(matches!(again.verdict, Verdict::Ignored(_)));
}

#[test]
fn timeouts_vote_nil_and_move_to_the_next_round() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let t = |round, step| {
        Input::Timeout(Timeout {
            height: 1,
            round,
            step,
        })
    };
    let out = e.handle(t(0, Step::Propose)).outputs;
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
    // The prepare timer starts only after 2/3 of any prepares.
    let o = others(&net, me);
    let out = net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, Some(&Blk(1)));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::ScheduleTimeout { .. })));
    let out = net.votes(&mut e, &o[1..2], VoteKind::Prepare, 1, 0, Some(&Blk(2)));
    assert!(out.iter().any(|o| matches!(o, Output::ScheduleTimeout { timeout, after_ms: 500 } if timeout.step == Step::Prepare)));
    let out = e.handle(t(0, Step::Prepare)).outputs;
    assert_eq!(own_votes(&out), vec![(VoteKind::Precommit, 0, None)]);
    // 2/3 of any precommits, but no nil quorum (that would move on at once).
    let mut out = net.votes(&mut e, &o[..1], VoteKind::Precommit, 1, 0, None);
    out.extend(net.votes(&mut e, &o[1..2], VoteKind::Precommit, 1, 0, Some(&Blk(1))));
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == Step::Precommit)
    ));
    assert_eq!(e.round(), 0);
    let out = e.handle(t(0, Step::Precommit)).outputs;
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
    // Round 1 waits longer.
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, after_ms: 1250 } if timeout.round == 1)
    ));
    // Stale timers do nothing.
    assert!(matches!(
        e.handle(t(0, Step::Propose)).verdict,
        Verdict::Ignored(_)
    ));
}

#[test]
fn nil_prepare_quorum_precommits_nil_at_once() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    let o = others(&net, me);
    let out = net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, None);
    assert_eq!(own_votes(&out), vec![(VoteKind::Precommit, 0, None)]);
}

#[test]
fn nil_prepare_quorum_precommits_nil_at_once_from_the_propose_step() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    // No proposal and no timeout yet: 2/3 nil prepares alone make us prepare and
    // precommit nil.
    let out = net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, None);
    assert!(own_votes(&out).is_empty());
    let out = net.votes(&mut e, &o[2..3], VoteKind::Prepare, 1, 0, None);
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 0, None), (VoteKind::Precommit, 0, None)]
    );
    assert_eq!(e.step(), Step::Precommit);
    // A proposal arriving late changes nothing in this round.
    let out = propose_valid(&net, &mut e, 1, 0, None, &Blk(4));
    assert!(own_votes(&out).is_empty());
}

#[test]
fn nil_precommit_quorum_starts_the_next_round_at_once() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    let out = net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, None);
    assert_eq!(own_votes(&out), vec![(VoteKind::Precommit, 0, None)]);
    assert_eq!(e.round(), 0);
    // Ours and one more nil precommit: half the weight, not yet a quorum.
    let out = net.votes(&mut e, &o[..1], VoteKind::Precommit, 1, 0, None);
    assert_eq!(e.round(), 0);
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::ScheduleTimeout { .. })));
    // The third nil precommit: round 1 starts without a precommit timer.
    let out = net.votes(&mut e, &o[1..2], VoteKind::Precommit, 1, 0, None);
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
    assert!(!out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == Step::Precommit)
    ));
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, after_ms: 1250 } if timeout.round == 1 && timeout.step == Step::Propose)
    ));
    // The precommit timer of round 0, had it been set, would now be stale.
    let stale = e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    assert!(matches!(stale.verdict, Verdict::Ignored(_)));
}

#[test]
fn nil_precommit_quorum_moves_on_from_any_step_and_keeps_the_lock() {
    let net = Net::new(&[1, 1, 1, 1]);
    let a = Blk(3);
    let (mut e, me) = locked_on(&net, &a);
    let o = others(&net, me);
    // Locked on `a` in round 0; round 1 sees 2/3 nil precommits before its proposal.
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
    let out = net.votes(&mut e, &o, VoteKind::Precommit, 1, 1, None);
    // We never voted in round 1 and need not: round 2 starts.
    assert!(own_votes(&out).is_empty());
    assert_eq!((e.round(), e.step()), (2, Step::Propose));
    assert_eq!(e.signer().unwrap().state().locked, Some((0, hash_of(&a))));
    // The lock still refuses a fresh proposal for another block.
    let out = propose_valid(&net, &mut e, 1, 2, None, &Blk(9));
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 2, None)]);
}

#[test]
fn invalid_block_gets_a_nil_prepare() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, _) = started(&net);
    let b = Blk(5);
    e.handle(net.proposal(1, 0, None, &b));
    let out = e
        .handle(Input::BlockValidated {
            height: 1,
            block_hash: hash_of(&b),
            valid: false,
        })
        .outputs;
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
}

/// Locks the engine on `a` in round 0, then moves it to round 1 by timeouts.
fn locked_on(net: &Net, a: &Blk) -> (Engine<Blk>, usize) {
    let (mut e, me) = started(net);
    propose_valid(net, &mut e, 1, 0, None, a);
    let o = others(net, me);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(a));
    assert_eq!(e.signer().unwrap().state().locked, Some((0, hash_of(a))));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    assert_eq!(e.round(), 1);
    (e, me)
}

#[test]
fn a_lock_refuses_a_fresh_proposal_for_another_block() {
    let net = Net::new(&[1, 1, 1, 1]);
    let a = Blk(1);
    let (mut e, _) = locked_on(&net, &a);
    let out = propose_valid(&net, &mut e, 1, 1, None, &Blk(2));
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 1, None)]);
    // ...but prepares its locked block when re-proposed.
    let (mut e, _) = locked_on(&net, &a);
    let out = propose_valid(&net, &mut e, 1, 1, None, &a);
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 1, Some(hash_of(&a)))]
    );
}

#[test]
fn a_newer_round_prepare_quorum_unlocks() {
    let net = Net::new(&[1, 1, 1, 1]);
    let a = Blk(1);
    let b = Blk(2);
    let (mut e, me) = locked_on(&net, &a);
    let o = others(&net, me);
    // Round 1: locked on a, we prepare nil for the fresh b...
    let out = propose_valid(&net, &mut e, 1, 1, None, &b);
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 1, None)]);
    // ...but a prepare quorum for b in the newer round moves the lock to b (line 36).
    let out = net.votes(&mut e, &o, VoteKind::Prepare, 1, 1, Some(&b));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Precommit, 1, Some(hash_of(&b)))]
    );
    assert_eq!(e.signer().unwrap().state().locked, Some((1, hash_of(&b))));
}

#[test]
fn re_proposal_with_a_newer_pol_is_prepared_despite_the_lock() {
    let net = Net::new(&[1, 1, 1, 1]);
    let a = Blk(1);
    let b = Blk(2);
    let (mut e, me) = locked_on(&net, &a);
    let o = others(&net, me);
    // Round 1: we time out on the proposal (never got it) and prepare nil; others form a
    // prepare quorum for b in round 1 that we see only later.
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 1,
        step: Step::Propose,
    }));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 1, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 1,
        step: Step::Precommit,
    }));
    assert_eq!(e.round(), 2);
    // Round 2 re-proposes b with valid_round 1: without the POL we wait.
    let out = propose_valid(&net, &mut e, 1, 2, Some(1), &b);
    assert!(own_votes(&out).is_empty());
    assert_eq!(e.step(), Step::Propose);
    // The POL arrives: locked round 0 ≤ 1, so we prepare b.
    let out = net.votes(&mut e, &o, VoteKind::Prepare, 1, 1, Some(&b));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 2, Some(hash_of(&b)))]
    );
}

#[test]
fn an_older_pol_does_not_unlock() {
    let net = Net::new(&[1, 1, 1, 1]);
    let a = Blk(1);
    let b = Blk(2);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    // Round 0: a prepare quorum for b exists, we saw it late (after precommitting nil).
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    // Round 1: locked on a.
    propose_valid(&net, &mut e, 1, 1, None, &a);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 1, Some(&a));
    assert_eq!(e.signer().unwrap().state().locked, Some((1, hash_of(&a))));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 1, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 1,
        step: Step::Precommit,
    }));
    // Round 2: b re-proposed with valid_round 0 < locked round 1 → nil.
    net.votes(&mut e, &o, VoteKind::Prepare, 1, 0, Some(&b));
    let out = propose_valid(&net, &mut e, 1, 2, Some(0), &b);
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 2, None)]);
}

#[test]
fn precommit_quorum_of_an_earlier_round_decides() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 2, None);
    assert_eq!(e.round(), 2);
    let out = net.votes(&mut e, &o, VoteKind::Precommit, 1, 0, Some(&Blk(4)));
    let (round, hash, _, cert) = decision(&out).unwrap();
    assert_eq!((round, hash), (0, hash_of(&Blk(4))));
    assert!(cert.verify(CHAIN, &net.set).is_ok());
}

#[test]
fn more_than_a_third_in_a_later_round_skips_to_it() {
    let net = Net::new(&[1, 1, 1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    // Two of six is exactly a third: no skip.
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 5, None);
    assert_eq!(e.round(), 0);
    // A third message from round 7 (within the window): the highest round with more than
    // a third at or above it is 5.
    net.votes(&mut e, &o[2..3], VoteKind::Precommit, 1, 7, None);
    assert_eq!((e.round(), e.step()), (5, Step::Propose));
    // Rounds too far ahead are not stored but still count toward the skip.
    let far = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 100, None));
    assert!(matches!(far.verdict, Verdict::Ignored(_)));
    let far = e.handle(net.vote(o[1], VoteKind::Prepare, 1, 100, None));
    assert!(matches!(far.verdict, Verdict::Ignored(_)));
    assert_eq!(e.round(), 7);
    e.handle(net.vote(o[2], VoteKind::Prepare, 1, 100, None));
    assert_eq!(e.round(), 100);
}

#[test]
fn equivocation_is_evidence_and_weight_counts_once() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    let (a, b) = (Blk(1), Blk(2));
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, Some(&a));
    let second = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, Some(&b)));
    assert_eq!(second.verdict, Verdict::Accepted);
    assert!(
        matches!(&second.outputs[..], [Output::Evidence(Evidence::DoubleVote { first, second })]
        if first.block_hash == Some(hash_of(&a)) && second.block_hash == Some(hash_of(&b)))
    );
    // Our nil prepare and the equivocator's two: 2 of 4 weight in total, so the
    // "2/3 of any prepares" timer does not start.
    assert!(!second
        .outputs
        .iter()
        .any(|o| matches!(o, Output::ScheduleTimeout { .. })));
    // A third version: no new evidence, not counted.
    let third = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, None));
    assert_eq!(evidence(&third.outputs), 0);
    let fourth = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, Some(&Blk(3))));
    assert!(matches!(fourth.verdict, Verdict::Ignored(_)));
    let out = net.votes(&mut e, &o[1..2], VoteKind::Prepare, 1, 0, Some(&a));
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == Step::Prepare)
    ));
}

#[test]
fn an_equivocators_vote_counts_for_each_value_it_names() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(None);
    e.start_height(1, net.set.clone());
    let (a, b) = (Blk(1), Blk(2));
    net.votes(&mut e, &[0], VoteKind::Precommit, 1, 0, Some(&a));
    let out = net.votes(&mut e, &[0, 1], VoteKind::Precommit, 1, 0, Some(&b));
    assert_eq!(evidence(&out), 1);
    assert!(decision(&out).is_none());
    // Honest 2 and 3 with the equivocator's b: a quorum any validator that saw the same
    // messages also sees, whichever version reached it first.
    let out = net.votes(&mut e, &[2], VoteKind::Precommit, 1, 0, Some(&b));
    let (_, hash, _, cert) = decision(&out).unwrap();
    assert_eq!(hash, hash_of(&b));
    assert_eq!(cert.verify(CHAIN, &net.set), Ok(3));
}

#[test]
fn double_proposal_is_evidence_and_the_first_counts() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, _) = started(&net);
    let out = propose_valid(&net, &mut e, 1, 0, None, &Blk(1));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 0, Some(hash_of(&Blk(1))))]
    );
    let second = e.handle(net.proposal(1, 0, None, &Blk(2)));
    assert_eq!(evidence(&second.outputs), 1);
    assert!(!second
        .outputs
        .iter()
        .any(|o| matches!(o, Output::ValidateBlock { .. })));
    let third = e.handle(net.proposal(1, 0, None, &Blk(3)));
    assert_eq!(evidence(&third.outputs), 0);
}

#[test]
fn bad_messages_are_rejected_or_ignored_with_a_reason() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    let a = Blk(1);
    let rejected = |v: &Verdict| matches!(v, Verdict::Rejected(_));
    let ignored = |v: &Verdict| matches!(v, Verdict::Ignored(_));
    let outsider = Keypair::from_seed([200; 32]);
    let v = Vote::sign(CHAIN, &outsider, VoteKind::Prepare, 1, 0, None);
    assert!(rejected(&e.handle(Input::Vote(v)).verdict));
    let v = Vote::sign(
        "other-chain",
        &net.keys[o[0]],
        VoteKind::Prepare,
        1,
        0,
        None,
    );
    assert!(rejected(&e.handle(Input::Vote(v)).verdict));
    let mut v = Vote::sign(CHAIN, &net.keys[o[0]], VoteKind::Prepare, 1, 0, None);
    v.signature = Signature([7; 64]);
    assert!(rejected(&e.handle(Input::Vote(v)).verdict));
    assert_eq!(
        e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, None))
            .verdict,
        Verdict::Accepted
    );
    assert!(ignored(
        &e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, None))
            .verdict
    ));
    assert!(ignored(
        &e.handle(net.vote(o[0], VoteKind::Prepare, 0, 0, None))
            .verdict
    ));
    assert!(ignored(
        &e.handle(net.vote(o[0], VoteKind::Prepare, 9, 0, None))
            .verdict
    ));
    // Proposals: wrong proposer, hash mismatch, valid_round not below round.
    let wrong = (0..4)
        .find(|&i| net.keys[i].public() != net.proposer(1, 0).public())
        .unwrap();
    let p = Proposal::sign(CHAIN, &net.keys[wrong], 1, 0, None, hash_of(&a));
    assert!(rejected(
        &e.handle(Input::Proposal {
            proposal: p,
            block: a.clone(),
            block_hash: hash_of(&a)
        })
        .verdict
    ));
    let p = Proposal::sign(CHAIN, net.proposer(1, 0), 1, 0, None, hash_of(&a));
    assert!(rejected(
        &e.handle(Input::Proposal {
            proposal: p,
            block: a.clone(),
            block_hash: hash_of(&Blk(2))
        })
        .verdict
    ));
    let p = Proposal::sign(CHAIN, net.proposer(1, 1), 1, 1, Some(1), hash_of(&a));
    assert!(rejected(
        &e.handle(Input::Proposal {
            proposal: p,
            block: a.clone(),
            block_hash: hash_of(&a)
        })
        .verdict
    ));
    // Nothing of it counted.
    assert_eq!((e.round(), e.step()), (0, Step::Propose));
    assert!(ignored(
        &e.handle(Input::BlockValidated {
            height: 1,
            block_hash: hash_of(&a),
            valid: true
        })
        .verdict
    ));
}

#[test]
fn future_heights_are_buffered_within_bounds_and_replayed() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(Some(0));
    assert!(matches!(
        e.handle(net.vote(1, VoteKind::Precommit, 2, 0, None))
            .verdict,
        Verdict::Ignored(_)
    ));
    e.start_height(1, net.set.clone());
    let b = Blk(22);
    for i in 1..4 {
        assert_eq!(
            e.handle(net.vote(i, VoteKind::Precommit, 2, 0, Some(&b)))
                .verdict,
            Verdict::Accepted
        );
    }
    assert!(matches!(
        e.handle(net.vote(1, VoteKind::Precommit, 2, 0, Some(&b)))
            .verdict,
        Verdict::Ignored(_)
    ));
    assert!(matches!(
        e.handle(net.vote(1, VoteKind::Precommit, 4, 0, None))
            .verdict,
        Verdict::Ignored(_)
    ));
    let mut forged = Vote::sign(CHAIN, &net.keys[2], VoteKind::Prepare, 3, 0, None);
    forged.signature = Signature([1; 64]);
    assert!(matches!(
        e.handle(Input::Vote(forged)).verdict,
        Verdict::Rejected(_)
    ));
    // One key's share of a future height is bounded.
    let mut accepted = 0;
    for r in 0..40 {
        if e.handle(net.vote(3, VoteKind::Prepare, 3, r, None)).verdict == Verdict::Accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, MAX_BUFFERED_PER_KEY);
    // Replayed at start: the buffered precommits decide height 2 at once.
    let out = e.start_height(2, net.set.clone());
    let (_, hash, block, cert) = decision(&out).unwrap();
    assert_eq!((hash, block), (hash_of(&b), None));
    assert!(cert.verify_for(CHAIN, &net.set, 2, &hash).is_ok());
}

#[test]
fn block_cache_is_bounded() {
    let net = Net::new(&[1, 1, 1, 1]);
    let me = net.non_proposer(1, 1);
    let config = Config {
        max_cached_blocks: 2,
        ..Config::default()
    };
    let mut e: Engine<Blk> = Engine::new(
        CHAIN.into(),
        config,
        Some(Signer::new(net.keys[me].clone(), None)),
    );
    e.start_height(1, net.set.clone());
    let mut asked = 0;
    for r in 0..6 {
        let out = e
            .handle(net.proposal(1, r, None, &Blk(100 + u64::from(r))))
            .outputs;
        asked += out
            .iter()
            .filter(|o| matches!(o, Output::ValidateBlock { .. }))
            .count();
    }
    // Every proposal is accepted and validated; older blocks are evicted to make room.
    assert_eq!(asked, 6);
}

#[test]
fn restart_from_persisted_state_keeps_the_lock_and_never_double_signs() {
    let net = Net::new(&[1, 1, 1, 1]);
    let me = net.non_proposer(1, 3);
    let mut e = net.engine(Some(me));
    let mut persisted = None;
    let mut record = |out: &[Output<Blk>]| {
        for o in out {
            if let Output::PersistSigner(s) = o {
                persisted = Some(s.clone());
            }
        }
    };
    record(&e.start_height(1, net.set.clone()));
    let a = Blk(1);
    record(&propose_valid(&net, &mut e, 1, 0, None, &a));
    let o = others(&net, me);
    record(&net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a)));
    let state = persisted.clone().unwrap();
    assert_eq!(
        (state.height, state.round, state.step),
        (1, 0, STEP_PRECOMMIT)
    );
    assert_eq!(state.locked, Some((0, hash_of(&a))));
    drop(e);

    let signer = Signer::new(net.keys[me].clone(), Some(state));
    let mut e: Engine<Blk> = Engine::new(CHAIN.into(), Config::default(), Some(signer));
    let out = e.start_height(1, net.set.clone());
    // Resumes in the stored round and step and re-sends the same precommit.
    assert_eq!((e.round(), e.step()), (0, Step::Precommit));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Precommit, 0, Some(hash_of(&a)))]
    );
    // The prepare timeout of round 0 fires again after the restart: nothing is signed.
    let out = e
        .handle(Input::Timeout(Timeout {
            height: 1,
            round: 0,
            step: Step::Prepare,
        }))
        .outputs;
    assert!(own_votes(&out).is_empty());
    // Round 1 proposes another block: the lock survived, so the prepare is nil.
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    let out = propose_valid(&net, &mut e, 1, 1, None, &Blk(2));
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 1, None)]);
}

fn arb_input() -> impl Strategy<Value = Input<Blk>> {
    let hash = prop::option::of(any::<[u8; 32]>().prop_map(Hash256));
    let vote = (
        any::<bool>(),
        0u64..5,
        any::<u32>(),
        hash.clone(),
        0u8..6,
        any::<bool>(),
    )
        .prop_map(|(pre, h, r, bh, who, good)| {
            let kind = if pre {
                VoteKind::Precommit
            } else {
                VoteKind::Prepare
            };
            let key = Keypair::from_seed([who; 32]);
            let mut v = Vote::sign(CHAIN, &key, kind, h, r % 40, bh);
            if !good {
                v.round = r;
            }
            Input::Vote(v)
        });
    let proposal = (
        0u64..5,
        0u32..30,
        prop::option::of(0u32..30),
        any::<u64>(),
        0u8..6,
        any::<bool>(),
    )
        .prop_map(|(h, r, vr, b, who, good)| {
            let key = Keypair::from_seed([who; 32]);
            let blk = Blk(b);
            let p = Proposal::sign(CHAIN, &key, h, r, vr, hash_of(&blk));
            let block_hash = if good { hash_of(&blk) } else { Hash256::ZERO };
            Input::Proposal {
                proposal: p,
                block: blk,
                block_hash,
            }
        });
    let timeout = (0u64..5, 0u32..30, 0u8..3).prop_map(|(height, round, s)| {
        let step = [Step::Propose, Step::Prepare, Step::Precommit][usize::from(s)];
        Input::Timeout(Timeout {
            height,
            round,
            step,
        })
    });
    let validated = (0u64..5, any::<u64>(), any::<bool>()).prop_map(|(height, b, valid)| {
        Input::BlockValidated {
            height,
            block_hash: hash_of(&Blk(b)),
            valid,
        }
    });
    let built =
        (0u64..5, 0u32..30, any::<u64>()).prop_map(|(height, round, b)| Input::BlockBuilt {
            height,
            round,
            block: Blk(b),
            block_hash: hash_of(&Blk(b)),
        });
    prop_oneof![vote, proposal, timeout, validated, built]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn garbage_never_panics(inputs in prop::collection::vec(arb_input(), 1..60), me in 0usize..4) {
        let net = Net::new(&[1, 2, 3, 4]);
        let mut e = net.engine(Some(me));
        e.start_height(1, net.set.clone());
        for input in inputs {
            let handled = e.handle(input);
            for o in handled.outputs {
                if let Output::Decide { height, block_hash, certificate, .. } = o {
                    prop_assert!(certificate.verify_for(CHAIN, &net.set, height, &block_hash).is_ok());
                    e.start_height(height + 1, net.set.clone());
                }
            }
        }
    }
}

#[test]
fn the_round_timer_repeats_and_resends_our_votes() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, _) = started(&net);
    let t = Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    });
    let out = e.handle(t.clone()).outputs;
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == Step::Propose)
    ));
    // Still stuck when it fires again: the same vote again, nothing newly signed.
    let out = e.handle(t).outputs;
    assert_eq!(own_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
    assert!(!out.iter().any(|o| matches!(o, Output::PersistSigner(_))));
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == Step::Propose)
    ));
}

#[test]
fn an_unlocked_validator_prepares_a_re_proposal_without_its_pol() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    let b = Blk(8);
    let out = propose_valid(&net, &mut e, 1, 1, Some(0), &b);
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 1, Some(hash_of(&b)))]
    );
}

#[test]
fn a_late_pol_of_an_earlier_round_becomes_the_valid_value() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    let a = Blk(4);
    // Round 0's proposal arrives, but its prepares only after we moved on.
    e.handle(net.proposal(1, 0, None, &a));
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, None);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Precommit,
    }));
    assert_eq!(e.round(), 1);
    e.handle(Input::BlockValidated {
        height: 1,
        block_hash: hash_of(&a),
        valid: true,
    });
    let out = net.votes(&mut e, &o, VoteKind::Prepare, 1, 0, Some(&a));
    assert_eq!(e.signer().unwrap().state().valid, Some((0, hash_of(&a))));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::PersistSigner(s) if s.valid == Some((0, hash_of(&a))))));
    // The lock is untouched: only a precommit locks.
    assert_eq!(e.signer().unwrap().state().locked, None);
}

#[test]
fn precommits_count_toward_two_thirds_of_any_prepares() {
    let net = Net::new(&[1, 1, 1, 1]);
    let (mut e, me) = started(&net);
    let o = others(&net, me);
    e.handle(Input::Timeout(Timeout {
        height: 1,
        round: 0,
        step: Step::Propose,
    }));
    net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, None);
    // The third validator's prepare was lost, its precommit was not.
    let out = net.votes(&mut e, &o[1..2], VoteKind::Precommit, 1, 0, None);
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, .. } if timeout.step == Step::Prepare)
    ));
}

#[test]
fn a_re_proposal_carries_its_proof_of_lock() {
    let net = Net::new(&[1, 1, 1, 1]);
    let p0 = net.proposer(1, 0).public();
    let me = (0..4)
        .find(|&i| {
            net.keys[i].public() == net.proposer(1, 1).public() && net.keys[i].public() != p0
        })
        .unwrap();
    let mut e = net.engine(Some(me));
    e.start_height(1, net.set.clone());
    let a = Blk(6);
    propose_valid(&net, &mut e, 1, 0, None, &a);
    let o = others(&net, me);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a));
    assert_eq!(e.signer().unwrap().state().valid, Some((0, hash_of(&a))));
    net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, None);
    let out = e
        .handle(Input::Timeout(Timeout {
            height: 1,
            round: 0,
            step: Step::Precommit,
        }))
        .outputs;
    assert!(out.iter().any(|o| matches!(o, Output::BroadcastProposal { proposal, .. }
        if proposal.round == 1 && proposal.valid_round == Some(0) && proposal.block_hash == hash_of(&a))));
    let pol = out
        .iter()
        .filter(|o| matches!(o, Output::BroadcastVote(v) if v.round == 0 && v.kind == VoteKind::Prepare && v.block_hash == Some(hash_of(&a))))
        .count();
    assert_eq!(pol, 3);
}

/// The set of `net`'s validators `who`.
fn subset(net: &Net, who: &[usize]) -> ValidatorSet {
    let members = who
        .iter()
        .map(|&i| net.set.get(&net.keys[i].public()).unwrap().clone())
        .collect();
    ValidatorSet::new(members).unwrap()
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
        .handle(Input::Proposal {
            proposal: Proposal::sign(CHAIN, proposer, h, 0, None, hash_of(&b)),
            block: b.clone(),
            block_hash: hash_of(&b),
        })
        .outputs;
    out.extend(
        e.handle(Input::BlockValidated {
            height: h,
            block_hash: hash_of(&b),
            valid: true,
        })
        .outputs,
    );
    for kind in [VoteKind::Prepare, VoteKind::Precommit] {
        out.extend(net.votes(e, who, kind, h, 0, Some(&b)));
    }
    out
}

#[test]
fn a_validator_leaving_the_set_stops_signing_and_still_follows() {
    let net = Net::new(&[1, 1, 1, 1, 1]);
    let (with_me, without_me) = (subset(&net, &[0, 1, 2, 3]), subset(&net, &[1, 2, 3, 4]));
    let mut e = net.engine(Some(0));
    e.start_height(1, with_me.clone());
    let out = run_height(&net, &mut e, &with_me, 1, &[1, 2]);
    assert!(own_votes(&out).contains(&(VoteKind::Prepare, 0, Some(hash_of(&Blk(100))))));
    assert!(decision(&out).is_some());
    // Height 2 without us: nothing signed, not on any timer either, yet it decides.
    let mut out = e.start_height(2, without_me.clone());
    for step in [Step::Propose, Step::Prepare, Step::Precommit] {
        out.extend(
            e.handle(Input::Timeout(Timeout {
                height: 2,
                round: 0,
                step,
            }))
            .outputs,
        );
    }
    assert_eq!(e.round(), 1);
    assert!(own_votes(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::PersistSigner(_) | Output::BuildBlock { .. } | Output::BroadcastProposal { .. }
    )));
    // Our own key's votes no longer count at height 2.
    let ours = e.handle(net.vote(0, VoteKind::Prepare, 2, 1, None));
    assert!(matches!(ours.verdict, Verdict::Rejected(_)));
    let b = Blk(7);
    let out = net.votes(&mut e, &[1, 2, 4], VoteKind::Precommit, 2, 0, Some(&b));
    let (_, _, _, cert) = decision(&out).unwrap();
    assert!(cert.verify_for(CHAIN, &without_me, 2, &hash_of(&b)).is_ok());
    assert_eq!(e.signer().unwrap().state().height, 1);
}

#[test]
fn a_validator_joining_the_set_starts_proposing_and_voting_by_itself() {
    let net = Net::new(&[1, 1, 1, 1, 1]);
    let (before, after) = (subset(&net, &[0, 1, 2, 3]), subset(&net, &[1, 2, 3, 4]));
    let me = 4;
    let mut e = net.engine(Some(me));
    let mut out = e.start_height(1, before.clone());
    out.extend(run_height(&net, &mut e, &before, 1, &[0, 1, 2]));
    assert!(own_votes(&out).is_empty());
    assert!(decision(&out).is_some());
    // From height 2 we are a member: the first height we propose asks for a block...
    let ours = |h: u64| after.proposer(h, 0).public_key == net.keys[me].public();
    let h = (2..100).find(|&h| ours(h)).unwrap();
    let out = e.start_height(h, after.clone());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::BuildBlock { height, round: 0 } if *height == h)));
    let built = Blk(42);
    let out = e
        .handle(Input::BlockBuilt {
            height: h,
            round: 0,
            block: built.clone(),
            block_hash: hash_of(&built),
        })
        .outputs;
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::BroadcastProposal { proposal, .. } if proposal.height == h)));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 0, Some(hash_of(&built)))]
    );
    // ...and a height someone else proposes gets our prepare and precommit.
    let h = (h + 1..200).find(|&h| !ours(h)).unwrap();
    e.start_height(h, after.clone());
    let out = run_height(&net, &mut e, &after, h, &[1, 2]);
    let b = Some(hash_of(&Blk(h * 100)));
    assert_eq!(
        own_votes(&out),
        vec![(VoteKind::Prepare, 0, b), (VoteKind::Precommit, 0, b)]
    );
}

#[test]
fn old_rounds_are_dropped_within_a_bound_but_what_the_protocol_needs_stays() {
    let net = Net::new(&[1, 1, 1, 1]);
    let a = Blk(1);
    // Locked and valid on `a` from round 0; then forty rounds that all end nil.
    let (mut e, me) = locked_on(&net, &a);
    let o = others(&net, me);
    for r in 1..41 {
        assert_eq!(e.round(), r);
        net.votes(&mut e, &o, VoteKind::Prepare, 1, r, None);
        net.votes(&mut e, &o, VoteKind::Precommit, 1, r, None);
    }
    assert_eq!(e.round(), 41);
    let floor = 41 - MAX_PAST_ROUNDS;
    let kept = e.rounds_in_memory();
    assert!(kept.len() <= MAX_PAST_ROUNDS as usize + 2, "{kept:?}");
    assert!(kept.iter().all(|&r| r == 0 || r >= floor), "{kept:?}");
    // The locked and valid round stays, and so do its prepares.
    assert!(kept.contains(&0), "{kept:?}");
    let late = e.handle(net.vote(o[2], VoteKind::Prepare, 1, 0, Some(&a)));
    assert_eq!(late.verdict, Verdict::Accepted);
    // A dropped round takes no votes.
    let old = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 5, None));
    assert_eq!(old.verdict, Verdict::Ignored("round too old".into()));
    // The round timer still re-sends the proof of lock of round 0 and the precommits of
    // round 40 that moved us on.
    let t = Input::Timeout(Timeout {
        height: 1,
        round: 41,
        step: Step::Propose,
    });
    e.handle(t.clone());
    let out = e.handle(t).outputs;
    let sent: Vec<(VoteKind, u32, Option<Hash256>)> = out
        .iter()
        .filter_map(|o| match o {
            Output::BroadcastVote(v) => Some((v.kind, v.round, v.block_hash)),
            _ => None,
        })
        .collect();
    let pol = sent
        .iter()
        .filter(|v| **v == (VoteKind::Prepare, 0, Some(hash_of(&a))))
        .count();
    assert_eq!(pol, 4, "{sent:?}");
    let precommits = sent
        .iter()
        .filter(|v| **v == (VoteKind::Precommit, 40, None))
        .count();
    assert_eq!(precommits, 4, "{sent:?}");
    // A proposal citing a dropped round as its proof of lock pins that round again:
    // the proof's prepares are taken.
    let b = Blk(2);
    let out = propose_valid(&net, &mut e, 1, 42, Some(20), &b);
    assert!(own_votes(&out).is_empty());
    net.votes(&mut e, &o, VoteKind::Prepare, 1, 20, Some(&b));
    assert!(e.rounds_in_memory().contains(&20));
}
