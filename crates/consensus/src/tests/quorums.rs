//! Quorums for a block: preparing, locking, deciding, round skips and the timers that
//! 2/3 of any votes start.

use super::*;

#[test]
fn happy_path_decides_with_a_verifying_certificate() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let a = Blk(7);
    let out = propose_valid(&net, &mut e, 1, 0, None, &a);
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 0, &a)]);
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
    let out = net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a));
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Precommit, 0, &a)]);
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
    assert!(ignored(&late.verdict));
}

#[test]
fn quorum_is_exactly_two_thirds_of_the_weight() {
    // Total 6: 4 is exactly two thirds, 3 is not.
    let net = Net::new(&[2, 1, 1, 2]);
    let weighing = |w| -> Vec<usize> {
        (0..4)
            .filter(|&i| net.set.weight_of(&net.keys[i].public()) == w)
            .collect()
    };
    let (heavy, light) = (weighing(2), weighing(1));
    assert_eq!((heavy.len(), light.len()), (2, 2));
    let a = Blk(1);
    let mut follower = net.engine(None);
    follower.start_height(1, net.set.clone(), net.set.clone());
    let who = [heavy[0], light[0]];
    let out = net.votes(&mut follower, &who, VoteKind::Precommit, 1, 0, Some(&a));
    assert!(decision(&out).is_none());
    let out = net.votes(
        &mut follower,
        &light[1..],
        VoteKind::Precommit,
        1,
        0,
        Some(&a),
    );
    let (_, _, block, cert) = decision(&out).unwrap();
    assert_eq!(block, None, "decided without ever seeing the block");
    assert_eq!(cert.verify(CHAIN, &net.set), Ok(4));
    assert_eq!(cert.signatures.len(), 3);
}

#[test]
fn follower_never_signs() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(None);
    e.start_height(1, net.set.clone(), net.set.clone());
    let a = Blk(3);
    let mut out = propose_valid(&net, &mut e, 1, 0, None, &a);
    out.extend(net.votes(&mut e, &[0, 1, 2], VoteKind::Prepare, 1, 0, Some(&a)));
    out.extend(net.votes(&mut e, &[0, 1, 2], VoteKind::Precommit, 1, 0, Some(&a)));
    assert!(sent_votes(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(o, Output::PersistSigner(_))));
    assert!(decision(&out).is_some());
}

#[test]
fn proposer_builds_and_proposes() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(Some(net.proposer_index(1, 0)));
    let out = e.start_height(1, net.set.clone(), net.set.clone());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::BuildBlock {
            height: 1,
            round: 0
        }
    )));
    let b = Blk(9);
    let out = e.handle(built(1, 0, &b)).outputs;
    assert!(matches!(out[0], Output::PersistSigner(_)));
    assert!(
        matches!(&out[1], Output::BroadcastProposal { proposal, .. } if proposal.block_hash == hash_of(&b))
    );
    // Its own block needs no validation round trip: it prepares at once.
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 0, &b)]);
    let again = e.handle(built(1, 0, &Blk(10)));
    assert!(ignored(&again.verdict));
}

#[test]
fn precommits_count_toward_two_thirds_of_any_prepares() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    e.handle(timeout(1, 0, Step::Propose));
    // A block that can still win: no reason to precommit nil before the timer.
    net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, Some(&Blk(1)));
    // The third validator's prepare was lost, its precommit was not.
    let out = net.votes(&mut e, &o[1..2], VoteKind::Precommit, 1, 0, None);
    assert!(schedules(&out, Step::Prepare));
}

#[test]
fn precommit_quorum_of_an_earlier_round_decides() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 2, None);
    assert_eq!(e.round(), 2);
    let out = net.votes(&mut e, &o, VoteKind::Precommit, 1, 0, Some(&Blk(4)));
    let (round, hash, _, cert) = decision(&out).unwrap();
    assert_eq!((round, hash), (0, hash_of(&Blk(4))));
    assert!(cert.verify(CHAIN, &net.set).is_ok());
}

#[test]
fn more_than_a_third_in_a_later_round_skips_to_it() {
    let (net, mut e, o) = started(&[1, 1, 1, 1, 1, 1]);
    // Two of six is exactly a third: no skip.
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 5, None);
    assert_eq!(e.round(), 0);
    // A third message from round 7 (within the window): the highest round with more than
    // a third at or above it is 5.
    net.votes(&mut e, &o[2..3], VoteKind::Precommit, 1, 7, None);
    assert_eq!((e.round(), e.step()), (5, Step::Propose));
    // Rounds too far ahead are not stored but still count toward the skip.
    let far = e.handle(net.vote(o[0], VoteKind::Prepare, 1, 100, None));
    assert!(ignored(&far.verdict));
    let far = e.handle(net.vote(o[1], VoteKind::Prepare, 1, 100, None));
    assert!(ignored(&far.verdict));
    assert_eq!(e.round(), 7);
    e.handle(net.vote(o[2], VoteKind::Prepare, 1, 100, None));
    assert_eq!(e.round(), 100);
}
