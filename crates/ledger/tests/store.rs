//! The redb store: genesis, applying blocks, reopening, atomicity of apply, indexes and the
//! small side tables.

mod common;

use common::*;
use std::sync::Arc;
use timecoin_ledger::{
    reward_outpoint, reward_outputs, subsidy, Block, BlockError, Genesis, GenesisError, OutPoint,
    Store, StoreError, TxError, TxOutput, DEFAULT_MIN_OUTPUT,
};
use timecoin_types::{Address, Certificate, CertificateError, Hash256, Keypair, COIN};

#[test]
fn genesis_is_stored_once_and_other_geneses_are_refused() {
    let chain = Chain::new();
    let genesis_block = chain.genesis.genesis_block();
    assert_eq!(chain.store.tip().unwrap(), (0, genesis_block.hash()));
    assert_eq!(chain.store.block(0).unwrap(), Some(genesis_block.clone()));
    assert_eq!(
        chain.store.block_hash(0).unwrap(),
        Some(genesis_block.hash())
    );
    assert_eq!(
        chain.store.height_of(&genesis_block.hash()).unwrap(),
        Some(0)
    );
    assert_eq!(chain.store.certificate(0).unwrap(), None);
    assert_eq!(
        chain.store.balance(&address(&chain.wallet)).unwrap(),
        ALLOCATIONS as u64 * ALLOCATION
    );
    assert_eq!(
        chain.store.unspent(&address(&chain.wallet)).unwrap().len(),
        ALLOCATIONS
    );
    assert_eq!(
        chain.store.validator_set(1).unwrap(),
        chain.genesis.validator_set()
    );
    assert_eq!(
        chain.store.validator_set(0).unwrap(),
        chain.genesis.validator_set()
    );
    // Sets are known ACTIVATION_DELAY (2) heights past the tip.
    assert_eq!(
        chain.store.validator_set(2).unwrap(),
        chain.genesis.validator_set()
    );
    assert!(matches!(
        chain.store.validator_set(3),
        Err(StoreError::UnknownHeight { height: 3, tip: 0 })
    ));

    // Idempotent for the same genesis.
    chain.store.init_genesis(&chain.genesis).unwrap();
    assert_eq!(chain.store.tip().unwrap().0, 0);

    let mut other = chain.genesis.clone();
    other.min_fee_per_byte += 1;
    assert!(matches!(
        chain.store.init_genesis(&other),
        Err(StoreError::GenesisMismatch { .. })
    ));
    let block = chain.build(vec![]);
    assert!(matches!(
        chain
            .store
            .apply_block(&block, &chain.certify(&block), &other),
        Err(StoreError::GenesisMismatch { .. })
    ));
}

#[test]
fn a_store_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
}

#[test]
fn an_empty_store_reports_it_is_not_initialized() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("empty.redb")).unwrap();
    assert!(matches!(store.tip(), Err(StoreError::NotInitialized)));
    assert!(matches!(
        store.init_genesis(&Genesis {
            chain_id: String::new(),
            ..genesis()
        }),
        Err(StoreError::Genesis(GenesisError::ChainId(0)))
    ));
    assert!(matches!(store.tip(), Err(StoreError::NotInitialized)));
}

