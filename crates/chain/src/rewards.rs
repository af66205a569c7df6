//! The block subsidy and how a block's rewards are split. Integer arithmetic only: every
//! node must compute the same outputs to the base unit.

use crate::tx::TxOutput;
use timecoin_types::{Address, Amount, PublicKey, ValidatorSet, COIN};

/// ln 2 in Q64 (floor of ln 2 × 2^64).
const LN2_Q64: u128 = 0xB172_17F7_D1CF_79AB;

/// Subsidy for finalizing height `height`: `100 × (1 + ln height)` TIME in base units,
/// rounded down (within one base unit of the exact value). Height 0, the genesis block, has
/// no subsidy.
pub fn subsidy(height: u64) -> Amount {
    if height == 0 {
        return 0;
    }
    let base: u128 = 100 * COIN as u128;
    // ln h < 45 for any u64, so base × ln h in Q64 stays below 2^103.
    let scaled = (base * ln_q64(height)) >> 64;
    (base + scaled) as Amount
}

/// Natural logarithm of `x ≥ 1` in Q64. Every step rounds down, so the result is never
/// above the exact value; the reference vectors bound how far below it can be.
fn ln_q64(x: u64) -> u128 {
    // Range reduction: x = 2^k × m with m in [1, 2), so ln x = (k + log2 m) × ln 2.
    let k = 63 - x.leading_zeros();
    let frac = log2_fraction_q64((x as u128) << (63 - k));
    ((k as u128) * LN2_Q64) + ((frac * LN2_Q64) >> 64)
}

/// log2 of `m` in [1, 2), given in Q63, as a Q64 fraction. Bit by bit: squaring m doubles
/// its logarithm, and the next bit is 1 exactly when the square reaches 2.
fn log2_fraction_q64(mut m: u128) -> u128 {
    const ONE_Q63: u128 = 1 << 63;
    debug_assert!((ONE_Q63..2 * ONE_Q63).contains(&m));
    let mut result: u128 = 0;
    for bit in (0..64).rev() {
        // m < 2^64, so m² < 2^128 fits.
        m = (m * m) >> 63;
        if m >= 2 * ONE_Q63 {
            m >>= 1;
            result |= 1 << bit;
        }
    }
    result
}

