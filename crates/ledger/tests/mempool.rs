//! The mempool: deduplication, conflicts, fee-rate order, bounds and eviction.

use timecoin_ledger::{
    reward_outpoint, Block, BlockHeader, Mempool, MempoolError, OutPoint, Transaction, TxOutput,
};
use timecoin_types::{Address, Amount, Hash256, Keypair, PublicKey};

fn key() -> Keypair {
    Keypair::from_seed([42; 32])
}

/// Time to live of the tests' pools that are not about expiry: longer than any test runs.
const TTL: u64 = 60_000;

fn outpoint(n: u32) -> OutPoint {
    reward_outpoint(7, n)
}

/// A one-input transaction spending `outpoint(n)`; `outputs` controls its size.
fn tx(n: u32, outputs: usize) -> Transaction {
    Transaction::build_signed(
        "pool",
        vec![(outpoint(n), &key())],
        (0..outputs)
            .map(|i| TxOutput {
                address: Address([i as u8; 20]),
                amount: 1 + i as u64,
            })
            .collect(),
    )
}

fn block_with(transactions: Vec<Transaction>) -> Block {
    Block {
        header: BlockHeader {
            version: 1,
            chain_id: "pool".into(),
            height: 1,
            round: 0,
            prev_hash: Hash256::ZERO,
            proposer: PublicKey([0; 32]),
            time_ms: 0,
            tx_root: Hash256::ZERO,
            full_tx_root: Hash256::ZERO,
            rewards_root: Hash256::ZERO,
            validator_set_hash: Hash256::ZERO,
            next_validator_set_hash: Hash256::ZERO,
            state_root: Hash256::ZERO,
        },
        transactions,
        rewards: vec![],
    }
}

/// A pool with room to spare holding `entries` (transaction, fee), inserted in order.
fn pool_holding(entries: &[(&Transaction, Amount)]) -> Mempool {
    let mut pool = Mempool::new(100, 1 << 20, TTL);
    for (tx, fee) in entries {
        pool.insert((*tx).clone(), *fee, 0).unwrap();
    }
    pool
}

#[test]
fn duplicates_are_refused() {
    let mut pool = Mempool::new(10, 1 << 20, TTL);
    let t = tx(1, 1);
    let txid = pool.insert(t.clone(), 100, 0).unwrap();
    assert_eq!(txid, t.txid());
    assert_eq!(
        pool.insert(t.clone(), 500, 0),
        Err(MempoolError::Duplicate(txid))
    );
    assert_eq!(pool.len(), 1);
    assert!(pool.contains(&txid));
    assert_eq!(pool.get(&txid), Some(&t));
    assert_eq!(pool.bytes(), t.encoded_len());
}

#[test]
fn conflicting_spends_are_refused() {
    let mut pool = Mempool::new(10, 1 << 20, TTL);
    let first = pool.insert(tx(1, 1), 100, 0).unwrap();
    let rival = tx(1, 2);
    assert_eq!(
        pool.insert(rival, 1_000_000, 0),
        Err(MempoolError::Conflict {
            outpoint: outpoint(1),
            existing: first
        })
    );
    assert_eq!(pool.len(), 1);
    assert!(pool.spends(&outpoint(1)));
    assert!(!pool.spends(&outpoint(2)));
}

#[test]
fn select_orders_by_fee_rate_and_respects_bounds() {
    let small_cheap = tx(1, 1);
    let small_rich = tx(2, 1);
    // Pays the most in total, but is large: a lower rate than small_rich.
    let large = tx(3, 40);
    let mid = tx(4, 1);
    let pool = pool_holding(&[
        (&small_cheap, 100),
        (&small_rich, 10_000),
        (&large, 20_000),
        (&mid, 1_000),
    ]);
    assert!(20_000 * small_rich.encoded_len() < 10_000 * large.encoded_len());

    let all = pool.select(100, 1 << 20);
    assert_eq!(
        all,
        vec![
            small_rich.clone(),
            large.clone(),
            mid.clone(),
            small_cheap.clone()
        ]
    );
    assert_eq!(
        pool.select(2, 1 << 20),
        vec![small_rich.clone(), large.clone()]
    );
    // The large one does not fit the byte budget; smaller, cheaper ones still do.
    let budget = small_rich.encoded_len() + mid.encoded_len() + small_cheap.encoded_len();
    assert_eq!(pool.select(100, budget), vec![small_rich, mid, small_cheap]);
    assert!(pool.select(0, 1 << 20).is_empty());
}