#[test]
fn applying_blocks_moves_coins_pays_rewards_and_indexes_everything() {
    let chain = Chain::new();
    let bob = Keypair::from_seed([200; 32]);
    let tx = chain.spend_allocation(0, address(&bob), 7 * COIN);
    let fee = chain
        .store
        .validate_transaction(&tx, &chain.genesis)
        .unwrap();
    assert_eq!(fee, MIN_FEE);
    let block = chain.commit(vec![tx.clone()]);
    assert_eq!(block.transactions, vec![tx.clone()]);

    let txid = tx.txid();
    assert_eq!(chain.store.tip().unwrap(), (1, block.hash()));
    assert_eq!(chain.store.block(1).unwrap(), Some(block.clone()));
    assert_eq!(chain.store.height_of(&block.hash()).unwrap(), Some(1));
    assert_eq!(chain.store.block_hash(1).unwrap(), Some(block.hash()));
    assert_eq!(chain.store.block_hash(2).unwrap(), None);
    assert_eq!(chain.store.transaction_height(&txid).unwrap(), Some(1));
    let location = chain.store.transaction(&txid).unwrap().unwrap();
    assert_eq!(
        (location.height, location.index, location.fee),
        (1, 0, MIN_FEE)
    );
    assert_eq!(chain.store.block_fees(1).unwrap(), Some(vec![MIN_FEE]));
    assert_eq!(chain.store.transaction_fee(&txid).unwrap(), Some(MIN_FEE));
    assert_eq!(chain.store.transaction_fee(&Hash256::ZERO).unwrap(), None);
    assert!(chain
        .store
        .certificate(1)
        .unwrap()
        .unwrap()
        .verify_for(CHAIN, &chain.genesis.validator_set(), 1, &block.hash())
        .is_ok());

    assert_eq!(chain.store.utxo(&chain.allocation(0)).unwrap(), None);
    assert_eq!(chain.store.balance(&address(&bob)).unwrap(), 7 * COIN);
    assert_eq!(
        chain.store.balance(&address(&chain.wallet)).unwrap(),
        ALLOCATIONS as u64 * ALLOCATION - 7 * COIN - MIN_FEE
    );
    assert_eq!(
        chain.store.unspent(&address(&bob)).unwrap(),
        vec![(OutPoint { txid, index: 0 }, tx.outputs[0])]
    );

    // Rewards: subsidy + fees, split as every node computes, spendable at reward outpoints.
    let set = chain.store.validator_set(1).unwrap();
    let expected = reward_outputs(&set, &block.header.proposer, subsidy(1) + MIN_FEE);
    assert_eq!(block.rewards, expected);
    for (i, output) in expected.iter().enumerate() {
        assert_eq!(
            chain.store.utxo(&reward_outpoint(1, i as u32)).unwrap(),
            Some(*output)
        );
    }
    let paid: u64 = expected.iter().map(|o| o.amount).sum();
    assert_eq!(paid, subsidy(1) + MIN_FEE);

    // The spent allocation cannot be spent again.
    let again = chain.spend_allocation(0, address(&bob), COIN);
    assert_eq!(
        chain.store.validate_transaction(&again, &chain.genesis),
        Err(TxError::MissingInput(chain.allocation(0)))
    );
    assert_eq!(chain.store.validator_set(2).unwrap(), set);
}

#[test]
fn reopening_the_file_finds_the_same_state() {
    let mut chain = Chain::new();
    let bob = Keypair::from_seed([201; 32]);
    let b1 = chain.commit(vec![chain.spend_allocation(1, address(&bob), COIN)]);
    let b2 = chain.commit(vec![chain.spend_allocation(2, address(&bob), 2 * COIN)]);
    let cert2 = chain.store.certificate(2).unwrap();
    let wallet_utxos = chain.store.unspent(&address(&chain.wallet)).unwrap();

    chain.reopen();
    assert_eq!(chain.store.tip().unwrap(), (2, b2.hash()));
    assert_eq!(chain.store.block(1).unwrap(), Some(b1));
    assert_eq!(chain.store.block_hash(2).unwrap(), Some(b2.hash()));
    assert_eq!(chain.store.block(2).unwrap(), Some(b2));
    assert_eq!(chain.store.certificate(2).unwrap(), cert2);
    assert_eq!(chain.store.balance(&address(&bob)).unwrap(), 3 * COIN);
    assert_eq!(
        chain.store.unspent(&address(&chain.wallet)).unwrap(),
        wallet_utxos
    );
    assert_eq!(
        chain.store.validator_set(3).unwrap(),
        chain.genesis.validator_set()
    );
    // The chain goes on from the reopened file.
    chain.commit(vec![]);
    assert_eq!(chain.height(), 3);
}

/// Everything a failed apply must leave alone.
fn snapshot(chain: &Chain) -> (u64, Vec<(OutPoint, TxOutput)>, Option<Vec<u8>>) {
    (
        chain.height(),
        chain.store.unspent(&address(&chain.wallet)).unwrap(),
        chain
            .store
            .block(chain.height() + 1)
            .unwrap()
            .map(|b| timecoin_types::codec::encode(&b)),
    )
}

