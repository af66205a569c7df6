//! The consensus engine of validator 0 of four, fed an arbitrary sequence of correctly signed
//! proposals and votes (from the other members and from a stranger, for the current and
//! nearby heights and rounds), forged signatures, timeouts and validation results. It must
//! never panic, never sign two different votes for one (height, round, kind), and never
//! decide two blocks at one height.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use timecoin_consensus::{Config, Engine, Input, Output, Signer, Step, Timeout};
use timecoin_types::{Hash256, Keypair, Proposal, Validator, ValidatorSet, Vote, VoteKind};

const CHAIN: &str = "fuzz";

#[derive(Arbitrary, Debug)]
enum Op {
    Proposal {
        signer: u8,
        height: u8,
        round: u8,
        valid_round: Option<u8>,
        block: u8,
        forged: bool,
    },
    Vote {
        signer: u8,
        precommit: bool,
        height: u8,
        round: u8,
        block: Option<u8>,
        forged: bool,
    },
    Timeout {
        step: u8,
        round: u8,
    },
    Validated {
        block: u8,
        valid: bool,
    },
    PeerJoined,
}

/// Keys 0..4 are the set (0 is the engine's own, which no input can sign with: nobody else
/// holds it); key 4 is a stranger.
fn keys() -> Vec<Keypair> {
    (1..=5u8).map(|i| Keypair::from_seed([i; 32])).collect()
}

fn block_hash(block: u8) -> Hash256 {
    Hash256::digest(&[block % 4])
}

fuzz_target!(|ops: Vec<Op>| {
    let keys = keys();
    let set = ValidatorSet::new(
        keys[..4]
            .iter()
            .map(|k| Validator::with_own_reward_address(k.public(), 1000))
            .collect(),
    )
    .expect("valid set");
    let mut engine: Engine<u8> = Engine::new(
        CHAIN.into(),
        Config::default(),
        Some(Signer::new(keys[0].clone(), None)),
    );
    let me = keys[0].public();
    let mut height = 1u64;
    let mut outputs = engine.start_height(height, set.clone(), set.clone());
    let mut signed: HashMap<(u64, u32, VoteKind), Option<Hash256>> = HashMap::new();
    let mut decided: HashMap<u64, Hash256> = HashMap::new();
    for op in ops.into_iter().take(64) {
        let input = match op {
            Op::Proposal {
                signer,
                height: dh,
                round,
                valid_round,
                block,
                forged,
            } => {
                let key = &keys[1 + usize::from(signer) % (keys.len() - 1)];
                let mut proposal = Proposal::sign(
                    CHAIN,
                    key,
                    height + u64::from(dh % 3),
                    u32::from(round % 8),
                    valid_round.map(|r| u32::from(r % 8)),
                    block_hash(block),
                );
                if forged {
                    proposal.signature.0[0] ^= 1;
                }
                Input::Proposal {
                    proposal,
                    block: block % 4,
                    block_hash: block_hash(block),
                }
            }
            Op::Vote {
                signer,
                precommit,
                height: dh,
                round,
                block,
                forged,
            } => {
                let key = &keys[1 + usize::from(signer) % (keys.len() - 1)];
                let kind = if precommit {
                    VoteKind::Precommit
                } else {
                    VoteKind::Prepare
                };
                let mut vote = Vote::sign(
                    CHAIN,
                    key,
                    kind,
                    height + u64::from(dh % 3),
                    u32::from(round % 8),
                    block.map(block_hash),
                );
                if forged {
                    vote.signature.0[0] ^= 1;
                }
                Input::Vote(vote)
            }
            Op::Timeout { step, round } => Input::Timeout(Timeout {
                height,
                round: u32::from(round % 8),
                step: [Step::Propose, Step::Prepare, Step::Precommit][usize::from(step % 3)],
            }),
            Op::Validated { block, valid } => Input::BlockValidated {
                height,
                block_hash: block_hash(block),
                valid,
            },
            Op::PeerJoined => Input::PeerJoined,
        };
        outputs.extend(engine.handle(input).outputs);
        for output in outputs.drain(..) {
            match output {
                // The engine also relays others' votes (proofs of lock, round changes); only
                // its own are its signatures.
                Output::BroadcastVote(vote) if vote.validator == me => {
                    let slot = (vote.height, vote.round, vote.kind);
                    let previous = signed.insert(slot, vote.block_hash);
                    assert!(
                        previous.is_none_or(|p| p == vote.block_hash),
                        "signed two different votes for {slot:?}"
                    );
                }
                Output::Decide {
                    height: h,
                    block_hash,
                    certificate,
                    ..
                } => {
                    assert!(certificate.verify_for(CHAIN, &set, h, &block_hash).is_ok());
                    let previous = decided.insert(h, block_hash);
                    assert!(previous.is_none_or(|p| p == block_hash), "two decisions at {h}");
                    if h == height {
                        height += 1;
                    }
                }
                _ => {}
            }
        }
        if !decided.contains_key(&height) && engine.height() < height {
            outputs = engine.start_height(height, set.clone(), set.clone());
        }
    }
});