#[test]
fn a_full_pool_evicts_the_lowest_rate_for_a_better_one() {
    let mut pool = Mempool::new(3, 1 << 20, TTL);
    let a = pool.insert(tx(1, 1), 100, 0).unwrap();
    let b = pool.insert(tx(2, 1), 200, 0).unwrap();
    let c = pool.insert(tx(3, 1), 300, 0).unwrap();
    // Not better than the lowest: refused, nothing changes.
    assert_eq!(pool.insert(tx(4, 1), 100, 0), Err(MempoolError::Full));
    assert_eq!(pool.insert(tx(4, 1), 50, 0), Err(MempoolError::Full));
    assert_eq!(pool.len(), 3);
    let d = pool.insert(tx(4, 1), 150, 0).unwrap();
    assert!(!pool.contains(&a));
    assert!(pool.contains(&b) && pool.contains(&c) && pool.contains(&d));
    assert_eq!(pool.len(), 3);
    // The evicted transaction's input is free again.
    pool.insert(tx(1, 2), 1_000, 0).unwrap();
    assert!(!pool.contains(&d));
}

#[test]
fn the_byte_bound_evicts_as_many_as_needed_or_none() {
    let small = tx(1, 1).encoded_len();
    let big_tx = tx(9, 3);
    let big = big_tx.encoded_len();
    assert!(big < 2 * small);
    let mut pool = Mempool::new(100, 3 * small, TTL);
    let a = pool.insert(tx(1, 1), 10, 0).unwrap();
    let b = pool.insert(tx(2, 1), 20, 0).unwrap();
    let c = pool.insert(tx(3, 1), 1_000_000, 0).unwrap();
    assert_eq!(pool.bytes(), 3 * small);

    // Needs two evictions; it beats a's rate but not b's: refused as a whole.
    assert_eq!(
        pool.insert(big_tx.clone(), 15 * big as u64 / small as u64, 0),
        Err(MempoolError::Full)
    );
    assert!(pool.contains(&a) && pool.contains(&b));

    pool.insert(big_tx, 1_000, 0).unwrap();
    assert!(!pool.contains(&a) && !pool.contains(&b) && pool.contains(&c));
    assert!(pool.bytes() <= 3 * small);

    assert!(matches!(
        Mempool::new(10, small - 1, TTL).insert(tx(5, 1), 1, 0),
        Err(MempoolError::TooLarge { .. })
    ));
}

#[test]
fn a_block_removes_its_transactions_and_their_rivals() {
    let included = tx(1, 1);
    let rival_of_block = tx(2, 1);
    let unrelated = tx(3, 1);
    let mut pool = pool_holding(&[(&included, 100), (&rival_of_block, 100), (&unrelated, 100)]);
    let kept = unrelated.txid();
    // The block confirms `included` and another transaction spending outpoint(2).
    pool.remove_for_block(&block_with(vec![included.clone(), tx(2, 5)]));
    assert_eq!(pool.len(), 1);
    assert!(pool.contains(&kept));
    assert_eq!(pool.bytes(), pool.get(&kept).unwrap().encoded_len());
    // Outpoints freed by the removals can be used again.
    pool.insert(tx(2, 3), 100, 0).unwrap();
    assert_eq!(pool.len(), 2);
    assert!(pool.select(10, 1 << 20).iter().all(|t| t != &included));
}

#[test]
fn entries_expire_after_their_time_to_live() {
    let mut pool = Mempool::new(3, 1 << 20, 1_000);
    let old = pool.insert(tx(1, 1), 100, 0).unwrap();
    let mid = pool.insert(tx(2, 1), 100, 500).unwrap();
    let new = pool.insert(tx(3, 2), 100, 1_000).unwrap();
    let new_bytes = tx(3, 2).encoded_len();

    assert_eq!(pool.expire(999), 0);
    assert_eq!(pool.len(), 3);
    assert_eq!(pool.expire(1_000), 1);
    assert!(!pool.contains(&old) && pool.contains(&mid) && pool.contains(&new));
    // Its input, bytes and rank went with it: the output can be spent again.
    assert!(!pool.spends(&outpoint(1)));
    assert!(pool.select(10, 1 << 20).iter().all(|t| t.txid() != old));
    assert_eq!(pool.bytes(), tx(2, 1).encoded_len() + new_bytes);
    let again = pool.insert(tx(1, 3), 100, 1_000).unwrap();

    // A clock that went back expires nothing; a late one expires everything due at once.
    assert_eq!(pool.expire(0), 0);
    assert_eq!(pool.expire(2_000), 3);
    assert!(pool.is_empty());
    assert_eq!(pool.bytes(), 0);
    assert!(!pool.contains(&again) && !pool.spends(&outpoint(3)));
    // The room freed is usable again, up to the count bound.
    for n in 0..3 {
        pool.insert(tx(10 + n, 1), 100, 2_000).unwrap();
    }
    assert_eq!(pool.insert(tx(20, 1), 100, 2_000), Err(MempoolError::Full));
}

