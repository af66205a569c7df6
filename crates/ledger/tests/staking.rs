//! Validator registration and deregistration: the set changes two heights after the block,
//! collateral is locked while it backs a validator and while it unbonds, and every refusal
//! has its own reason, in the mempool check, in block validation and in apply (which must
//! agree and leave the store untouched).

mod common;

use common::*;
use timecoin_ledger::{
    possession_digest, reward_outputs, subsidy, Block, BlockError, Genesis, OutPoint, Stake,
    StoreError, Transaction, TxError, TxOutput, ACTIVATION_DELAY, DEFAULT_UNBONDING_BLOCKS,
    MIN_COLLATERAL, STAKE_OUTPUT_INDEX,
};
use timecoin_types::{codec, Address, Amount, Keypair, Validator, COIN};

/// The consensus key of the joining validator.
fn joiner() -> Keypair {
    Keypair::from_seed([77; 32])
}

fn reward_address() -> Address {
    Address::of(&Keypair::from_seed([78; 32]).public())
}

/// Allocations 0 and 1 (2,000 TIME) fund a registration of `collateral`, change to the
/// wallet after the minimum fee.
fn registration(chain: &Chain, key: &Keypair, collateral: Amount) -> Transaction {
    registration_from(chain, key, collateral, [0, 1])
}

fn registration_from(
    chain: &Chain,
    key: &Keypair,
    collateral: Amount,
    allocations: [u32; 2],
) -> Transaction {
    Transaction::build_registration(
        CHAIN,
        allocations
            .iter()
            .map(|&i| (chain.allocation(i), &chain.wallet))
            .collect(),
        key,
        reward_address(),
        collateral,
        vec![TxOutput {
            address: address(&chain.wallet),
            amount: 2 * ALLOCATION - collateral - MIN_FEE,
        }],
    )
}

/// The staking output of a registration.
fn stake_of(tx: &Transaction) -> OutPoint {
    OutPoint {
        txid: tx.txid(),
        index: 0,
    }
}

/// A deregistration of `stake` paid from allocation `i` by `payer`.
fn deregistration(chain: &Chain, stake: OutPoint, payer: &Keypair, i: u32) -> Transaction {
    Transaction::build_deregistration(
        CHAIN,
        vec![(chain.allocation(i), payer)],
        vec![TxOutput {
            address: address(payer),
            amount: ALLOCATION - MIN_FEE,
        }],
        stake,
    )
}

/// Certifies with every key of the height's set (the joiner included once it is a member)
/// and applies.
fn commit(chain: &Chain, txs: Vec<Transaction>) -> Block {
    let block = chain.build(txs);
    apply(chain, &block).unwrap();
    block
}

fn apply(chain: &Chain, block: &Block) -> Result<(), StoreError> {
    let set = chain.store.validator_set(block.header.height).unwrap();
    let mut signers: Vec<Keypair> = chain.validators.clone();
    signers.push(joiner());
    signers.retain(|k| set.get(&k.public()).is_some());
    chain
        .store
        .apply_block(block, &chain.certify_by(block, &signers), &chain.genesis)
}

/// A block at the next height holding exactly `txs`, with the rewards every node computes
/// for their fees, whether or not they are valid together (build_block would drop some).
fn forced_block(chain: &Chain, txs: Vec<Transaction>, fees: Amount) -> Block {
    let mut block = chain.build(vec![]);
    block.transactions = txs;
    let set = chain.store.validator_set(block.header.height).unwrap();
    block.rewards = reward_outputs(
        &set,
        &block.header.proposer,
        subsidy(block.header.height) + fees,
    );
    reseal(&mut block);
    block
}

/// `validate_block` and `apply_block` both refuse `block` with `error`, and the tip stays.
fn refused(chain: &Chain, block: &Block, error: TxError) {
    let tip = chain.store.tip().unwrap();
    match chain
        .store
        .validate_block(block, &chain.genesis, chain.now())
    {
        Err(BlockError::Transaction { error: got, .. }) => assert_eq!(got, error),
        other => panic!("validate_block: expected {error:?}, got {other:?}"),
    }
    match apply(chain, block) {
        Err(StoreError::InvalidBlock(BlockError::Transaction { error: got, .. })) => {
            assert_eq!(got, error)
        }
        other => panic!("apply_block: expected {error:?}, got {other:?}"),
    }
    assert_eq!(chain.store.tip().unwrap(), tip);
}

