//! Tests of the `signer_cmd` module.

use super::*;

fn state(height: u64, round: u32, step: u8, block: Option<&[u8]>) -> SignerState {
    SignerState {
        height,
        round,
        step,
        block_hash: block.map(Hash256::digest),
        signature: None,
        locked: None,
        valid: None,
    }
}

#[test]
fn an_empty_target_takes_anything() {
    let file = state(5, 0, STEP_PREPARE, Some(b"a"));
    assert_eq!(decide(None, &file), Ok(Verdict::Replace));
    assert_eq!(
        decide(Some(&SignerState::default()), &file),
        Ok(Verdict::Replace)
    );
    assert_eq!(
        decide(None, &SignerState::default()),
        Ok(Verdict::Unchanged)
    );
}

#[test]
fn the_guard_moves_forward_only_by_height_then_round_then_step() {
    let target = state(5, 2, STEP_PREPARE, Some(b"a"));
    let later = [
        state(6, 0, STEP_PROPOSAL, Some(b"b")),
        state(5, 3, STEP_PROPOSAL, Some(b"b")),
        state(5, 2, STEP_PRECOMMIT, None),
    ];
    let older = [
        state(4, 9, STEP_PRECOMMIT, Some(b"a")),
        state(5, 1, STEP_PRECOMMIT, Some(b"a")),
        state(5, 2, STEP_PROPOSAL, Some(b"a")),
        SignerState::default(),
    ];
    for file in &later {
        assert_eq!(
            decide(Some(&target), file),
            Ok(Verdict::Replace),
            "{file:?}"
        );
    }
    for file in &older {
        let verdict = decide(Some(&target), file);
        assert!(
            matches!(verdict, Err(Refusal::Backwards { .. })),
            "{file:?}"
        );
    }
    let message = decide(Some(&target), &state(4, 0, STEP_PRECOMMIT, None))
        .unwrap_err()
        .to_string();
    assert!(message.contains("backwards"), "{message}");
    assert!(
        message.contains("(height 5, round 2, prepare)"),
        "{message}"
    );
}

#[test]
fn the_same_slot_is_a_no_op_or_a_conflict() {
    let target = state(5, 2, STEP_PREPARE, Some(b"a"));
    assert_eq!(
        decide(Some(&target), &target.clone()),
        Ok(Verdict::Unchanged)
    );
    assert_eq!(
        decide(Some(&target), &state(5, 2, STEP_PREPARE, None)),
        Err(Refusal::Conflict {
            slot: (5, 2, STEP_PREPARE)
        })
    );
    let mut signed = target.clone();
    signed.signature = Some(Signature([1; 64]));
    let mut other = target.clone();
    other.signature = Some(Signature([2; 64]));
    assert!(matches!(
        decide(Some(&signed), &other),
        Err(Refusal::Conflict { .. })
    ));
}

#[test]
fn the_file_format_round_trips_and_checks_coherence() {
    let mut s = state(7, 1, STEP_PRECOMMIT, Some(b"x"));
    s.signature = Some(Signature([9; 64]));
    s.locked = Some((1, Hash256::digest(b"x")));
    let last = LastSigned::of(&s).unwrap();
    let json = serde_json::to_value(&last).unwrap();
    assert_eq!(json["step"], "precommit");
    assert_eq!(json["locked"]["round"], 1);
    assert_eq!(json["signature"].as_str().unwrap().len(), 128);
    let back: LastSigned = serde_json::from_value(json).unwrap();
    assert_eq!(back.to_state().unwrap(), s);

    assert_eq!(
        LastSigned::of(&SignerState::default())
            .unwrap()
            .to_state()
            .unwrap(),
        SignerState::default()
    );
    let mut bad = LastSigned::of(&SignerState::default()).unwrap();
    bad.height = 3;
    assert!(bad.to_state().is_err());
    let mut bad = LastSigned::of(&state(3, 0, STEP_PROPOSAL, Some(b"p"))).unwrap();
    bad.block_hash = None;
    assert!(bad.to_state().is_err());
    assert!(LastSigned::of(&state(3, 0, 9, None)).is_err());
}

#[test]
fn only_proposals_of_the_imported_height_are_kept() {
    let key = timecoin_types::Keypair::from_seed([4; 32]);
    let at = |height| ProposalMessage {
        proposal: timecoin_types::Proposal {
            height,
            round: 0,
            valid_round: None,
            block_hash: Hash256::ZERO,
            proposer: key.public(),
            signature: Signature([0; 64]),
        },
        block: Vec::new(),
    };
    let kept = retained_proposals(vec![at(4), at(5), at(6), at(5)], 5);
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|p| p.proposal.height == 5));
    assert!(retained_proposals(vec![at(4)], 5).is_empty());
}

#[test]
fn describe_names_the_slot_and_lock() {
    assert_eq!(describe(&SignerState::default()), "nothing signed yet");
    let mut s = state(7, 1, STEP_PRECOMMIT, None);
    s.locked = Some((0, Hash256::digest(b"x")));
    let line = describe(&s);
    assert!(
        line.starts_with("last signed height 7, round 1, precommit for nil, locked at round 0 on "),
        "{line}"
    );
}
