//! A block body from a proposal or a sync response: decoding, the header hash and the Merkle
//! roots never panic, and only the canonical encoding decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_ledger::{rewards_root, tx_root, Block, MAX_BLOCK_BYTES};
use timecoin_types::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = codec::decode::<Block>(data, MAX_BLOCK_BYTES) {
        assert_eq!(block.encoded_len(), data.len());
        let _ = block.hash();
        let _ = tx_root(&block.transactions);
        let _ = rewards_root(&block.rewards);
    }
});
