//! Nil votes: the timers that cast them, the nil quorums that act without waiting for a
//! timer, and the round timer that keeps re-sending while a round lasts.

use super::*;

/// Round 0 of height 1 without a proposal: the propose timer fires (we prepare nil), then
/// the nil prepares of two others make a nil quorum; returns the outputs of those prepares.
fn nil_prepare_quorum(net: &Net, e: &mut Engine<Blk>, o: &[usize]) -> Vec<Output<Blk>> {
    e.handle(timeout(1, 0, Step::Propose));
    net.votes(e, &o[..2], VoteKind::Prepare, 1, 0, None)
}

/// Round 0's proposal of `b` at height 1 arrives and its block is found invalid; returns
/// the outputs of the validation.
fn found_invalid(net: &Net, e: &mut Engine<Blk>, b: &Blk) -> Vec<Output<Blk>> {
    e.handle(net.proposal(1, 0, None, b));
    e.handle(validated(1, b, false)).outputs
}

#[test]
fn timeouts_vote_nil_and_move_to_the_next_round() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let out = e.handle(timeout(1, 0, Step::Propose)).outputs;
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
    // The prepare timer starts only after 2/3 of any prepares. Blk(1) can still win
    // (two votes and one member not heard from), so nothing is cast before the timer.
    let out = net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&Blk(1)));
    assert!(out.iter().any(|o| matches!(o, Output::ScheduleTimeout { timeout, after_ms: 500 } if timeout.step == Step::Prepare)));
    assert!(sent_votes(&out).is_empty());
    let out = e.handle(timeout(1, 0, Step::Prepare)).outputs;
    assert_eq!(sent_votes(&out), vec![(VoteKind::Precommit, 0, None)]);
    // 2/3 of any precommits, and Blk(1) could still be committed by the fourth.
    let out = net.votes(&mut e, &o[..2], VoteKind::Precommit, 1, 0, Some(&Blk(1)));
    assert!(schedules(&out, Step::Precommit));
    assert_eq!(e.round(), 0);
    let out = e.handle(timeout(1, 0, Step::Precommit)).outputs;
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
    // Round 1 waits longer.
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, after_ms: 1250 } if timeout.round == 1)
    ));
    // Stale timers do nothing.
    assert!(ignored(&e.handle(timeout(1, 0, Step::Propose)).verdict));
}

#[test]
fn nil_prepare_quorum_precommits_nil_at_once() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let out = nil_prepare_quorum(&net, &mut e, &o);
    assert_eq!(sent_votes(&out), vec![(VoteKind::Precommit, 0, None)]);
}

#[test]
fn prepares_that_leave_no_block_a_quorum_end_the_propose_step_at_once() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    // No proposal and no timeout yet. One nil prepare leaves three members who could
    // still prepare one block: we wait.
    let out = net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, None);
    assert!(sent_votes(&out).is_empty());
    // A prepare for Blk(1), which could still get ours and the fourth: we wait.
    let out = net.votes(&mut e, &o[1..2], VoteKind::Prepare, 1, 0, Some(&Blk(1)));
    assert!(sent_votes(&out).is_empty());
    // The fourth prepares Blk(2): no block reaches three even with our vote, so we
    // prepare and precommit nil.
    let out = net.votes(&mut e, &o[2..3], VoteKind::Prepare, 1, 0, Some(&Blk(2)));
    assert_eq!(
        sent_votes(&out),
        vec![(VoteKind::Prepare, 0, None), (VoteKind::Precommit, 0, None)]
    );
    assert_eq!(e.step(), Step::Precommit);
    // A proposal arriving late changes nothing in this round.
    let out = propose_valid(&net, &mut e, 1, 0, None, &Blk(1));
    assert!(sent_votes(&out).is_empty());
}

/// The case of a 2/2 split that heals: we and one other prepared the proposal, the other
/// half nil. No block can reach a prepare quorum any more, so the prepare timer (which
/// starts on the 2/3 of any prepares) is not waited out.
#[test]
fn a_split_prepare_vote_precommits_nil_without_waiting_for_the_timer() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let a = Blk(2);
    let out = propose_valid(&net, &mut e, 1, 0, None, &a);
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 0, &a)]);
    let out = net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, Some(&a));
    assert!(sent_votes(&out).is_empty());
    let out = net.votes(&mut e, &o[1..2], VoteKind::Prepare, 1, 0, None);
    assert!(
        sent_votes(&out).is_empty(),
        "a can still get the fourth prepare"
    );
    let out = net.votes(&mut e, &o[2..3], VoteKind::Prepare, 1, 0, None);
    assert_eq!(sent_votes(&out), vec![(VoteKind::Precommit, 0, None)]);
    assert_eq!(e.signer().unwrap().state().locked, None);
}

/// As above for precommits: one for a block, two nil, ours still to come. No block can
/// be committed in the round, so the next one starts without the precommit timer.
#[test]
fn precommits_that_leave_no_block_a_quorum_start_the_next_round_at_once() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    e.handle(timeout(1, 0, Step::Propose));
    let out = net.votes(&mut e, &o[..1], VoteKind::Precommit, 1, 0, Some(&Blk(3)));
    assert_eq!(e.round(), 0);
    assert!(!schedules(&out, Step::Precommit));
    let out = net.votes(&mut e, &o[1..2], VoteKind::Precommit, 1, 0, None);
    assert_eq!(
        e.round(),
        0,
        "Blk(3) can still get the other two precommits"
    );
    assert!(!schedules(&out, Step::Precommit));
    let out = net.votes(&mut e, &o[2..3], VoteKind::Precommit, 1, 0, None);
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
    assert!(!schedules(&out, Step::Precommit));
    assert!(out.iter().any(
        |o| matches!(o, Output::ScheduleTimeout { timeout, after_ms: 1250 } if timeout.round == 1 && timeout.step == Step::Propose)
    ));
    // The precommit timer of round 0, had it been set, would now be stale.
    let stale = e.handle(timeout(1, 0, Step::Precommit));
    assert!(ignored(&stale.verdict));
}