#[test]
fn apply_refuses_wrong_heights_and_bad_certificates_without_writing() {
    let mut chain = Chain::new();
    let block = chain.build(vec![chain.spend_allocation(
        0,
        address(&chain.wallet),
        COIN,
    )]);
    let before = snapshot(&chain);

    // Two of four validators hold 30 of 100 weight: not a quorum.
    let weak = chain.certify_by(&block, &chain.validators[..2]);
    assert!(matches!(
        chain.store.apply_block(&block, &weak, &chain.genesis),
        Err(StoreError::Certificate(
            CertificateError::InsufficientWeight { .. }
        ))
    ));
    // A valid certificate, but for another block.
    let other = chain.build(vec![]);
    assert!(matches!(
        chain
            .store
            .apply_block(&block, &chain.certify(&other), &chain.genesis),
        Err(StoreError::Certificate(CertificateError::WrongBlock { .. }))
    ));
    // Signed by outsiders.
    let outsiders: Vec<Keypair> = (150..154u8).map(|i| Keypair::from_seed([i; 32])).collect();
    assert!(matches!(
        chain.store.apply_block(
            &block,
            &chain.certify_by(&block, &outsiders),
            &chain.genesis
        ),
        Err(StoreError::Certificate(CertificateError::UnknownValidator(
            _
        )))
    ));
    // Not tip + 1.
    let mut skip = block.clone();
    skip.header.height = 2;
    assert!(matches!(
        chain.apply_certified(&skip),
        Err(StoreError::NotNextHeight {
            expected: 1,
            got: 2
        })
    ));
    assert_eq!(snapshot(&chain), before);
    chain.reopen();
    assert_eq!(snapshot(&chain), before);

    // The same block with a good certificate applies; after drop + reopen it is the tip.
    chain.apply_certified(&block).unwrap();
    chain.reopen();
    assert_eq!(chain.store.tip().unwrap(), (1, block.hash()));
    assert!(matches!(
        chain.apply_certified(&block),
        Err(StoreError::NotNextHeight {
            expected: 2,
            got: 1
        })
    ));
}

#[test]
fn a_failure_after_spending_has_begun_rolls_the_whole_block_back() {
    let mut chain = Chain::new();
    let carol = Keypair::from_seed([202; 32]);
    let before = snapshot(&chain);

    // Transaction 0 is fine; transaction 1 spends the same allocation again. Apply removes
    // transaction 0's input inside the write transaction before it finds the double spend.
    let first = chain.spend_allocation(3, address(&carol), COIN);
    let second = chain.spend_allocation(3, address(&carol), 2 * COIN);
    let mut block = chain.build(vec![first.clone()]);
    block.transactions.push(second);
    reseal(&mut block);
    let err = chain.apply_certified(&block).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidBlock(BlockError::DoubleSpend { index: 1, .. })
        ),
        "{err}"
    );
    assert!(chain.store.utxo(&chain.allocation(3)).unwrap().is_some());
    assert_eq!(chain.store.transaction_height(&first.txid()).unwrap(), None);
    assert_eq!(snapshot(&chain), before);

    // Valid spends, wrong rewards: found only after every input was spent.
    let mut block = chain.build(vec![first.clone()]);
    block.rewards[0].amount += 1;
    reseal(&mut block);
    let err = chain.apply_certified(&block).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidBlock(BlockError::WrongRewards { .. })
        ),
        "{err}"
    );
    assert_eq!(snapshot(&chain), before);
    assert_eq!(chain.store.balance(&address(&carol)).unwrap(), 0);

    chain.reopen();
    assert_eq!(snapshot(&chain), before);
    assert!(chain.store.utxo(&chain.allocation(3)).unwrap().is_some());
    assert_eq!(
        chain.store.tip().unwrap().1,
        chain.genesis.genesis_block().hash()
    );
}

#[test]
fn build_block_skips_candidates_that_do_not_validate() {
    let chain = Chain::new();
    let dave = Keypair::from_seed([203; 32]);
    let good = chain.spend_allocation(0, address(&dave), COIN);
    let conflicting = chain.spend_allocation(0, address(&dave), 2 * COIN);
    let unknown = chain.pay(
        OutPoint {
            txid: Hash256::digest(b"nowhere"),
            index: 0,
        },
        &chain.wallet,
        ALLOCATION,
        address(&dave),
        COIN,
        MIN_FEE,
    );
    let paying = |fee| {
        chain.pay(
            chain.allocation(1),
            &chain.wallet,
            ALLOCATION,
            address(&dave),
            COIN,
            fee,
        )
    };
    let cheap = paying(chain.genesis.min_fee_for(&paying(0)) - 1);
    let dust = chain.spend_allocation(3, address(&dave), DEFAULT_MIN_OUTPUT - 1);
    let mut forged = chain.spend_allocation(2, address(&dave), COIN);
    forged.inputs[0].signature.0[0] ^= 1;
    let stranger = chain.pay(
        chain.allocation(4),
        &dave,
        ALLOCATION,
        address(&dave),
        COIN,
        MIN_FEE,
    );
    let also_good = chain.spend_allocation(5, address(&dave), COIN);
    let block = chain.build(vec![
        good.clone(),
        conflicting,
        unknown,
        cheap,
        dust,
        forged,
        stranger,
        also_good.clone(),
    ]);
    assert_eq!(block.transactions, vec![good, also_good]);
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Ok(())
    );
}

