//! `sendrawtransaction`'s parameter: any string a client sends. Decoding and the stateless
//! checks never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_ledger::check_transaction_stateless;
use timecoin_wire::decode_raw_transaction;

fuzz_target!(|text: &str| {
    if let Ok(tx) = decode_raw_transaction(text) {
        let _ = check_transaction_stateless(&tx, "fuzz");
        let _ = tx.full_hash();
    }
});