fn check(chain: &Chain, tx: &Transaction) -> Result<Amount, TxError> {
    chain.store.validate_transaction(tx, &chain.genesis)
}

/// A chain on which the joiner's registration of the minimum collateral is final, and its
/// staking output.
fn joiner_registered() -> (Chain, OutPoint) {
    let chain = Chain::new();
    let reg = registration(&chain, &joiner(), MIN_COLLATERAL);
    let stake = stake_of(&reg);
    commit(&chain, vec![reg]);
    (chain, stake)
}

/// `tx` is refused with `error` at every gate: the mempool check, `build_block` (which drops
/// it) and, forced into a block, `validate_block` and `apply_block`.
fn refused_everywhere(chain: &Chain, tx: &Transaction, error: TxError) {
    assert_eq!(check(chain, tx), Err(error.clone()));
    assert!(chain.build(vec![tx.clone()]).transactions.is_empty());
    refused(
        chain,
        &forced_block(chain, vec![tx.clone()], MIN_FEE),
        error,
    );
}

#[test]
fn registration_enters_the_set_two_heights_later_with_its_collateral_as_weight() {
    let chain = Chain::new();
    let collateral = 1_500 * COIN;
    let tx = registration(&chain, &joiner(), collateral);
    assert_eq!(check(&chain, &tx), Ok(MIN_FEE));
    let genesis_set = chain.genesis.validator_set();
    let wallet_before = chain.store.balance(&address(&chain.wallet)).unwrap();

    let block = commit(&chain, vec![tx.clone()]);
    assert_eq!(block.transactions.len(), 1);
    let h = chain.height();
    assert_eq!(chain.store.validator_set(h + 1).unwrap(), genesis_set);
    let entered = chain.store.validator_set(h + ACTIVATION_DELAY).unwrap();
    assert_eq!(entered.len(), genesis_set.len() + 1);
    assert_eq!(
        entered.get(&joiner().public()),
        Some(&Validator {
            public_key: joiner().public(),
            weight: collateral,
            reward_address: reward_address(),
        })
    );
    assert_eq!(
        entered.total_weight(),
        genesis_set.total_weight() + collateral
    );
    assert!(matches!(
        chain.store.validator_set(h + ACTIVATION_DELAY + 1),
        Err(StoreError::UnknownHeight { .. })
    ));

    // The collateral stays the owner's coin (balance counts it); only the fee left.
    assert_eq!(
        chain.store.balance(&address(&chain.wallet)).unwrap(),
        wallet_before - MIN_FEE
    );
    let record = chain.store.stake(&stake_of(&tx)).unwrap().unwrap();
    assert_eq!(record.owner, address(&chain.wallet));
    assert_eq!(record.amount, collateral);
    assert_eq!(record.unlock_height, None);
    assert_eq!(chain.store.stakes().unwrap(), vec![(stake_of(&tx), record)]);

    // Two heights later the joiner is in the voting set: blocks need its signature (the
    // genesis four hold 100 TIME against its 1,500) and pay it rewards.
    commit(&chain, vec![]);
    let block = commit(&chain, vec![]);
    assert_eq!(block.header.height, h + ACTIVATION_DELAY);
    assert_eq!(block.header.validator_set_hash, entered.hash());
    assert!(block.rewards.iter().any(|o| o.address == reward_address()));
    let by_genesis_only = chain.build(vec![]);
    assert!(matches!(
        chain.apply_certified(&by_genesis_only),
        Err(StoreError::Certificate(_))
    ));
}

#[test]
fn too_little_collateral_is_refused() {
    let chain = Chain::new();
    let tx = registration(&chain, &joiner(), MIN_COLLATERAL - 1);
    let error = TxError::CollateralTooLow {
        amount: MIN_COLLATERAL - 1,
        min: MIN_COLLATERAL,
    };
    refused_everywhere(&chain, &tx, error);
    // Exactly the minimum is enough.
    let tx = registration(&chain, &joiner(), MIN_COLLATERAL);
    assert_eq!(check(&chain, &tx), Ok(MIN_FEE));
}

