//! One test per rejection reason, for transactions and for blocks.

mod common;

use common::*;
use timecoin_ledger::{
    check_block_body, check_transaction_stateless, reward_outpoint, Block, BlockError, Genesis,
    OutPoint, StoreError, Transaction, TxError, TxOutput, MAX_BLOCK_TRANSACTIONS, MAX_TX_INPUTS,
    MAX_TX_OUTPUTS,
};
use timecoin_types::{Address, Hash256, Keypair, COIN};

fn someone() -> Address {
    Address::of(&Keypair::from_seed([210; 32]).public())
}

fn outpoints(n: usize) -> Vec<OutPoint> {
    (0..n)
        .map(|i| OutPoint {
            txid: Hash256::digest(&(i as u64).to_be_bytes()),
            index: i as u32,
        })
        .collect()
}

/// A transaction of the wallet spending `inputs` into `outputs`.
fn wallet_tx(inputs: Vec<OutPoint>, outputs: Vec<TxOutput>) -> Transaction {
    let key = wallet_key();
    Transaction::build_signed(
        CHAIN,
        inputs.into_iter().map(|op| (op, &key)).collect(),
        outputs,
    )
}

fn out(amount: u64) -> TxOutput {
    TxOutput {
        address: someone(),
        amount,
    }
}

fn stateless(tx: &Transaction) -> Result<(), TxError> {
    check_transaction_stateless(tx, CHAIN)
}

#[test]
fn tx_without_inputs_or_outputs() {
    assert_eq!(
        stateless(&wallet_tx(vec![], vec![out(1)])),
        Err(TxError::NoInputs)
    );
    assert_eq!(
        stateless(&wallet_tx(outpoints(1), vec![])),
        Err(TxError::NoOutputs)
    );
}

#[test]
fn tx_with_too_many_inputs_or_outputs() {
    assert_eq!(
        stateless(&wallet_tx(outpoints(MAX_TX_INPUTS + 1), vec![out(1)])),
        Err(TxError::TooManyInputs(MAX_TX_INPUTS + 1))
    );
    assert_eq!(
        stateless(&wallet_tx(outpoints(1), vec![out(1); MAX_TX_OUTPUTS + 1])),
        Err(TxError::TooManyOutputs(MAX_TX_OUTPUTS + 1))
    );
    assert_eq!(
        stateless(&wallet_tx(
            outpoints(MAX_TX_INPUTS),
            vec![out(1); MAX_TX_OUTPUTS]
        )),
        Ok(())
    );
}

#[test]
fn tx_too_large() {
    let tx = wallet_tx(outpoints(1_000), vec![out(1)]);
    assert!(matches!(stateless(&tx), Err(TxError::TooLarge(n)) if n > 100 * 1024));
}

#[test]
fn tx_with_zero_or_overflowing_outputs() {
    assert_eq!(
        stateless(&wallet_tx(outpoints(1), vec![out(1), out(0)])),
        Err(TxError::ZeroOutput(1))
    );
    assert_eq!(
        stateless(&wallet_tx(outpoints(1), vec![out(u64::MAX), out(1)])),
        Err(TxError::OutputOverflow)
    );
}

#[test]
fn tx_spending_one_output_twice() {
    let op = outpoints(1)[0];
    assert_eq!(
        stateless(&wallet_tx(vec![op, op], vec![out(1)])),
        Err(TxError::DuplicateInput(op))
    );
}

#[test]
fn tx_with_bad_signatures() {
    let mut tampered = wallet_tx(outpoints(2), vec![out(5)]);
    tampered.outputs[0].amount = 6;
    assert_eq!(stateless(&tampered), Err(TxError::BadSignature(0)));

    let mut swapped = wallet_tx(outpoints(2), vec![out(5)]);
    swapped.inputs[1].signature.0[10] ^= 0x40;
    assert_eq!(stateless(&swapped), Err(TxError::BadSignature(1)));

    let key = wallet_key();
    let other_chain =
        Transaction::build_signed("otherchain", vec![(outpoints(1)[0], &key)], vec![out(5)]);
    assert_eq!(stateless(&other_chain), Err(TxError::BadSignature(0)));
}

