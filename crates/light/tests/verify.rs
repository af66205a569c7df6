//! The light client accepts a real chain's bundle and refuses every forgery with its reason.

mod common;

use common::{certify, chain, Chain, CHAIN};
use timecoin_light::{verify, Bundle, Trust, VerifyError};
use timecoin_types::{CertificateError, CommitSignature, Hash256, Keypair, Vote, VoteKind};

fn fixture() -> (Chain, Bundle) {
    let chain = chain(4, 30, 7);
    let bundle = chain.bundle();
    (chain, bundle)
}

fn refused(chain: &Chain, bundle: &Bundle) -> VerifyError {
    verify(Trust::Genesis(&chain.genesis), bundle).expect_err("the forgery is refused")
}

#[test]
fn a_bundle_across_set_changes_verifies() {
    let (chain, bundle) = fixture();
    // Changes are fixed at 7, 14, 21, 28 and handed over by the headers of 8, 15, 22, 29.
    let heights: Vec<u64> = bundle.blocks.iter().map(|b| b.header.height).collect();
    assert_eq!(heights, [8, 15, 22, 29, 30]);
    let summary = verify(Trust::Genesis(&chain.genesis), &bundle).unwrap();
    assert_eq!(summary.height, 30);
    assert_eq!(summary.block_hash, chain.blocks[29].header.hash());
    assert_eq!(summary.set_changes, 4);
    assert_eq!(summary.txid, Some(chain.transaction.txid()));
    assert_eq!(
        (summary.signed_weight, summary.total_weight),
        (40 * 100_000_000, 40 * 100_000_000)
    );
    assert!(summary
        .to_string()
        .starts_with("verified: light-test height 30 block"));
}

#[test]
fn a_forged_signature_is_refused() {
    let (chain, mut bundle) = fixture();
    bundle.blocks[1].certificate.signatures[0].signature.0[5] ^= 1;
    let signer = bundle.blocks[1].certificate.signatures[0].validator;
    assert_eq!(
        refused(&chain, &bundle),
        VerifyError::Certificate {
            height: 15,
            source: CertificateError::BadSignature(signer)
        }
    );
}

#[test]
fn a_signer_outside_the_set_is_refused() {
    let (chain, mut bundle) = fixture();
    let outsider = Keypair::from_seed([99; 32]);
    let target = bundle.blocks.last_mut().unwrap();
    let vote = Vote::sign(
        CHAIN,
        &outsider,
        VoteKind::Precommit,
        30,
        target.header.round,
        Some(target.header.hash()),
    );
    target.certificate.signatures.push(CommitSignature {
        validator: vote.validator,
        signature: vote.signature,
    });
    assert_eq!(
        refused(&chain, &bundle),
        VerifyError::Certificate {
            height: 30,
            source: CertificateError::UnknownValidator(outsider.public())
        }
    );
}

#[test]
fn two_thirds_minus_one_is_refused() {
    // Four equal members: three are a quorum, two are one signer short of it.
    let (chain, mut bundle) = fixture();
    let target = bundle.blocks.last_mut().unwrap();
    let set = target.validators.clone();
    let signers: Vec<Keypair> = chain
        .keys
        .iter()
        .filter(|k| set.get(&k.public()).is_some())
        .take(2)
        .cloned()
        .collect();
    target.certificate = certify(&target.header, &set, &signers);
    assert_eq!(
        refused(&chain, &bundle),
        VerifyError::Certificate {
            height: 30,
            source: CertificateError::InsufficientWeight {
                signed: 20 * 100_000_000,
                total: 40 * 100_000_000
            }
        }
    );
}

#[test]
fn a_dropped_set_change_is_refused() {
    let (chain, mut bundle) = fixture();
    let dropped = bundle.blocks.remove(1);
    match refused(&chain, &bundle) {
        VerifyError::UnexpectedSet {
            height: 22,
            expected,
            found,
        } => {
            assert_eq!(expected, bundle.blocks[0].next_validators.hash());
            assert_eq!(found, dropped.next_validators.hash());
        }
        other => panic!("wrong reason: {other}"),
    }
}

#[test]
fn a_wrong_chain_id_is_refused() {
    let (mut chain, bundle) = fixture();
    chain.genesis.chain_id = "other-chain".into();
    assert!(matches!(
        refused(&chain, &bundle),
        VerifyError::WrongChain { height: 0, .. }
    ));
    // Relabelling the bundle does not help: the headers and signatures name their chain.
    let mut relabelled = bundle.clone();
    relabelled.chain_id = "other-chain".into();
    assert!(matches!(
        refused(&chain, &relabelled),
        VerifyError::WrongChain { height: 8, .. }
    ));
}

#[test]
fn a_swapped_transaction_is_refused() {
    let (chain, mut bundle) = fixture();
    let inclusion = bundle.transaction.as_mut().unwrap();
    inclusion.transaction = chain.last_transactions[3].clone();
    let txid = inclusion.transaction.txid();
    assert_eq!(
        refused(&chain, &bundle),
        VerifyError::NotIncluded { txid, height: 30 }
    );
    // The same transaction with another signature is another full hash, so it is refused too.
    let mut resigned = chain.bundle();
    resigned.transaction.as_mut().unwrap().transaction.inputs[0]
        .signature
        .0[0] ^= 1;
    assert!(matches!(
        refused(&chain, &resigned),
        VerifyError::NotIncluded { .. }
    ));
}

#[test]
fn a_tampered_header_or_set_is_refused() {
    let (chain, bundle) = fixture();
    let mut header = bundle.clone();
    header.blocks[4].header.time_ms += 1;
    assert!(matches!(
        refused(&chain, &header),
        VerifyError::Certificate {
            height: 30,
            source: CertificateError::WrongBlock { .. }
        }
    ));
    let mut next = bundle.clone();
    next.blocks[0].next_validators = next.blocks[0].validators.clone();
    assert_eq!(
        refused(&chain, &next),
        VerifyError::NextSetNotInHeader { height: 8 }
    );
    let mut reordered = bundle.clone();
    reordered.blocks.swap(0, 1);
    assert!(matches!(
        refused(&chain, &reordered),
        VerifyError::UnexpectedSet { height: 15, .. }
    ));
    let mut empty = bundle;
    empty.blocks.clear();
    empty.transaction = None;
    assert_eq!(refused(&chain, &empty), VerifyError::Empty);
}

#[test]
fn a_bundle_from_a_trusted_height_needs_that_block() {
    let (chain, _) = fixture();
    let mut bundle = chain.bundle();
    bundle.blocks.drain(..2);
    bundle.blocks.insert(0, chain.blocks[19].clone());
    bundle.trusted_height = Some(20);
    let trusted = chain.blocks[19].header.hash();
    let summary = verify(Trust::Block(&chain.genesis, 20, trusted), &bundle).unwrap();
    assert_eq!((summary.height, summary.set_changes), (30, 2));
    assert!(matches!(
        verify(Trust::Block(&chain.genesis, 20, Hash256::ZERO), &bundle),
        Err(VerifyError::TrustMismatch(_))
    ));
    assert!(matches!(
        refused(&chain, &bundle),
        VerifyError::TrustMismatch(_)
    ));
}

#[test]
fn a_truncated_file_is_not_a_bundle() {
    let (_, bundle) = fixture();
    let text = serde_json::to_string(&bundle).unwrap();
    assert!(serde_json::from_str::<Bundle>(&text).is_ok());
    for cut in [1, text.len() / 3, text.len() - 1] {
        assert!(
            serde_json::from_str::<Bundle>(&text[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}