#[test]
fn evicted_or_included_entries_are_not_expired_again() {
    let mut pool = Mempool::new(2, 1 << 20, 1_000);
    pool.insert(tx(1, 1), 100, 0).unwrap();
    pool.insert(tx(2, 1), 200, 0).unwrap();
    // Evicts tx(1, 1).
    pool.insert(tx(3, 1), 300, 500).unwrap();
    pool.remove_for_block(&block_with(vec![tx(2, 1)]));
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.expire(1_000), 0);
    assert_eq!(pool.expire(1_500), 1);
    assert!(pool.is_empty());
}

/// A time to live longer than the clock can reach never expires anything.
#[test]
fn an_unbounded_time_to_live_never_expires() {
    let mut pool = Mempool::new(2, 1 << 20, u64::MAX);
    pool.insert(tx(1, 1), 100, 7).unwrap();
    assert_eq!(pool.expire(u64::MAX - 1), 0);
    assert_eq!(pool.len(), 1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn bounds_hold_and_the_pool_stays_conflict_free(
            ops in proptest::collection::vec(
                (0u32..12, 1usize..4, 0u64..10_000, 0u64..300, any::<bool>()),
                1..40,
            ),
            max_count in 1usize..6,
            max_small in 2usize..8,
            ttl in 0u64..1_000,
        ) {
            let max_bytes = max_small * tx(0, 1).encoded_len();
            let mut pool = Mempool::new(max_count, max_bytes, ttl);
            let mut admitted = HashMap::new();
            let mut now = 0u64;
            for (input, outputs, fee, elapsed, expire) in ops {
                now += elapsed;
                let t = tx(input, outputs);
                if pool.insert(t.clone(), fee, now).is_ok() {
                    admitted.insert(t.txid(), now);
                }
                if expire {
                    let due = admitted
                        .iter()
                        .filter(|(txid, at)| pool.contains(txid) && **at + ttl <= now)
                        .count();
                    prop_assert_eq!(pool.expire(now), due);
                    for (txid, at) in &admitted {
                        prop_assert!(!pool.contains(txid) || at + ttl > now);
                    }
                }
                prop_assert!(pool.len() <= max_count);
                prop_assert!(pool.bytes() <= max_bytes);
                let selected = pool.select(usize::MAX, usize::MAX);
                prop_assert_eq!(selected.len(), pool.len());
                let spent: HashSet<OutPoint> =
                    selected.iter().flat_map(|t| t.inputs.iter().map(|i| i.prev)).collect();
                prop_assert_eq!(spent.len(), selected.len());
                let bytes: usize = selected.iter().map(|t| t.encoded_len()).sum();
                prop_assert_eq!(bytes, pool.bytes());
            }
        }
    }
}

#[test]
fn a_block_that_registers_a_key_or_ends_a_stake_drops_pooled_rivals() {
    let consensus = Keypair::from_seed([43; 32]);
    let register = |n: u32| {
        Transaction::build_registration(
            "pool",
            vec![(outpoint(n), &key())],
            &consensus,
            Address([1; 20]),
            timecoin_ledger::MIN_COLLATERAL,
            vec![],
        )
    };
    let deregister = |n: u32| {
        Transaction::build_deregistration(
            "pool",
            vec![(outpoint(n), &key())],
            vec![TxOutput {
                address: Address([1; 20]),
                amount: 1,
            }],
            outpoint(99),
        )
    };
    let mut pool = pool_holding(&[(&register(2), 100), (&deregister(4), 100), (&tx(5, 1), 100)]);
    pool.remove_for_block(&block_with(vec![register(1), deregister(3)]));
    assert_eq!(pool.len(), 1);
    assert!(pool.contains(&tx(5, 1).txid()));
}