#[test]
fn tx_spending_unknown_or_spent_outputs() {
    let chain = Chain::new();
    let unknown = outpoints(1)[0];
    assert_eq!(
        chain
            .store
            .validate_transaction(&wallet_tx(vec![unknown], vec![out(COIN)]), &chain.genesis),
        Err(TxError::MissingInput(unknown))
    );
    let tx = chain.spend_allocation(0, someone(), COIN);
    chain.commit(vec![tx]);
    let again = chain.spend_allocation(0, someone(), 2 * COIN);
    assert_eq!(
        chain.store.validate_transaction(&again, &chain.genesis),
        Err(TxError::MissingInput(chain.allocation(0)))
    );
}

#[test]
fn tx_signed_by_a_key_that_does_not_own_the_output() {
    let chain = Chain::new();
    let thief = Keypair::from_seed([211; 32]);
    let tx = chain.pay(
        chain.allocation(0),
        &thief,
        ALLOCATION,
        someone(),
        COIN,
        MIN_FEE,
    );
    assert_eq!(stateless(&tx), Ok(()));
    assert_eq!(
        chain.store.validate_transaction(&tx, &chain.genesis),
        Err(TxError::WrongOwner {
            index: 0,
            key_address: Address::of(&thief.public()),
            owner: address(&chain.wallet),
        })
    );
}

#[test]
fn tx_paying_more_than_its_inputs() {
    let chain = Chain::new();
    let tx = wallet_tx(vec![chain.allocation(0)], vec![out(ALLOCATION + 1)]);
    assert_eq!(
        chain.store.validate_transaction(&tx, &chain.genesis),
        Err(TxError::InsufficientFunds {
            inputs: ALLOCATION,
            outputs: ALLOCATION + 1
        })
    );
}

#[test]
fn tx_with_a_fee_below_the_minimum() {
    let chain = Chain::new();
    let paying = |fee| {
        chain.pay(
            chain.allocation(0),
            &chain.wallet,
            ALLOCATION,
            someone(),
            COIN,
            fee,
        )
    };
    // The size does not depend on the fee: the change stays a 9-byte CBOR integer.
    let size = paying(0).encoded_len();
    let min = MIN_FEE_PER_BYTE * size as u64;
    assert_eq!(chain.genesis.min_fee_for(&paying(0)), min);
    assert_eq!(
        chain
            .store
            .validate_transaction(&paying(min - 1), &chain.genesis),
        Err(TxError::FeeTooLow {
            fee: min - 1,
            min,
            size
        })
    );
    assert_eq!(
        chain
            .store
            .validate_transaction(&paying(min), &chain.genesis),
        Ok(min)
    );
}

/// The minimum is per byte: the fee enough for a transfer is too little for the same
/// transfer with more outputs, and the rate scales it.
#[test]
fn the_minimum_fee_grows_with_the_size_and_the_rate() {
    let chain = Chain::with_genesis(Genesis {
        min_fee_per_byte: 10,
        ..genesis()
    });
    let with_outputs = |outputs: usize, fee: u64| {
        let mut outs = vec![out(COIN); outputs];
        outs.push(TxOutput {
            address: address(&chain.wallet),
            amount: ALLOCATION - outputs as u64 * COIN - fee,
        });
        wallet_tx(vec![chain.allocation(0)], outs)
    };
    let small = with_outputs(1, 0).encoded_len() as u64;
    let large = with_outputs(5, 0).encoded_len() as u64;
    assert!(large > small);
    assert_eq!(chain.genesis.min_fee_for(&with_outputs(1, 0)), 10 * small);
    assert_eq!(
        chain
            .store
            .validate_transaction(&with_outputs(1, 10 * small), &chain.genesis),
        Ok(10 * small)
    );
    assert_eq!(
        chain
            .store
            .validate_transaction(&with_outputs(5, 10 * small), &chain.genesis),
        Err(TxError::FeeTooLow {
            fee: 10 * small,
            min: 10 * large,
            size: large as usize
        })
    );
    // Block building leaves out the underpaying one; validation refuses a block with it.
    let underpaid = with_outputs(5, 10 * small);
    assert!(chain.build(vec![underpaid.clone()]).transactions.is_empty());
    let mut block = chain.build(vec![]);
    block.transactions.push(underpaid);
    reseal(&mut block);
    assert!(matches!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Err(BlockError::Transaction {
            error: TxError::FeeTooLow { .. },
            ..
        })
    ));

    // A rate so high the product overflows saturates instead of wrapping.
    let absurd = Genesis {
        min_fee_per_byte: u64::MAX / 2,
        ..genesis()
    };
    assert_eq!(absurd.min_fee_for(&with_outputs(1, 0)), u64::MAX);
}

