//! Writes one valid, canonically encoded message per target into `corpus/<target>/`, so that
//! the fuzzer starts from the real structure instead of discovering CBOR field names itself:
//! `cargo run --example seeds` from `fuzz/` (then `scripts/fuzz.sh pack` archives the corpus).
use std::path::Path;
use timecoin_consensus::SignerState;
use timecoin_ledger::{full_tx_root, tx_root, Genesis, OutPoint, Transaction, TxOutput};
use timecoin_light::{Bundle, LightBlock, BUNDLE_FORMAT};
use timecoin_wire::{
    ConsensusRecord, ProposalMessage, SyncRequest, SyncResponse, SyncedBlock, VoteMessage,
};
use timecoin_types::{codec, Address, Certificate, Hash256, Proposal, Vote, VoteKind};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

/// A proof that block 1 of `genesis`'s chain (an empty block, signed by every key) is final.
fn bundle(genesis: &Genesis) -> Bundle {
    let set = genesis.validator_set();
    let mut header = genesis.genesis_block().header;
    header.height = 1;
    header.prev_hash = genesis.genesis_block().hash();
    let votes: Vec<Vote> = timecoin_fuzz::keys()
        .iter()
        .map(|k| Vote::sign("fuzz", k, VoteKind::Precommit, 1, 0, Some(header.hash())))
        .collect();
    Bundle {
        format: BUNDLE_FORMAT,
        chain_id: "fuzz".into(),
        trusted_height: None,
        blocks: vec![LightBlock {
            certificate: Certificate::from_votes(1, 0, header.hash(), &votes),
            header,
            validators: set.clone(),
            next_validators: set,
        }],
        transaction: None,
    }
}

fn main() {
    let keys = timecoin_fuzz::keys();
    let block_hash = Hash256::digest(b"block");
    let votes: Vec<Vote> = keys
        .iter()
        .map(|k| Vote::sign("fuzz", k, VoteKind::Precommit, 7, 1, Some(block_hash)))
        .collect();
    write("vote", "precommit", &codec::encode(&votes[0]));
    let nil = Vote::sign("fuzz", &keys[1], VoteKind::Prepare, 7, 0, None);
    write("vote", "prepare-nil", &codec::encode(&nil));
    let proposal = Proposal::sign("fuzz", &keys[0], 7, 2, Some(1), block_hash);
    write("proposal", "with-valid-round", &codec::encode(&proposal));
    let certificate = Certificate::from_votes(7, 1, block_hash, &votes);
    write("certificate", "four-signers", &codec::encode(&certificate));
    let tx = Transaction::build_signed(
        "fuzz",
        vec![(
            OutPoint {
                txid: Hash256::digest(b"prev"),
                index: 0,
            },
            &keys[0],
        )],
        vec![TxOutput {
            address: Address::of(&keys[1].public()),
            amount: 5,
        }],
    );
    write("transaction", "transfer", &codec::encode(&tx));
    write("raw_transaction", "transfer", hex::encode(codec::encode(&tx)).as_bytes());
    write(
        "vote_message",
        "precommit",
        &codec::encode(&VoteMessage {
            vote: votes[0].clone(),
            nonce: 42,
        }),
    );
    write("sync_request", "status", &codec::encode(&SyncRequest::Status));
    write(
        "sync_request",
        "blocks",
        &codec::encode(&SyncRequest::Blocks { from: 1, count: 64 }),
    );

    let genesis = timecoin_fuzz::genesis();
    write("bundle", "height-1", &serde_json::to_vec(&bundle(&genesis)).unwrap());
    let mut block = genesis.genesis_block();
    block.transactions.push(tx.clone());
    block.header.tx_root = tx_root(&block.transactions);
    block.header.full_tx_root = full_tx_root(&block.transactions);
    write("block", "genesis-with-transfer", &codec::encode(&block));
    let proposal = Proposal::sign("fuzz", &keys[0], 0, 0, None, block.hash());
    let message = ProposalMessage::new(proposal, &block);
    write("proposal_message", "with-transfer", &codec::encode(&message));
    write(
        "consensus_record",
        "locked",
        &codec::encode(&ConsensusRecord {
            signer: SignerState::default(),
            proposals: vec![message],
        }),
    );
    let certificate = Certificate::from_votes(0, 0, block.hash(), &votes);
    write(
        "sync_response",
        "one-block",
        &codec::encode(&SyncResponse::Blocks(vec![SyncedBlock { block, certificate }])),
    );
    write(
        "sync_response",
        "status",
        &codec::encode(&SyncResponse::Status {
            tip: 9,
            tip_hash: block_hash,
        }),
    );
}
