//! Locks and proofs of lock (POL): what a lock refuses, which prepare quorums unlock it,
//! and how valid values and their proofs travel between rounds.

use super::*;

#[test]
fn a_lock_refuses_a_fresh_proposal_for_another_block() {
    let a = Blk(1);
    let (net, mut e, _) = locked_on(&a);
    let out = propose_valid(&net, &mut e, 1, 1, None, &Blk(2));
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 1, None)]);
    // ...but prepares its locked block when re-proposed.
    let (net, mut e, _) = locked_on(&a);
    let out = propose_valid(&net, &mut e, 1, 1, None, &a);
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 1, &a)]);
}

#[test]
fn a_newer_round_prepare_quorum_unlocks() {
    let a = Blk(1);
    let b = Blk(2);
    let (net, mut e, o) = locked_on(&a);
    // Round 1: locked on a, we prepare nil for the fresh b...
    let out = propose_valid(&net, &mut e, 1, 1, None, &b);
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 1, None)]);
    // ...but a prepare quorum for b in the newer round moves the lock to b (line 36).
    let out = net.votes(&mut e, &o, VoteKind::Prepare, 1, 1, Some(&b));
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Precommit, 1, &b)]);
    assert_eq!(e.signer().unwrap().state().locked, Some((1, hash_of(&b))));
}

#[test]
fn re_proposal_with_a_newer_pol_is_prepared_despite_the_lock() {
    let a = Blk(1);
    let b = Blk(2);
    let (net, mut e, o) = locked_on(&a);
    // Round 1: we time out on the proposal (never got it) and prepare nil; others form a
    // prepare quorum for b in round 1 that we see only later.
    time_out_round(&net, &mut e, &o, 1);
    assert_eq!(e.round(), 2);
    // Round 2 re-proposes b with valid_round 1: without the POL we wait.
    let out = propose_valid(&net, &mut e, 1, 2, Some(1), &b);
    assert!(sent_votes(&out).is_empty());
    assert_eq!(e.step(), Step::Propose);
    // The POL arrives: locked round 0 ≤ 1, so we prepare b.
    let out = net.votes(&mut e, &o, VoteKind::Prepare, 1, 1, Some(&b));
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 2, &b)]);
}

#[test]
fn an_older_pol_does_not_unlock() {
    let a = Blk(1);
    let b = Blk(2);
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    // Round 0: a prepare quorum for b exists, we saw it late (after precommitting nil).
    time_out_round(&net, &mut e, &o, 0);
    // Round 1: locked on a.
    propose_valid(&net, &mut e, 1, 1, None, &a);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 1, Some(&a));
    assert_eq!(e.signer().unwrap().state().locked, Some((1, hash_of(&a))));
    leave_round(&net, &mut e, &o[..2], 1);
    // Round 2: b re-proposed with valid_round 0 < locked round 1 → nil.
    net.votes(&mut e, &o, VoteKind::Prepare, 1, 0, Some(&b));
    let out = propose_valid(&net, &mut e, 1, 2, Some(0), &b);
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 2, None)]);
}

#[test]
fn an_unlocked_validator_prepares_a_re_proposal_without_its_pol() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    time_out_round(&net, &mut e, &o, 0);
    let b = Blk(8);
    let out = propose_valid(&net, &mut e, 1, 1, Some(0), &b);
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 1, &b)]);
}

#[test]
fn a_late_pol_of_an_earlier_round_becomes_the_valid_value() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let a = Blk(4);
    // Round 0's proposal arrives, but its prepares only after we moved on.
    e.handle(net.proposal(1, 0, None, &a));
    time_out_round(&net, &mut e, &o, 0);
    assert_eq!(e.round(), 1);
    e.handle(validated(1, &a, true));
    let out = net.votes(&mut e, &o, VoteKind::Prepare, 1, 0, Some(&a));
    assert_eq!(e.signer().unwrap().state().valid, Some((0, hash_of(&a))));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::PersistSigner(s) if s.valid == Some((0, hash_of(&a))))));
    // The lock is untouched: only a precommit locks.
    assert_eq!(e.signer().unwrap().state().locked, None);
}

#[test]
fn a_re_proposal_carries_its_proof_of_lock() {
    let net = Net::new(&[1, 1, 1, 1]);
    let me = net.proposer_index(1, 1);
    assert_ne!(net.keys[me].public(), net.proposer(1, 0).public());
    let mut e = net.engine(Some(me));
    e.start_height(1, net.set.clone(), net.set.clone());
    let a = Blk(6);
    propose_valid(&net, &mut e, 1, 0, None, &a);
    let o = others(&net, me);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a));
    assert_eq!(e.signer().unwrap().state().valid, Some((0, hash_of(&a))));
    let out = leave_round(&net, &mut e, &o[..2], 0);
    assert!(out.iter().any(|o| matches!(o, Output::BroadcastProposal { proposal, .. }
        if proposal.round == 1 && proposal.valid_round == Some(0) && proposal.block_hash == hash_of(&a))));
    let pol = vote_for(VoteKind::Prepare, 0, &a);
    assert_eq!(times_sent(&out, pol), 3);
}