#[test]
fn tx_with_an_output_below_the_minimum() {
    let chain = Chain::new();
    let min = chain.genesis.min_output;
    let paying = |amount| chain.spend_allocation(0, someone(), amount);
    let small = paying(min - 1);
    // Not a stateless rule: the minimum is the genesis's.
    assert_eq!(stateless(&small), Ok(()));
    let error = TxError::OutputTooSmall {
        index: 0,
        amount: min - 1,
        min,
    };
    assert_eq!(
        chain.store.validate_transaction(&small, &chain.genesis),
        Err(error.clone())
    );
    assert!(chain.build(vec![small.clone()]).transactions.is_empty());
    let mut block = chain.build(vec![]);
    block.transactions.push(small);
    reseal(&mut block);
    let refused = BlockError::Transaction {
        index: 0,
        txid: block.transactions[0].txid(),
        error,
    };
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Err(refused.clone())
    );
    assert!(matches!(
        chain.apply_certified(&block),
        Err(StoreError::InvalidBlock(e)) if e == refused
    ));

    // Exactly the minimum is enough; change below it is refused as well.
    assert_eq!(
        chain
            .store
            .validate_transaction(&paying(min), &chain.genesis),
        Ok(MIN_FEE)
    );
    let small_change = chain.pay(
        chain.allocation(0),
        &chain.wallet,
        ALLOCATION,
        someone(),
        ALLOCATION - MIN_FEE - 1,
        MIN_FEE,
    );
    assert_eq!(
        chain
            .store
            .validate_transaction(&small_change, &chain.genesis),
        Err(TxError::OutputTooSmall {
            index: 1,
            amount: 1,
            min
        })
    );
}

#[test]
fn reward_outputs_are_not_held_to_the_minimum_output() {
    let chain = Chain::with_genesis(Genesis {
        min_output: u64::MAX,
        ..genesis()
    });
    let block = chain.commit(vec![]);
    assert!(!block.rewards.is_empty());
    assert!(block.rewards.iter().all(|o| o.amount < u64::MAX));
}

#[test]
fn tx_whose_inputs_overflow() {
    // The wallet holds almost all of u64 at genesis and also receives validator 0's
    // rewards; spending both overflows the input sum.
    let mut genesis = genesis();
    genesis.allocations = vec![TxOutput {
        address: address(&wallet_key()),
        amount: u64::MAX - COIN,
    }];
    for v in &mut genesis.validators {
        v.reward_address = address(&wallet_key());
    }
    let chain = Chain::with_genesis(genesis);
    let block = chain.commit(vec![]);
    assert!(!block.rewards.is_empty());
    let tx = wallet_tx(
        vec![reward_outpoint(0, 0), reward_outpoint(1, 0)],
        vec![out(COIN)],
    );
    assert_eq!(
        chain.store.validate_transaction(&tx, &chain.genesis),
        Err(TxError::InputOverflow)
    );
}

/// A valid next block with one transaction, and the chain.
fn valid_block() -> (Chain, Block) {
    let chain = Chain::new();
    chain.commit(vec![]);
    let block = chain.build(vec![chain.spend_allocation(0, someone(), COIN)]);
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Ok(())
    );
    (chain, block)
}

