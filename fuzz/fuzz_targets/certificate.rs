//! A finality certificate as served by sync and RPC, checked against a fixed validator set:
//! never a panic, and a certificate that verifies carries two thirds of the weight.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use timecoin_types::{codec, Address, Certificate, Keypair, Validator, ValidatorSet};

fn set() -> &'static ValidatorSet {
    static SET: OnceLock<ValidatorSet> = OnceLock::new();
    SET.get_or_init(|| {
        let members = (1..=4u8)
            .map(|i| {
                let key = Keypair::from_seed([i; 32]).public();
                Validator {
                    public_key: key,
                    weight: u64::from(i) * 1000,
                    reward_address: Address::of(&key),
                }
            })
            .collect();
        ValidatorSet::new(members).expect("a valid set")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = codec::decode::<Certificate>(data, 64 * 1024) {
        assert_eq!(codec::encode(&certificate), data);
        if let Ok(signed) = certificate.verify("fuzz", set()) {
            assert!(set().is_quorum(signed));
        }
    }
});