/// The reward outputs of a block with proposer `proposer` paying `total` (subsidy + fees):
/// 10% to the proposer, 90% split over `set` in proportion to weight (rounded down), the
/// rounding dust to the proposer. One output per validator in set order, the proposer's
/// share folded into its own; zero amounts are left out. The amounts sum to `total` exactly.
///
/// A proposer outside the set (never the case in a valid block) is paid at the address of
/// its key, after the members.
pub fn reward_outputs(set: &ValidatorSet, proposer: &PublicKey, total: Amount) -> Vec<TxOutput> {
    let proposer_cut = total / 10;
    let pool = total - proposer_cut;
    let total_weight = set.total_weight() as u128;
    let mut amounts: Vec<Amount> = set
        .validators()
        .iter()
        .map(|v| (pool as u128 * v.weight as u128 / total_weight) as Amount)
        .collect();
    // Each share is at most pool × weight / total, so the sum cannot exceed pool.
    let distributed: Amount = amounts.iter().sum();
    let proposer_amount = proposer_cut + (pool - distributed);
    let mut outputs: Vec<TxOutput> = Vec::with_capacity(amounts.len() + 1);
    let proposer_index = set.index_of(proposer);
    if let Some(i) = proposer_index {
        amounts[i] += proposer_amount;
    }
    for (v, amount) in set.validators().iter().zip(amounts) {
        if amount > 0 {
            outputs.push(TxOutput {
                address: v.reward_address,
                amount,
            });
        }
    }
    if proposer_index.is_none() && proposer_amount > 0 {
        outputs.push(TxOutput {
            address: Address::of(proposer),
            amount: proposer_amount,
        });
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use timecoin_types::{Keypair, Validator};

    fn set_of(weights: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| {
                    let key = Keypair::from_seed([i as u8 + 1; 32]).public();
                    Validator {
                        public_key: key,
                        weight,
                        reward_address: Address::of(&key),
                    }
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn subsidy_anchors() {
        assert_eq!(subsidy(0), 0);
        assert_eq!(subsidy(1), 100 * COIN);
        // 100 × (1 + ln 2) = 169.31471805599453… TIME
        assert_eq!(subsidy(2), 16_931_471_805);
        assert!(subsidy(u64::MAX) > subsidy(1_000_000_000));
    }

    #[test]
    fn subsidy_never_decreases() {
        let heights = (1..100_000u64).chain((17..64).map(|k| 1u64 << k));
        let mut last = 0;
        for h in heights.chain([u64::MAX]) {
            let s = subsidy(h);
            assert!(s >= last, "subsidy({h}) decreased");
            last = s;
        }
    }

    #[test]
    fn equal_weights_split_evenly_with_dust_to_proposer() {
        let set = set_of(&[10, 10, 10]);
        let proposer = set.validators()[1].public_key;
        let out = reward_outputs(&set, &proposer, 1000);
        // 100 to the proposer, 900 split 300 each.
        assert_eq!(
            out.iter().map(|o| o.amount).collect::<Vec<_>>(),
            vec![300, 400, 300]
        );
        let out = reward_outputs(&set, &proposer, 1001);
        // 100 + 901 split 300 each with 1 dust to the proposer.
        assert_eq!(
            out.iter().map(|o| o.amount).collect::<Vec<_>>(),
            vec![300, 401, 300]
        );
    }

    #[test]
    fn zero_amounts_are_omitted_and_outsiders_are_paid_by_key() {
        let set = set_of(&[1, 1_000_000]);
        let small = set.validators().iter().position(|v| v.weight == 1).unwrap();
        let big = set.validators()[1 - small].public_key;
        let out = reward_outputs(&set, &big, 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].amount, 10);
        assert!(reward_outputs(&set, &big, 0).is_empty());

        let outsider = Keypair::from_seed([77; 32]).public();
        let out = reward_outputs(&set_of(&[1, 1]), &outsider, 100);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].address, Address::of(&outsider));
        assert_eq!(out[2].amount, 10);
    }

    proptest! {
        #[test]
        fn reward_sum_is_exact(
            weights in proptest::collection::vec(1u64..=u64::MAX / 300, 1..40),
            total in any::<u64>(),
            pick in any::<prop::sample::Index>(),
        ) {
            let set = set_of(&weights);
            let proposer = set.validators()[pick.index(set.len())].public_key;
            let out = reward_outputs(&set, &proposer, total);
            let sum: u128 = out.iter().map(|o| o.amount as u128).sum();
            prop_assert_eq!(sum, total as u128);
            prop_assert!(out.iter().all(|o| o.amount > 0));
            prop_assert!(out.len() <= set.len());
            let proposer_address = set.get(&proposer).unwrap().reward_address;
            let paid: u128 = out
                .iter()
                .filter(|o| o.address == proposer_address)
                .map(|o| o.amount as u128)
                .sum();
            prop_assert!(paid >= (total / 10) as u128);
        }

        #[test]
        fn shares_follow_weight(w1 in 1u64..1_000_000, w2 in 1u64..1_000_000, total in 0u64..1u64 << 50) {
            // With a proposer outside the set, each member gets exactly floor(pool × w / W).
            let set = set_of(&[w1, w2]);
            let outsider = Keypair::from_seed([200; 32]).public();
            let out = reward_outputs(&set, &outsider, total);
            let pool = (total - total / 10) as u128;
            let tw = (w1 + w2) as u128;
            for v in set.validators() {
                let expected = (pool * v.weight as u128 / tw) as u64;
                let got = out.iter().find(|o| o.address == v.reward_address).map_or(0, |o| o.amount);
                prop_assert_eq!(got, expected);
            }
        }
    }
}
