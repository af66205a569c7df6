//! Misbehaviour: equivocations become evidence and count as the rules require, and bad
//! messages are refused with a reason.

use super::*;
use timecoin_types::Signature;

#[test]
fn equivocation_is_evidence_and_weight_counts_once() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let (a, b) = (Blk(1), Blk(2));
    e.handle(timeout(1, 0, Step::Propose));
    net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, Some(&a));
    let second = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, Some(&b)));
    assert_eq!(second.verdict, Verdict::Accepted);
    assert!(
        matches!(&second.outputs[..], [Output::Evidence(Evidence::DoubleVote { first, second })]
        if first.block_hash == Some(hash_of(&a)) && second.block_hash == Some(hash_of(&b)))
    );
    // Our nil prepare and the equivocator's two: 2 of 4 weight in total, so the
    // "2/3 of any prepares" timer does not start.
    assert!(!schedules_any(&second.outputs));
    // A third version: no new evidence, not counted.
    let third = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, None));
    assert_eq!(evidence(&third.outputs), 0);
    let fourth = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 0, Some(&Blk(3))));
    assert!(ignored(&fourth.verdict));
    let out = net.votes(&mut e, &o[1..2], VoteKind::Prepare, 1, 0, Some(&a));
    assert!(schedules(&out, Step::Prepare));
}

#[test]
fn an_equivocators_vote_counts_for_each_value_it_names() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(None);
    e.start_height(1, net.set.clone(), net.set.clone());
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
    let (net, mut e, _) = started(&[1, 1, 1, 1]);
    let out = propose_valid(&net, &mut e, 1, 0, None, &Blk(1));
    assert_eq!(
        sent_votes(&out),
        vec![vote_for(VoteKind::Prepare, 0, &Blk(1))]
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
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let a = Blk(1);
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
    let mut verdict_of = |h, r| {
        e.handle(net.vote(o[0], VoteKind::Prepare, h, r, None))
            .verdict
    };
    assert_eq!(verdict_of(1, 0), Verdict::Accepted);
    assert!(ignored(&verdict_of(1, 0)));
    assert!(ignored(&verdict_of(0, 0)));
    assert!(ignored(&verdict_of(9, 0)));
    // Proposals: wrong proposer, hash mismatch, valid_round not below round.
    let wrong = (0..4)
        .find(|&i| net.keys[i].public() != net.proposer(1, 0).public())
        .unwrap();
    let p = proposal_by(&net.keys[wrong], 1, 0, None, &a, hash_of(&a));
    assert!(rejected(&e.handle(p).verdict));
    let p = proposal_by(net.proposer(1, 0), 1, 0, None, &a, hash_of(&Blk(2)));
    assert!(rejected(&e.handle(p).verdict));
    let p = proposal_by(net.proposer(1, 1), 1, 1, Some(1), &a, hash_of(&a));
    assert!(rejected(&e.handle(p).verdict));
    // Nothing of it counted.
    assert_eq!((e.round(), e.step()), (0, Step::Propose));
    assert!(ignored(&e.handle(validated(1, &a, true)).verdict));
}
