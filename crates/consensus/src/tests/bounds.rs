//! Memory bounds and robustness: future heights, the block cache and old rounds stay
//! bounded without losing what the protocol needs, and no input makes the engine panic.

use super::*;
use proptest::prelude::*;
use timecoin_types::Signature;

#[test]
fn the_next_height_is_buffered_for_members_only_within_bounds_and_replayed() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(Some(0));
    assert!(ignored(
        &e.handle(net.vote(1, VoteKind::Precommit, 2, 0, None))
            .verdict
    ));
    e.start_height(1, net.set.clone(), net.set.clone());
    let b = Blk(22);
    for i in 1..4 {
        assert_eq!(
            e.handle(net.vote(i, VoteKind::Precommit, 2, 0, Some(&b)))
                .verdict,
            Verdict::Accepted
        );
    }
    assert!(ignored(
        &e.handle(net.vote(1, VoteKind::Precommit, 2, 0, Some(&b)))
            .verdict
    ));
    // Height 3's set is not known yet: nothing for it is held (or relayed).
    assert!(ignored(
        &e.handle(net.vote(1, VoteKind::Precommit, 3, 0, None))
            .verdict
    ));
    // Strangers, forgeries and proposals from anyone but the round's proposer are refused.
    let stranger = Keypair::from_seed([99; 32]);
    let junk = Vote::sign(CHAIN, &stranger, VoteKind::Prepare, 2, 0, None);
    assert!(rejected(&e.handle(Input::Vote(junk)).verdict));
    let not_proposer = &net.keys[(net.proposer_index(2, 0) + 1) % 4];
    let junk = proposal_by(not_proposer, 2, 0, None, &Blk(5), hash_of(&Blk(5)));
    assert!(rejected(&e.handle(junk).verdict));
    let junk = proposal_by(&stranger, 2, 0, None, &Blk(5), hash_of(&Blk(5)));
    assert!(rejected(&e.handle(junk).verdict));
    let mut forged = Vote::sign(CHAIN, &net.keys[2], VoteKind::Prepare, 2, 0, None);
    forged.signature = Signature([1; 64]);
    assert!(rejected(&e.handle(Input::Vote(forged)).verdict));
    // One member's share of the next height is bounded.
    let mut accepted = 0;
    for r in 0..40 {
        if e.handle(net.vote(0, VoteKind::Prepare, 2, r, None)).verdict == Verdict::Accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, MAX_BUFFERED_PER_KEY);
    // Replayed at start: the buffered precommits decide height 2 at once.
    let out = e.start_height(2, net.set.clone(), net.set.clone());
    let (_, hash, block, cert) = decision(&out).unwrap();
    assert_eq!((hash, block), (hash_of(&b), None));
    assert!(cert.verify_for(CHAIN, &net.set, 2, &hash).is_ok());
}

#[test]
fn the_next_height_uses_its_own_set() {
    let (net, now, next) = set_change();
    let mut e = net.engine(Some(1));
    e.start_height(1, now.clone(), next.clone());
    // Key 4 joins at height 2: its vote for height 2 is held, key 0's (which leaves) is not.
    assert_eq!(
        e.handle(net.vote(4, VoteKind::Prepare, 2, 0, None)).verdict,
        Verdict::Accepted
    );
    assert!(rejected(
        &e.handle(net.vote(0, VoteKind::Prepare, 2, 0, None)).verdict
    ));
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
    e.start_height(1, net.set.clone(), net.set.clone());
    let mut asked = 0;
    for r in 0..6 {
        let handled = e.handle(net.proposal(1, r, None, &Blk(100 + u64::from(r))));
        assert_eq!(handled.verdict, Verdict::Accepted, "round {r}");
        asked += handled
            .outputs
            .iter()
            .filter(|o| matches!(o, Output::ValidateBlock { .. }))
            .count();
    }
    // Every proposal is accepted and validated; older blocks are evicted to make room.
    assert_eq!(asked, 6);
}