#[test]
fn signer_state_and_evidence_survive_reopening() {
    let mut chain = Chain::new();
    assert_eq!(chain.store.load_signer_state().unwrap(), None);
    chain.store.save_signer_state(b"first").unwrap();
    chain.store.save_signer_state(b"second").unwrap();
    chain.store.put_evidence(5, b"e5a").unwrap();
    chain.store.put_evidence(3, b"e3").unwrap();
    chain.store.put_evidence(5, b"e5b").unwrap();
    chain.store.put_evidence(9, b"e9").unwrap();
    chain.reopen();
    assert_eq!(
        chain.store.load_signer_state().unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(
        chain.store.evidence(0, 10).unwrap(),
        vec![
            (3, b"e3".to_vec()),
            (5, b"e5a".to_vec()),
            (5, b"e5b".to_vec()),
            (9, b"e9".to_vec())
        ]
    );
    assert_eq!(
        chain.store.evidence(4, 2).unwrap(),
        vec![(5, b"e5a".to_vec()), (5, b"e5b".to_vec())]
    );
    assert!(chain.store.evidence(10, 5).unwrap().is_empty());
}

#[test]
fn readers_on_other_threads_see_whole_blocks_only() {
    let chain = Chain::new();
    let store = Arc::new(Store::open(&chain.dir.path().join("shared.redb")).unwrap());
    store.init_genesis(&chain.genesis).unwrap();
    let total = ALLOCATIONS as u64 * ALLOCATION;
    let erin = Address::of(&Keypair::from_seed([204; 32]).public());
    std::thread::scope(|scope| {
        let reader = {
            let store = Arc::clone(&store);
            scope.spawn(move || {
                // Whatever block the reader sees, the wallet's coins plus erin's plus the fees
                // paid so far are the allocations: never a half-applied block.
                for _ in 0..200 {
                    let (height, _) = store.tip().unwrap();
                    let wallet = store.balance(&address(&wallet_key())).unwrap();
                    let erin_balance = store.balance(&erin).unwrap();
                    let (height_after, _) = store.tip().unwrap();
                    if height == height_after {
                        let fees = height * MIN_FEE;
                        assert_eq!(wallet + erin_balance + fees, total, "at height {height}");
                    }
                }
            })
        };
        for i in 0..ALLOCATIONS as u32 {
            let tx = chain.spend_allocation(i, erin, COIN);
            let height = store.tip().unwrap().0 + 1;
            let proposer = store
                .validator_set(height)
                .unwrap()
                .proposer(height, 0)
                .public_key;
            let block = store
                .build_block(
                    &chain.genesis,
                    0,
                    proposer,
                    chain.genesis.slot_time_ms(height),
                    vec![tx],
                )
                .unwrap();
            store
                .apply_block(&block, &chain.certify(&block), &chain.genesis)
                .unwrap();
        }
        reader.join().unwrap();
    });
    assert_eq!(store.balance(&erin).unwrap(), ALLOCATIONS as u64 * COIN);
}

#[test]
fn genesis_file_round_trips_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let g = genesis();
    g.save(&path).unwrap();
    let loaded = Genesis::load(&path).unwrap();
    assert_eq!(loaded, g);
    assert_eq!(loaded.hash(), g.hash());
    assert_eq!(g.slot_time_ms(0), g.genesis_time_ms);
    assert_eq!(g.slot_time_ms(3), g.genesis_time_ms + 3_000);
    assert_eq!(g.slot_time_ms(u64::MAX), u64::MAX);

    let genesis_block = g.genesis_block();
    assert_eq!(genesis_block.header.height, 0);
    assert_eq!(genesis_block.rewards, g.allocations);
    assert_eq!(
        genesis_block.header.validator_set_hash,
        g.validator_set().hash()
    );

    type IsExpected = fn(&GenesisError) -> bool;
    let cases: Vec<(Genesis, IsExpected)> = vec![
        (
            Genesis {
                chain_id: String::new(),
                ..genesis()
            },
            |e| matches!(e, GenesisError::ChainId(0)),
        ),
        (
            Genesis {
                chain_id: "x".repeat(65),
                ..genesis()
            },
            |e| matches!(e, GenesisError::ChainId(65)),
        ),
        (
            Genesis {
                validators: vec![],
                ..genesis()
            },
            |e| matches!(e, GenesisError::Validators(_)),
        ),
        (
            Genesis {
                allocations: vec![TxOutput {
                    address: Address([1; 20]),
                    amount: 0,
                }],
                ..genesis()
            },
            |e| matches!(e, GenesisError::ZeroAllocation(0)),
        ),
        (
            Genesis {
                allocations: vec![
                    TxOutput {
                        address: Address([1; 20]),
                        amount: u64::MAX,
                    };
                    2
                ],
                ..genesis()
            },
            |e| matches!(e, GenesisError::AllocationOverflow),
        ),
    ];
    for (bad, expected) in cases {
        bad.save(&path).unwrap();
        let err = Genesis::load(&path).unwrap_err();
        assert!(expected(&err), "{err}");
    }
    let mut duplicated = genesis();
    duplicated.validators[1].public_key = duplicated.validators[0].public_key;
    assert!(matches!(
        duplicated.validate(),
        Err(GenesisError::Validators(_))
    ));

    std::fs::write(&path, "{ not json").unwrap();
    assert!(matches!(
        Genesis::load(&path),
        Err(GenesisError::Json { .. })
    ));
    assert!(matches!(
        Genesis::load(&dir.path().join("missing.json")),
        Err(GenesisError::Io { .. })
    ));
}

