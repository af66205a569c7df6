//! Restarts: the persisted signer state brings back the round, the step and the lock, and
//! nothing signed before the crash is signed differently after it.

use super::*;

/// The signer state the outputs last asked to persist, as the node's store keeps it.
#[derive(Default)]
struct Persisted(Option<SignerState>);

impl Persisted {
    fn record(&mut self, out: &[Output<Blk>]) {
        for o in out {
            if let Output::PersistSigner(s) = o {
                self.0 = Some(s.clone());
            }
        }
    }
}

/// The engine of validator `me` after a restart from the persisted `state`.
fn restarted(net: &Net, me: usize, state: SignerState) -> Engine<Blk> {
    let signer = Signer::new(net.keys[me].clone(), Some(state));
    Engine::new(CHAIN.into(), Config::default(), Some(signer))
}

#[test]
fn restart_from_persisted_state_keeps_the_lock_and_never_double_signs() {
    let net = Net::new(&[1, 1, 1, 1]);
    let me = net.non_proposer(1, 3);
    let mut e = net.engine(Some(me));
    let mut persisted = Persisted::default();
    persisted.record(&e.start_height(1, net.set.clone(), net.set.clone()));
    let a = Blk(1);
    persisted.record(&propose_valid(&net, &mut e, 1, 0, None, &a));
    let o = others(&net, me);
    persisted.record(&net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 0, Some(&a)));
    let state = persisted.0.unwrap();
    assert_eq!(
        (state.height, state.round, state.step),
        (1, 0, STEP_PRECOMMIT)
    );
    assert_eq!(state.locked, Some((0, hash_of(&a))));
    drop(e);

    let mut e = restarted(&net, me, state);
    let out = e.start_height(1, net.set.clone(), net.set.clone());
    // Resumes in the stored round and step and re-sends the same precommit.
    assert_eq!((e.round(), e.step()), (0, Step::Precommit));
    assert_eq!(sent_votes(&out), vec![vote_for(VoteKind::Precommit, 0, &a)]);
    // The prepare timeout of round 0 fires again after the restart: nothing is signed.
    let out = e.handle(timeout(1, 0, Step::Prepare)).outputs;
    assert!(sent_votes(&out).is_empty());
    // Round 1 proposes another block: the lock survived, so the prepare is nil.
    leave_round(&net, &mut e, &o[..2], 0);
    let out = propose_valid(&net, &mut e, 1, 1, None, &Blk(2));
    assert_eq!(sent_votes(&out), vec![(VoteKind::Prepare, 1, None)]);
}

/// A valid value recorded in a later round than the last signature (a late proof of lock
/// seen after skipping ahead) must bring the restart to that round: resuming in the signed
/// round would let this validator, as a later proposer, re-propose the value with a valid
/// round at or above the proposal's own, which every node refuses.
#[test]
fn restart_resumes_in_the_valid_round_when_it_is_the_highest() {
    let net = Net::new(&[1, 1, 1, 1]);
    let me = net.proposer_index(1, 1);
    let o = others(&net, me);
    let mut e = net.engine(Some(me));
    let mut persisted = Persisted::default();
    persisted.record(&e.start_height(1, net.set.clone(), net.set.clone()));
    // Round 0: no proposal, we prepare nil (our last signature).
    persisted.record(&e.handle(timeout(1, 0, Step::Propose)).outputs);
    // Two others in round 3 pull us there without a signature of ours (their block can
    // still win, so we wait for its proposal).
    persisted.record(&net.votes(&mut e, &o[..2], VoteKind::Prepare, 1, 3, Some(&Blk(8))));
    assert_eq!(e.round(), 3);
    // Then round 2's proposal and its prepare quorum arrive late: a valid value at round 2.
    let a = Blk(7);
    persisted.record(&propose_valid(&net, &mut e, 1, 2, None, &a));
    persisted.record(&net.votes(&mut e, &o, VoteKind::Prepare, 1, 2, Some(&a)));
    let state = persisted.0.unwrap();
    assert_eq!((state.round, state.valid), (0, Some((2, hash_of(&a)))));
    drop(e);

    let mut e = restarted(&net, me, state);
    let mut out = e.start_height(1, net.set.clone(), net.set.clone());
    assert_eq!(e.round(), 2);
    // The node replays its logged proposals; rounds pass until it is our turn again (5).
    out.extend(e.handle(net.proposal(1, 2, None, &a)).outputs);
    out.extend(e.handle(validated(1, &a, true)).outputs);
    for r in 2..5 {
        out.extend(leave_round(&net, &mut e, &o[..2], r));
    }
    let proposals: Vec<(u32, Option<u32>)> = out
        .iter()
        .filter_map(|o| match o {
            Output::BroadcastProposal { proposal, .. } => {
                Some((proposal.round, proposal.valid_round))
            }
            _ => None,
        })
        .collect();
    assert_eq!(proposals, vec![(5, Some(2))]);
}
