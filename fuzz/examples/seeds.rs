//! Writes one valid, canonically encoded message per target into `corpus/<target>/`, so that
//! the fuzzer starts from the real structure instead of discovering CBOR field names itself:
//! `cargo run --example seeds` from `fuzz/` (then `scripts/fuzz.sh pack` archives the corpus).
use std::path::Path;
use timecoin_consensus::SignerState;
use timecoin_ledger::{
    full_tx_root, tx_root, Genesis, GenesisValidator, OutPoint, Transaction, TxOutput,
};
use timecoin_wire::{
    ConsensusRecord, ProposalMessage, SyncRequest, SyncResponse, SyncedBlock, VoteMessage,
};
use timecoin_types::{codec, Address, Certificate, Hash256, Proposal, Vote, VoteKind};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
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

    let members = keys
        .iter()
        .enumerate()
        .map(|(i, k)| GenesisValidator::new(format!("v{i}"), k.public(), 1000))
        .collect();
    let funds = TxOutput {
        address: Address::of(&keys[0].public()),
        amount: 1_000_000,
    };
    let genesis = Genesis {
        min_fee_per_byte: 1,
        min_output: 1,
        ..Genesis::new("fuzz", 0, 1000, members, vec![funds])
    };
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
