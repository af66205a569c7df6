//! What the fuzz targets and the seed generator share: the fixed keys the seeds sign with,
//! validator sets of them to check the seeds' signatures against, and a genesis of them.

use timecoin_ledger::{Genesis, GenesisValidator, TxOutput};
use timecoin_types::{Address, Keypair, Validator, ValidatorSet};

/// The four keys the seeds sign with, from the seeds `[1; 32]` to `[4; 32]`.
pub fn keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect()
}

/// The validator set of [`keys`], with `weights` in the same order.
pub fn validator_set(weights: [u64; 4]) -> ValidatorSet {
    let members = keys()
        .iter()
        .zip(weights)
        .map(|(key, weight)| Validator::with_own_reward_address(key.public(), weight))
        .collect();
    ValidatorSet::new(members).expect("a valid set")
}

/// The chain of chain id "fuzz" whose genesis set is [`keys`], 1000 units of weight each.
pub fn genesis() -> Genesis {
    let keys = keys();
    let members = keys
        .iter()
        .enumerate()
        .map(|(i, k)| GenesisValidator::new(format!("v{i}"), k.public(), 1000))
        .collect();
    let funds = TxOutput {
        address: Address::of(&keys[0].public()),
        amount: 1_000_000,
    };
    Genesis {
        min_fee_per_byte: 1,
        min_output: 1,
        ..Genesis::new("fuzz", 0, 1000, members, vec![funds])
    }
}