/// What `validate_block` says of [`valid_block`]'s block after `edit`.
fn check_edited(edit: impl FnOnce(&Chain, &mut Block)) -> Result<(), BlockError> {
    let (chain, mut block) = valid_block();
    edit(&chain, &mut block);
    chain
        .store
        .validate_block(&block, &chain.genesis, chain.now())
}

/// An edit for [`check_edited`]: one byte of the first transaction's first input signature
/// changed, the block resealed around it.
fn forge_a_signature(_: &Chain, block: &mut Block) {
    block.transactions[0].inputs[0].signature.0[0] ^= 1;
    reseal(block);
}

/// An edit for [`check_edited`]: a transaction paying a fee of 1, too low, added.
fn add_an_underpaying_transaction(chain: &Chain, block: &mut Block) {
    block.transactions.push(chain.pay(
        chain.allocation(1),
        &chain.wallet,
        ALLOCATION,
        someone(),
        COIN,
        1,
    ));
    reseal(block);
}

/// An edit for [`check_edited`]: a transaction spending an output that does not exist added.
fn add_a_transaction_without_its_input(_: &Chain, block: &mut Block) {
    block
        .transactions
        .push(wallet_tx(vec![outpoints(1)[0]], vec![out(COIN)]));
    reseal(block);
}

/// An edit for [`check_edited`]: a second spend of allocation 0, which the block's own
/// transaction spends already, added.
fn add_a_double_spend(chain: &Chain, block: &mut Block) {
    block
        .transactions
        .push(chain.spend_allocation(0, someone(), 3 * COIN));
    reseal(block);
}

#[test]
fn block_for_another_chain() {
    assert!(matches!(
        check_edited(|_, block| block.header.chain_id = "elsewhere".into()),
        Err(BlockError::WrongChain { .. })
    ));
}

#[test]
fn block_at_the_wrong_height() {
    assert_eq!(
        check_edited(|_, block| block.header.height = 3),
        Err(BlockError::WrongHeight {
            expected: 2,
            got: 3
        })
    );
}

#[test]
fn block_on_the_wrong_parent() {
    assert!(matches!(
        check_edited(|chain, block| block.header.prev_hash = chain.genesis.genesis_block().hash()),
        Err(BlockError::WrongPrevHash { .. })
    ));
}

#[test]
fn block_from_the_wrong_proposer() {
    // The proposer of round 0 signs the header as if it were round 1's.
    assert!(matches!(
        check_edited(|_, block| block.header.round = 1),
        Err(BlockError::WrongProposer { round: 1, .. })
    ));
    assert!(matches!(
        check_edited(|_, block| block.header.proposer = Keypair::from_seed([212; 32]).public()),
        Err(BlockError::WrongProposer { .. })
    ));
}

#[test]
fn block_committing_to_another_validator_set() {
    assert!(matches!(
        check_edited(
            |_, block| block.header.validator_set_hash = Hash256::digest(b"some other set")
        ),
        Err(BlockError::WrongValidatorSet { .. })
    ));
}

#[test]
fn block_older_than_its_parent() {
    // The parent is dated 5 s late, past the next slot's start: a block at its own slot's
    // start is then in its slot but before its parent.
    let chain = Chain::new();
    let late = chain.now() + 5_000;
    chain
        .apply_certified(&chain.build_at(vec![], late).unwrap())
        .unwrap();
    let mut block = chain.build(vec![]);
    assert_eq!(block.header.time_ms, late);
    block.header.time_ms = chain.now();
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Err(BlockError::TimeBeforeParent {
            time_ms: chain.now(),
            parent_ms: late
        })
    );
}

#[test]
fn block_with_too_many_transactions() {
    assert_eq!(
        check_edited(|_, block| {
            let tx = block.transactions[0].clone();
            block.transactions = vec![tx; MAX_BLOCK_TRANSACTIONS + 1];
        }),
        Err(BlockError::TooManyTransactions(MAX_BLOCK_TRANSACTIONS + 1))
    );
}

