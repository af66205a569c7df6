//! Validator-set changes: a validator that leaves the set stops signing but still
//! follows, and one that joins starts proposing and voting by itself.

use super::*;

#[test]
fn a_validator_leaving_the_set_stops_signing_and_still_follows() {
    let (net, with_me, without_me) = set_change();
    let mut e = net.engine(Some(0));
    e.start_height(1, with_me.clone(), without_me.clone());
    let out = run_height(&net, &mut e, &with_me, 1, &[1, 2]);
    assert!(sent_votes(&out).contains(&vote_for(VoteKind::Prepare, 0, &Blk(100))));
    assert!(decision(&out).is_some());
    // Height 2 without us: nothing signed, not on any timer either, yet it decides.
    let mut out = e.start_height(2, without_me.clone(), without_me.clone());
    for step in [Step::Propose, Step::Prepare, Step::Precommit] {
        out.extend(e.handle(timeout(2, 0, step)).outputs);
    }
    assert_eq!(e.round(), 1);
    assert!(sent_votes(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::PersistSigner(_) | Output::BuildBlock { .. } | Output::BroadcastProposal { .. }
    )));
    // Our own key's votes no longer count at height 2.
    let ours = e.handle(net.vote(0, VoteKind::Prepare, 2, 1, None));
    assert!(rejected(&ours.verdict));
    let b = Blk(7);
    let out = net.votes(&mut e, &[1, 2, 4], VoteKind::Precommit, 2, 0, Some(&b));
    let (_, _, _, cert) = decision(&out).unwrap();
    assert!(cert.verify_for(CHAIN, &without_me, 2, &hash_of(&b)).is_ok());
    assert_eq!(e.signer().unwrap().state().height, 1);
}

#[test]
fn a_validator_joining_the_set_starts_proposing_and_voting_by_itself() {
    let (net, before, after) = set_change();
    let me = 4;
    let mut e = net.engine(Some(me));
    let mut out = e.start_height(1, before.clone(), after.clone());
    out.extend(run_height(&net, &mut e, &before, 1, &[0, 1, 2]));
    assert!(sent_votes(&out).is_empty());
    assert!(decision(&out).is_some());
    // From height 2 we are a member: the first height we propose asks for a block...
    let ours = |h: u64| after.proposer(h, 0).public_key == net.keys[me].public();
    let h = (2..100).find(|&h| ours(h)).unwrap();
    let out = e.start_height(h, after.clone(), after.clone());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::BuildBlock { height, round: 0 } if *height == h)));
    let block = Blk(42);
    let out = e.handle(built(h, 0, &block)).outputs;
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::BroadcastProposal { proposal, .. } if proposal.height == h)));
    assert_eq!(
        sent_votes(&out),
        vec![vote_for(VoteKind::Prepare, 0, &block)]
    );
    // ...and a height someone else proposes gets our prepare and precommit.
    let h = (h + 1..200).find(|&h| !ours(h)).unwrap();
    e.start_height(h, after.clone(), after.clone());
    let out = run_height(&net, &mut e, &after, h, &[1, 2]);
    let b = Some(hash_of(&Blk(h * 100)));
    assert_eq!(
        sent_votes(&out),
        vec![(VoteKind::Prepare, 0, b), (VoteKind::Precommit, 0, b)]
    );
}