#[test]
fn missing_or_invalid_possession_proofs_are_refused() {
    let chain = Chain::new();
    let good = registration(&chain, &joiner(), MIN_COLLATERAL);
    let with_proof = |proof| {
        let Some(Stake::Register {
            public_key,
            reward_address,
            ..
        }) = good.stake.clone()
        else {
            unreachable!()
        };
        // Re-signed by the wallet: the proof is outside the txid, so the inputs stay valid.
        let mut tx = good.clone();
        tx.stake = Some(Stake::Register {
            public_key,
            reward_address,
            proof,
        });
        tx
    };

    let missing = with_proof(None);
    assert_eq!(
        check(&chain, &missing),
        Err(TxError::MissingPossessionProof)
    );
    refused(
        &chain,
        &forced_block(&chain, vec![missing], MIN_FEE),
        TxError::MissingPossessionProof,
    );

    // Signed by another key than the one registered: someone registering a key they do not
    // hold.
    let digest = possession_digest(
        CHAIN,
        &joiner().public(),
        &address(&chain.wallet),
        &reward_address(),
        &chain.allocation(0),
    );
    let bad = TxError::BadPossessionProof(joiner().public());
    let forged = with_proof(Some(Keypair::from_seed([5; 32]).sign(&digest)));
    assert_eq!(check(&chain, &forged), Err(bad.clone()));
    refused(
        &chain,
        &forced_block(&chain, vec![forged], MIN_FEE),
        bad.clone(),
    );

    // The key's real proof, lifted into a registration with a thief's own funds: the proof
    // names the owner and the first input, so it does not verify there.
    let thief = Keypair::from_seed([6; 32]);
    let funding = Transaction::build_signed(
        CHAIN,
        vec![
            (chain.allocation(2), &chain.wallet),
            (chain.allocation(3), &chain.wallet),
        ],
        vec![TxOutput {
            address: address(&thief),
            amount: 2 * ALLOCATION - MIN_FEE,
        }],
    );
    commit(&chain, vec![funding.clone()]);
    let stolen = Transaction::build_signed_with_stake(
        CHAIN,
        vec![(
            OutPoint {
                txid: funding.txid(),
                index: 0,
            },
            &thief,
        )],
        vec![TxOutput {
            address: address(&thief),
            amount: 2 * ALLOCATION - 2 * MIN_FEE,
        }],
        good.stake.clone(),
    );
    assert_eq!(check(&chain, &stolen), Err(bad.clone()));
    refused(
        &chain,
        &forced_block(&chain, vec![stolen], MIN_FEE),
        bad.clone(),
    );

    // Another chain's proof does not verify here either.
    let other_chain = Transaction::build_registration(
        "otherchain",
        vec![
            (chain.allocation(0), &chain.wallet),
            (chain.allocation(1), &chain.wallet),
        ],
        &joiner(),
        reward_address(),
        MIN_COLLATERAL,
        vec![],
    );
    let replayed = with_proof(match other_chain.stake {
        Some(Stake::Register { proof, .. }) => proof,
        _ => unreachable!(),
    });
    assert_eq!(check(&chain, &replayed), Err(bad));
    // The untouched registration still goes through.
    assert_eq!(check(&chain, &good), Ok(MIN_FEE));
}

#[test]
fn registered_pending_and_genesis_keys_cannot_register_again() {
    let chain = Chain::new();
    // A genesis validator's key.
    let genesis_key = &chain.validators[0];
    let error = TxError::KeyAlreadyRegistered(genesis_key.public());
    let tx = registration(&chain, genesis_key, MIN_COLLATERAL);
    assert_eq!(check(&chain, &tx), Err(error.clone()));
    refused(&chain, &forced_block(&chain, vec![tx], MIN_FEE), error);

    // Twice in one block: build_block keeps the first, a block with both is refused.
    let first = registration_from(&chain, &joiner(), MIN_COLLATERAL, [0, 1]);
    let second = registration_from(&chain, &joiner(), MIN_COLLATERAL, [2, 3]);
    assert_eq!(check(&chain, &second), Ok(MIN_FEE));
    let error = TxError::KeyAlreadyRegistered(joiner().public());
    assert_eq!(
        chain
            .build(vec![first.clone(), second.clone()])
            .transactions,
        vec![first.clone()]
    );
    refused(
        &chain,
        &forced_block(&chain, vec![first.clone(), second.clone()], 2 * MIN_FEE),
        error.clone(),
    );

    // Pending (finalized, not yet in the set of the next height) and then a member.
    commit(&chain, vec![first]);
    assert!(chain
        .store
        .validator_set(chain.height() + 1)
        .unwrap()
        .get(&joiner().public())
        .is_none());
    assert_eq!(check(&chain, &second), Err(error.clone()));
    refused(
        &chain,
        &forced_block(&chain, vec![second.clone()], MIN_FEE),
        error.clone(),
    );
    commit(&chain, vec![]);
    assert_eq!(check(&chain, &second), Err(error));
}