#[test]
fn genesis_files_without_a_minimum_output_load_with_the_default_and_keep_their_hash() {
    let genesis = genesis();
    assert_eq!(genesis.min_output, DEFAULT_MIN_OUTPUT);
    let old_style = serde_json::to_value(&genesis).unwrap();
    assert!(old_style.get("min_output").is_none());
    assert_eq!(old_style["min_fee_per_byte"], MIN_FEE_PER_BYTE);
    let loaded: Genesis = serde_json::from_value(old_style).unwrap();
    assert_eq!(loaded, genesis);
    assert_eq!(loaded.hash(), genesis.hash());

    let custom = Genesis {
        min_output: 1,
        ..genesis.clone()
    };
    let json = serde_json::to_value(&custom).unwrap();
    assert_eq!(json["min_output"], 1);
    assert_eq!(serde_json::from_value::<Genesis>(json).unwrap(), custom);
    assert_ne!(custom.hash(), genesis.hash());
}

#[test]
fn a_run_of_blocks_applies_in_one_transaction_whole_or_not_at_all() {
    // A second chain builds the blocks; the store under test applies them as a run.
    let source = Chain::new();
    let target = Chain::new();
    let to = Address::of(&Keypair::from_seed([205; 32]).public());
    let blocks: Vec<Block> = (0..4)
        .map(|i| source.commit(vec![source.spend_allocation(i, to, COIN)]))
        .collect();
    let certificates: Vec<Certificate> = blocks.iter().map(|b| source.certify(b)).collect();
    let run = |range: std::ops::Range<usize>, forge_last: bool| {
        let mut certs = certificates[range.clone()].to_vec();
        if forge_last {
            let last = certs.last_mut().unwrap();
            last.signatures.truncate(1);
        }
        let pairs: Vec<(&Block, &Certificate)> = blocks[range].iter().zip(&certs).collect();
        target.store.apply_blocks(&pairs, &target.genesis)
    };

    // The third block's certificate is one signature: the whole run is refused.
    let before = snapshot(&target);
    let err = run(0..3, true).unwrap_err();
    assert!(matches!(err, StoreError::Certificate(_)), "{err}");
    assert_eq!(snapshot(&target), before, "nothing of the run was written");

    run(0..3, false).unwrap();
    assert_eq!(target.height(), 3);
    run(3..4, false).unwrap();
    assert_eq!(target.store.tip().unwrap(), source.store.tip().unwrap());
    assert_eq!(
        target.store.recompute_state().unwrap().root(),
        source.store.recompute_state().unwrap().root()
    );
    assert_eq!(target.store.balance(&to).unwrap(), 4 * COIN);
}