#[test]
fn block_too_large() {
    let big = wallet_tx(outpoints(500), vec![out(1)]);
    assert!(matches!(
        check_edited(|_, block| block.transactions = vec![big; 60]),
        Err(BlockError::TooLarge(n)) if n > 4 * 1024 * 1024
    ));
}

#[test]
fn block_committing_to_another_next_validator_set() {
    assert!(matches!(
        check_edited(|_, block| block.header.next_validator_set_hash = Hash256::digest(b"other")),
        Err(BlockError::WrongNextValidatorSet { .. })
    ));
}

#[test]
fn block_of_another_protocol_version() {
    assert_eq!(
        check_edited(|_, block| block.header.version = 2),
        Err(BlockError::WrongVersion {
            expected: 1,
            got: 2
        })
    );
}

/// The relayer's attack: one byte of an input signature changed. The txid and the block hash
/// stay the same, but the header's full-transaction root no longer matches, whatever the
/// receiver's state (check_block_body needs none).
#[test]
fn block_with_a_changed_signature() {
    let (chain, mut block) = valid_block();
    let hash = block.hash();
    block.transactions[0].inputs[0].signature.0[5] ^= 0x20;
    assert_eq!(block.hash(), hash);
    assert_eq!(
        check_block_body(&block),
        Err(BlockError::FullTxRootMismatch)
    );
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Err(BlockError::FullTxRootMismatch)
    );
}

/// A header that claims another state than the block leads to: refused by validation and by
/// apply (which leaves the store as it was), and, since the claim can only be checked against
/// the parent's state, not held against the sender.
#[test]
fn block_with_a_wrong_state_root() {
    let (chain, mut block) = valid_block();
    let right = block.header.state_root;
    block.header.state_root = Hash256::digest(b"another state");
    let wrong = BlockError::WrongStateRoot {
        header: block.header.state_root,
        computed: right,
    };
    assert!(wrong.is_local());
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Err(wrong.clone())
    );
    let before = chain.store.recompute_state().unwrap();
    assert!(matches!(
        chain.apply_certified(&block),
        Err(StoreError::InvalidBlock(e)) if e == wrong
    ));
    assert_eq!(chain.height(), 1);
    assert_eq!(chain.store.recompute_state().unwrap(), before);
}

#[test]
fn block_with_roots_that_do_not_match_the_body() {
    assert_eq!(
        check_edited(|_, block| block.transactions.clear()),
        Err(BlockError::TxRootMismatch)
    );
    assert_eq!(
        check_edited(|_, block| {
            block.rewards.pop();
        }),
        Err(BlockError::RewardsRootMismatch)
    );
}

#[test]
fn block_with_an_invalid_transaction() {
    assert!(matches!(
        check_edited(forge_a_signature),
        Err(BlockError::Transaction {
            index: 0,
            error: TxError::BadSignature(0),
            ..
        })
    ));

    assert!(matches!(
        check_edited(add_an_underpaying_transaction),
        Err(BlockError::Transaction {
            index: 1,
            error: TxError::FeeTooLow { fee: 1, .. },
            ..
        })
    ));

    assert!(matches!(
        check_edited(add_a_transaction_without_its_input),
        Err(BlockError::Transaction {
            index: 1,
            error: TxError::MissingInput(_),
            ..
        })
    ));
}

#[test]
fn block_spending_one_output_twice() {
    let (chain, mut block) = valid_block();
    add_a_double_spend(&chain, &mut block);
    assert_eq!(
        chain
            .store
            .validate_block(&block, &chain.genesis, chain.now()),
        Err(BlockError::DoubleSpend {
            index: 1,
            outpoint: chain.allocation(0)
        })
    );
}