#[test]
fn collateral_is_locked_while_bonded_and_unbonding_then_spendable() {
    let (chain, stake) = joiner_registered();
    let spend = Transaction::build_signed(
        CHAIN,
        vec![(stake, &chain.wallet)],
        vec![TxOutput {
            address: address(&chain.wallet),
            amount: MIN_COLLATERAL - MIN_FEE,
        }],
    );
    let bonded = TxError::CollateralBonded(stake);
    refused_everywhere(&chain, &spend, bonded.clone());
    commit(&chain, vec![]);
    assert_eq!(check(&chain, &spend), Err(bonded));

    // Deregistered at h: out of the set at h + 2, spendable from h + 2 + unbonding.
    let dereg = deregistration(&chain, stake, &chain.wallet, 2);
    assert_eq!(check(&chain, &dereg), Ok(MIN_FEE));
    commit(&chain, vec![dereg]);
    let h = chain.height();
    let unlock_height = h + ACTIVATION_DELAY + UNBONDING_BLOCKS;
    assert!(chain
        .store
        .validator_set(h + 1)
        .unwrap()
        .get(&joiner().public())
        .is_some());
    assert_eq!(
        chain.store.validator_set(h + ACTIVATION_DELAY).unwrap(),
        chain.genesis.validator_set()
    );
    assert_eq!(
        chain.store.stake(&stake).unwrap().unwrap().unlock_height,
        Some(unlock_height)
    );
    let unbonding = TxError::CollateralUnbonding {
        outpoint: stake,
        unlock_height,
    };
    while chain.height() + 1 < unlock_height {
        refused_everywhere(&chain, &spend, unbonding.clone());
        commit(&chain, vec![]);
    }
    // The next block is at the unlock height: the owner spends the collateral and the
    // record goes.
    assert_eq!(check(&chain, &spend), Ok(MIN_FEE));
    let block = commit(&chain, vec![spend.clone()]);
    assert_eq!(block.transactions, vec![spend]);
    assert_eq!(chain.store.stake(&stake).unwrap(), None);
    assert!(chain.store.stakes().unwrap().is_empty());
}

#[test]
fn deregistration_by_someone_else_twice_or_of_no_stake_is_refused() {
    let (chain, stake) = joiner_registered();

    // Someone else, paying with their own coin.
    let stranger = Keypair::from_seed([9; 32]);
    let funded = commit(
        &chain,
        vec![chain.spend_allocation(2, address(&stranger), ALLOCATION - MIN_FEE)],
    );
    let coin = OutPoint {
        txid: funded.transactions[0].txid(),
        index: 0,
    };
    let by_stranger = Transaction::build_deregistration(
        CHAIN,
        vec![(coin, &stranger)],
        vec![TxOutput {
            address: address(&stranger),
            amount: ALLOCATION - 2 * MIN_FEE,
        }],
        stake,
    );
    let error = TxError::NotStakeOwner {
        stake,
        owner: address(&chain.wallet),
    };
    refused_everywhere(&chain, &by_stranger, error);

    // A genesis validator has no staking output; neither has a plain coin.
    let not_a_stake = chain.allocation(4);
    let error = TxError::UnknownStake(not_a_stake);
    let tx = deregistration(&chain, not_a_stake, &chain.wallet, 3);
    assert_eq!(check(&chain, &tx), Err(error.clone()));
    refused(&chain, &forced_block(&chain, vec![tx], MIN_FEE), error);

    // Twice in one block, then again after it is final.
    let first = deregistration(&chain, stake, &chain.wallet, 3);
    let second = deregistration(&chain, stake, &chain.wallet, 4);
    let error = TxError::AlreadyDeregistered(stake);
    refused(
        &chain,
        &forced_block(&chain, vec![first.clone(), second.clone()], 2 * MIN_FEE),
        error.clone(),
    );
    assert_eq!(
        chain
            .build(vec![first.clone(), second.clone()])
            .transactions,
        vec![first.clone()]
    );
    commit(&chain, vec![first]);
    assert_eq!(check(&chain, &second), Err(error.clone()));
    refused(&chain, &forced_block(&chain, vec![second], MIN_FEE), error);
}