/// Weight, not heads: with weights 3, 1, 1, 1, 1 (a quorum is 5 of 7), a light member's
/// nil prepare leaves a block 6 possible, the heavy member's only 3 more.
#[test]
fn whether_a_block_can_still_win_is_counted_in_weight() {
    let net = Net::new(&[3, 1, 1, 1, 1]);
    let weight = |i: usize| net.set.weight_of(&net.keys[i].public());
    let heavy = (0..5).find(|&i| weight(i) == 3).unwrap();
    let light: Vec<usize> = (0..5).filter(|&i| i != heavy).collect();
    let mut e = net.engine(Some(light[0]));
    e.start_height(1, net.set.clone(), net.set.clone());
    let out = net.votes(&mut e, &light[1..2], VoteKind::Prepare, 1, 0, None);
    assert!(sent_votes(&out).is_empty());
    let out = net.votes(&mut e, &[heavy], VoteKind::Prepare, 1, 0, None);
    assert_eq!(
        sent_votes(&out),
        vec![(VoteKind::Prepare, 0, None), (VoteKind::Precommit, 0, None)]
    );
}

/// A peer joining gets our votes of the round again, without anything newly signed.
#[test]
fn a_peer_joining_gets_our_votes_again() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let a = Blk(4);
    propose_valid(&net, &mut e, 1, 0, None, &a);
    net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a));
    let handled = e.handle(Input::PeerJoined);
    assert_eq!(handled.verdict, Verdict::Accepted);
    let sent = sent_votes(&handled.outputs);
    assert!(sent.contains(&vote_for(VoteKind::Prepare, 0, &a)));
    assert!(sent.contains(&vote_for(VoteKind::Precommit, 0, &a)));
    assert!(!handled
        .outputs
        .iter()
        .any(|o| matches!(o, Output::PersistSigner(_))));
}

#[test]
fn nil_precommit_quorum_moves_on_from_any_step_and_keeps_the_lock() {
    let a = Blk(3);
    let (net, mut e, o) = locked_on(&a);
    // Locked on `a` in round 0; round 1 sees 2/3 nil precommits before its proposal.
    e.handle(timeout(1, 0, Step::Precommit));
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
    let out = net.votes(&mut e, &o, VoteKind::Precommit, 1, 1, None);
    // We never voted in round 1 and need not: round 2 starts.
    assert!(sent_votes(&out).is_empty());
    assert_eq!((e.round(), e.step()), (2, Step::Propose));
    assert_eq!(e.signer().unwrap().state().locked, Some((0, hash_of(&a))));
    // The lock still refuses a fresh proposal for another block.
    let out = propose_valid(&net, &mut e, 1, 2, None, &Blk(9));
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 2, None)]);
}

#[test]
fn invalid_block_gets_a_nil_prepare() {
    let (net, mut e, _) = started(&[1, 1, 1, 1]);
    let out = found_invalid(&net, &mut e, &Blk(5));
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
}

/// Two thirds precommit a block this node found invalid (its state disagrees with theirs):
/// the decision stands, but the body it holds is not handed over to be applied; the node
/// fetches the decided block with its certificate instead.
#[test]
fn a_decision_never_hands_over_a_body_found_invalid() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let b = Blk(5);
    found_invalid(&net, &mut e, &b);
    let out = net.votes(&mut e, &o, VoteKind::Precommit, 1, 0, Some(&b));
    let (_, hash, block, _) = decision(&out).unwrap();
    assert_eq!((hash, block), (hash_of(&b), None));
}

#[test]
fn the_round_timer_repeats_and_resends_our_votes() {
    let (_, mut e, _) = started(&[1, 1, 1, 1]);
    let out = e.handle(timeout(1, 0, Step::Propose)).outputs;
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
    assert!(schedules(&out, Step::Propose));
    // Still stuck when it fires again: the same vote again, nothing newly signed.
    let out = e.handle(timeout(1, 0, Step::Propose)).outputs;
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 0, None)]);
    assert!(!out.iter().any(|o| matches!(o, Output::PersistSigner(_))));
    assert!(schedules(&out, Step::Propose));
}

/// A 2/2 split as one side sees it: we and one other prepared the proposal, the round
/// stalled (its propose timer fired again), then the other side joins: we precommit nil
/// at once instead of waiting for a quorum of prepares that may need a proposal the other
/// side never got.
#[test]
fn a_peer_joining_a_stalled_round_ends_it() {
    let (net, mut e, o) = started(&[1, 1, 1, 1]);
    let a = Blk(4);
    propose_valid(&net, &mut e, 1, 0, None, &a);
    net.votes(&mut e, &o[..1], VoteKind::Prepare, 1, 0, Some(&a));
    // Not stalled yet: a join only resends.
    let out = e.handle(Input::PeerJoined).outputs;
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Prepare, 0, &a)]);
    e.handle(timeout(1, 0, Step::Propose));
    let out = e.handle(Input::PeerJoined).outputs;
    let sent = sent_votes(&out);
    assert!(sent.contains(&vote_for(VoteKind::Prepare, 0, &a)));
    assert!(sent.contains(&(VoteKind::Precommit, 0, None)));
    assert_eq!(e.step(), Step::Precommit);
    // Stalled again while precommitting: the next join starts the next round.
    e.handle(timeout(1, 0, Step::Propose));
    e.handle(Input::PeerJoined);
    assert_eq!((e.round(), e.step()), (1, Step::Propose));
}
