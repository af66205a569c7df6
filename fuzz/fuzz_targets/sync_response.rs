//! A sync response from a peer: decoding, and the checks catch-up sync runs before it touches
//! the store (block hash, certificate against a fixed set, body roots), never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use timecoin_ledger::check_block_body;
use timecoin_types::{codec, Address, Keypair, Validator, ValidatorSet};
use timecoin_wire::{SyncResponse, MAX_SYNC_RESPONSE_BYTES};

fn set() -> &'static ValidatorSet {
    static SET: OnceLock<ValidatorSet> = OnceLock::new();
    SET.get_or_init(|| {
        let members = (1..=4u8)
            .map(|i| {
                let key = Keypair::from_seed([i; 32]).public();
                Validator {
                    public_key: key,
                    weight: 1000,
                    reward_address: Address::of(&key),
                }
            })
            .collect();
        ValidatorSet::new(members).expect("a valid set")
    })
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
