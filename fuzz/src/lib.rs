//! What the fuzz targets and the seed generator share: the fixed keys the seeds sign with, and
//! validator sets of them to check the seeds' signatures against.

use timecoin_types::{Keypair, Validator, ValidatorSet};

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
