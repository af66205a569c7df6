//! A sync response from a peer: decoding, and the checks catch-up sync runs before it touches
//! the store (block hash, certificate against a fixed set, body roots), never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use timecoin_fuzz::validator_set;
use timecoin_ledger::check_block_body;
use timecoin_types::{codec, ValidatorSet};
use timecoin_wire::{SyncResponse, MAX_SYNC_RESPONSE_BYTES};

fn set() -> &'static ValidatorSet {
    static SET: OnceLock<ValidatorSet> = OnceLock::new();
    SET.get_or_init(|| validator_set([1000; 4]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(response) = codec::decode::<SyncResponse>(data, MAX_SYNC_RESPONSE_BYTES) else {
        return;
    };
    assert_eq!(codec::encode(&response), data);
    if let SyncResponse::Blocks(blocks) = response {
        for item in blocks {
            let hash = item.block.hash();
            let _ = item
                .certificate
                .verify_for("fuzz", set(), item.block.header.height, &hash);
            let _ = check_block_body(&item.block);
        }
    }
});