#[test]
fn a_key_can_register_again_once_its_exit_is_fixed() {
    let (chain, stake) = joiner_registered();
    commit(
        &chain,
        vec![deregistration(&chain, stake, &chain.wallet, 2)],
    );
    let left = chain.height() + ACTIVATION_DELAY;
    // The set of `left` no longer has the key, so a registration now enters at `left + 1`:
    // the key is out for exactly one height, never in twice.
    let again = registration_from(&chain, &joiner(), MIN_COLLATERAL, [3, 4]);
    assert_eq!(check(&chain, &again), Ok(MIN_FEE));
    commit(&chain, vec![again]);
    let member = |h| {
        chain
            .store
            .validator_set(h)
            .unwrap()
            .get(&joiner().public())
            .is_some()
    };
    assert!(member(left - 1));
    assert!(!member(left));
    assert!(member(left + 1));
    // Both stakes are kept: the old one unbonding, the new one bonded.
    assert_eq!(chain.store.stakes().unwrap().len(), 2);
}

#[test]
fn genesis_files_without_an_unbonding_delay_load_with_the_default_and_keep_their_hash() {
    let mut genesis = common::genesis();
    genesis.unbonding_blocks = DEFAULT_UNBONDING_BLOCKS;
    let old_style = serde_json::to_value(&genesis).unwrap();
    assert!(old_style.get("unbonding_blocks").is_none());
    let loaded: Genesis = serde_json::from_value(old_style).unwrap();
    assert_eq!(loaded, genesis);
    assert_eq!(loaded.hash(), genesis.hash());

    let custom = common::genesis();
    let json = serde_json::to_value(&custom).unwrap();
    assert_eq!(json["unbonding_blocks"], UNBONDING_BLOCKS);
    assert_eq!(serde_json::from_value::<Genesis>(json).unwrap(), custom);
}

#[test]
fn plain_transfers_encode_without_a_stake_field() {
    let chain = Chain::new();
    let transfer = chain.spend_allocation(0, reward_address(), COIN);
    let bytes = codec::encode(&transfer);
    assert!(!bytes.windows(5).any(|w| w == b"stake"));
    assert_eq!(
        codec::decode::<Transaction>(&bytes, 1 << 20).unwrap(),
        transfer
    );
    let reg = registration(&chain, &joiner(), MIN_COLLATERAL);
    assert_eq!(
        codec::decode::<Transaction>(&codec::encode(&reg), 1 << 20).unwrap(),
        reg
    );
}

#[test]
fn a_registration_that_would_overflow_the_total_weight_is_refused() {
    let mut genesis = common::genesis();
    let others: Amount = genesis.validators[1..].iter().map(|v| v.collateral).sum();
    genesis.validators[0].collateral = u64::MAX - others - (MIN_COLLATERAL - 1);
    let chain = Chain::with_genesis(genesis);
    let tx = registration(&chain, &joiner(), MIN_COLLATERAL);
    refused_everywhere(&chain, &tx, TxError::WeightOverflow);
}

#[test]
fn a_staking_output_is_held_to_the_minimum_output_too() {
    let chain = Chain::with_genesis(Genesis {
        min_output: MIN_COLLATERAL + 1,
        ..common::genesis()
    });
    let tx = registration(&chain, &joiner(), MIN_COLLATERAL);
    let error = TxError::OutputTooSmall {
        index: STAKE_OUTPUT_INDEX as usize,
        amount: MIN_COLLATERAL,
        min: MIN_COLLATERAL + 1,
    };
    refused_everywhere(&chain, &tx, error);
}
