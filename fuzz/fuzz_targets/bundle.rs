//! A light-client proof bundle as `timed verify` reads it (JSON from anyone), verified against
//! a fixed genesis: never a panic, and a bundle that verifies proves its last block.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use timecoin_ledger::Genesis;
use timecoin_light::{verify, Bundle, Trust};

fn genesis() -> &'static Genesis {
    static GENESIS: OnceLock<Genesis> = OnceLock::new();
    GENESIS.get_or_init(timecoin_fuzz::genesis)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = serde_json::from_slice::<Bundle>(data) {
        if let Ok(summary) = verify(Trust::Genesis(genesis()), &bundle) {
            let last = bundle.blocks.last().expect("a verified bundle has blocks");
            assert_eq!(summary.block_hash, last.header.hash());
        }
    }
});