#[test]
fn old_rounds_are_dropped_within_a_bound_but_what_the_protocol_needs_stays() {
    let a = Blk(1);
    // Locked and valid on `a` from round 0; then forty rounds that all end nil.
    let (net, mut e, o) = locked_on(&a);
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
    e.handle(timeout(1, 41, Step::Propose));
    let out = e.handle(timeout(1, 41, Step::Propose)).outputs;
    let sent = sent_votes(&out);
    let pol = vote_for(VoteKind::Prepare, 0, &a);
    assert_eq!(times_sent(&out, pol), 4, "{sent:?}");
    let precommits = (VoteKind::Precommit, 40, None);
    assert_eq!(times_sent(&out, precommits), 4, "{sent:?}");
    // A proposal citing a dropped round as its proof of lock pins that round again:
    // the proof's prepares are taken.
    let b = Blk(2);
    let out = propose_valid(&net, &mut e, 1, 42, Some(20), &b);
    assert!(sent_votes(&out).is_empty());
    net.votes(&mut e, &o, VoteKind::Prepare, 1, 20, Some(&b));
    assert!(e.rounds_in_memory().contains(&20));
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
            let block_hash = if good { hash_of(&blk) } else { Hash256::ZERO };
            proposal_by(&key, h, r, vr, &blk, block_hash)
        });
    let timer = (0u64..5, 0u32..30, 0u8..3).prop_map(|(height, round, s)| {
        let step = [Step::Propose, Step::Prepare, Step::Precommit][usize::from(s)];
        timeout(height, round, step)
    });
    let validation = (0u64..5, any::<u64>(), any::<bool>())
        .prop_map(|(height, b, valid)| validated(height, &Blk(b), valid));
    let building = (0u64..5, 0u32..30, any::<u64>())
        .prop_map(|(height, round, b)| built(height, round, &Blk(b)));
    prop_oneof![vote, proposal, timer, validation, building]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn garbage_never_panics(inputs in prop::collection::vec(arb_input(), 1..60), me in 0usize..4) {
        let net = Net::new(&[1, 2, 3, 4]);
        let mut e = net.engine(Some(me));
        e.start_height(1, net.set.clone(), net.set.clone());
        for input in inputs {
            let handled = e.handle(input);
            for o in handled.outputs {
                if let Output::Decide { height, block_hash, certificate, .. } = o {
                    prop_assert!(certificate.verify_for(CHAIN, &net.set, height, &block_hash).is_ok());
                    e.start_height(height + 1, net.set.clone(), net.set.clone());
                }
            }
        }
    }
}

/// What the node asks before it verifies a proposal's signature or decodes its block.
#[test]
fn proposals_are_prechecked_without_signature_or_block() {
    let net = Net::new(&[1, 1, 1, 1]);
    let mut e = net.engine(Some(0));
    e.start_height(1, net.set.clone(), net.set.clone());
    let proposal_of = |input: Input<Blk>| match input {
        Input::Proposal { proposal, .. } => proposal,
        _ => unreachable!("a proposal"),
    };
    // A forged signature passes the precheck: checking it is the next, costlier step.
    let mut forged = proposal_of(net.proposal(1, 0, None, &Blk(1)));
    forged.signature = Signature([3; 64]);
    assert_eq!(e.precheck_proposal(&forged), None);
    let not_proposer = &net.keys[(net.proposer_index(1, 0) + 1) % 4];
    let wrong = proposal_of(proposal_by(
        not_proposer,
        1,
        0,
        None,
        &Blk(1),
        hash_of(&Blk(1)),
    ));
    assert!(rejected(&e.precheck_proposal(&wrong).unwrap()));
    let bad_round = proposal_of(net.proposal(1, 1, Some(1), &Blk(1)));
    assert!(rejected(&e.precheck_proposal(&bad_round).unwrap()));
    let far = proposal_of(net.proposal(3, 0, None, &Blk(1)));
    assert!(ignored(&e.precheck_proposal(&far).unwrap()));
    let next = proposal_of(net.proposal(2, 0, None, &Blk(1)));
    assert_eq!(e.precheck_proposal(&next), None);
    // Once received, the same proposal is a duplicate.
    propose_valid(&net, &mut e, 1, 0, None, &Blk(1));
    let again = proposal_of(net.proposal(1, 0, None, &Blk(1)));
    assert!(ignored(&e.precheck_proposal(&again).unwrap()));
}
