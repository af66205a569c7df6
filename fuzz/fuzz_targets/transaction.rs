//! A transaction from gossip or `sendrawtransaction`: decoding, the txid, the full hash and
//! every stateless check never panic, and only the canonical encoding decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_ledger::{check_transaction_stateless, Transaction, MAX_TX_BYTES};
use timecoin_types::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = codec::decode::<Transaction>(data, MAX_TX_BYTES) {
        assert_eq!(tx.encoded_len(), data.len());
        let _ = tx.txid();
        let _ = check_transaction_stateless(&tx, "fuzz");
    }
});