#[test]
fn block_with_wrong_rewards() {
    // Missing the fees.
    assert!(matches!(
        check_edited(|_, block| {
            let proposer_output = block.rewards.iter_mut().max_by_key(|o| o.amount).unwrap();
            proposer_output.amount -= MIN_FEE;
            reseal(block);
        }),
        Err(BlockError::WrongRewards { .. })
    ));

    // The right total, paid to someone else.
    assert!(matches!(
        check_edited(|_, block| {
            block.rewards[0].address = someone();
            reseal(block);
        }),
        Err(BlockError::WrongRewards { .. })
    ));
}

#[test]
fn block_checked_against_another_genesis() {
    let (chain, block) = valid_block();
    let other = Genesis {
        min_fee_per_byte: 0,
        ..chain.genesis.clone()
    };
    assert!(matches!(
        chain.store.validate_block(&block, &other, chain.now()),
        Err(BlockError::WrongGenesis { .. })
    ));
}

/// Blocks invalid on every node say so (a peer sending one may be penalised); blocks refused
/// because of this node's state or clock do not.
#[test]
fn rejections_say_whether_they_depend_on_the_receiver() {
    let everywhere: Vec<Result<(), BlockError>> = vec![
        check_edited(|_, block| block.header.chain_id = "elsewhere".into()),
        check_edited(|_, block| block.transactions.clear()),
        check_edited(|_, block| block.transactions[0].inputs[0].signature.0[5] ^= 0x20),
        check_edited(|_, block| block.rewards.clear()),
        check_edited(|chain, block| block.header.time_ms = chain.now() - 1),
        check_edited(forge_a_signature),
        check_edited(add_a_double_spend),
        check_edited(|chain, block| {
            block
                .transactions
                .push(chain.spend_allocation(1, someone(), 1));
            reseal(block);
        }),
    ];
    for result in everywhere {
        let error = result.unwrap_err();
        assert!(!error.is_local(), "{error:?}");
    }

    let (chain, block) = valid_block();
    let here: Vec<Result<(), BlockError>> = vec![
        check_edited(|_, block| block.header.height = 3),
        check_edited(|chain, block| block.header.prev_hash = chain.genesis.genesis_block().hash()),
        check_edited(|_, block| block.header.version = 2),
        check_edited(|_, block| block.header.round = 1),
        check_edited(|_, block| block.header.validator_set_hash = Hash256::ZERO),
        check_edited(|_, block| block.header.next_validator_set_hash = Hash256::ZERO),
        check_edited(add_a_transaction_without_its_input),
        check_edited(add_an_underpaying_transaction),
        check_edited(|_, block| {
            block.rewards[0].amount += 1;
            reseal(block);
        }),
        chain.store.validate_block(
            &block,
            &chain.genesis,
            block.header.time_ms - timecoin_ledger::MAX_CLOCK_DRIFT_MS - 1,
        ),
        chain.store.validate_block(
            &block,
            &Genesis {
                min_fee_per_byte: 0,
                ..chain.genesis.clone()
            },
            chain.now(),
        ),
    ];
    for result in here {
        let error = result.unwrap_err();
        assert!(error.is_local(), "{error:?}");
    }
    assert!(BlockError::Storage("disk".into()).is_local());
    assert!(TxError::Storage("disk".into()).is_local());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn output_amounts_are_accepted_exactly_when_positive_and_summable(
            amounts in proptest::collection::vec(
                prop_oneof![Just(0u64), 1u64..1_000, Just(u64::MAX), any::<u64>()],
                1..6,
            )
        ) {
            let tx = wallet_tx(outpoints(1), amounts.iter().map(|&a| out(a)).collect());
            // The first violation in output order is the one reported.
            let mut expected = Ok(());
            let mut sum: u128 = 0;
            for (i, &amount) in amounts.iter().enumerate() {
                sum += amount as u128;
                if amount == 0 {
                    expected = Err(TxError::ZeroOutput(i));
                    break;
                }
                if sum > u64::MAX as u128 {
                    expected = Err(TxError::OutputOverflow);
                    break;
                }
            }
            prop_assert_eq!(stateless(&tx), expected);
        }
    }
}
