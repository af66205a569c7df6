//! A finality certificate as served by sync and RPC, checked against a fixed validator set:
//! never a panic, and a certificate that verifies carries two thirds of the weight.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use timecoin_fuzz::validator_set;
use timecoin_types::{codec, Certificate, ValidatorSet};

fn set() -> &'static ValidatorSet {
    static SET: OnceLock<ValidatorSet> = OnceLock::new();
    SET.get_or_init(|| validator_set([1000, 2000, 3000, 4000]))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = codec::decode::<Certificate>(data, 64 * 1024) {
        assert_eq!(codec::encode(&certificate), data);
        if let Ok(signed) = certificate.verify("fuzz", set()) {
            assert!(set().is_quorum(signed));
        }
    }
});
