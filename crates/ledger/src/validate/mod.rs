//! Validation rules, each rejection with its own reason ([`errors`]). The rules reach chain
//! state only through lookup closures, so the store can run them against a read snapshot
//! (checking) or a write transaction that spends as it goes (applying).

use crate::block::{full_tx_root, reward_outpoint, rewards_root, tx_root, Block};
use crate::genesis::Genesis;
use crate::rewards::{reward_outputs, subsidy};
use crate::stake::{
    possession_digest, Stake, StakeRecord, ACTIVATION_DELAY, MIN_COLLATERAL, STAKE_OUTPUT_INDEX,
};
use crate::tx::{check_amounts, OutPoint, Transaction, TxOutput};
use crate::StateHash;
use crate::{
    MAX_BLOCK_BYTES, MAX_BLOCK_TRANSACTIONS, MAX_CLOCK_DRIFT_MS, MAX_TX_BYTES, MAX_TX_INPUTS,
    MAX_TX_OUTPUTS, PROTOCOL_VERSION,
};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use timecoin_types::{codec, Address, Amount, Hash256, PublicKey, Validator, ValidatorSet};

mod errors;

pub use errors::{BlockError, TxError};

/// Checks everything about a transaction that needs no chain state: counts, size, amounts,
/// duplicate inputs and signatures (over [`Transaction::sign_digest`] for `chain_id`).
/// Ownership of the spent outputs is checked against the UTXO set, and the genesis's
/// [`Genesis::min_output`] and [`Genesis::min_fee_for`], by
/// [`crate::Store::validate_transaction`] and block validation.
pub fn check_transaction_stateless(tx: &Transaction, chain_id: &str) -> Result<(), TxError> {
    // Size first: it bounds the work of every later check.
    let size = tx.encoded_len();
    if size > MAX_TX_BYTES {
        return Err(TxError::TooLarge(size));
    }
    if tx.inputs.is_empty() {
        return Err(TxError::NoInputs);
    }
    if tx.outputs.is_empty() {
        return Err(TxError::NoOutputs);
    }
    if tx.inputs.len() > MAX_TX_INPUTS {
        return Err(TxError::TooManyInputs(tx.inputs.len()));
    }
    if tx.outputs.len() > MAX_TX_OUTPUTS {
        return Err(TxError::TooManyOutputs(tx.outputs.len()));
    }
    check_amounts(&tx.outputs, TxError::ZeroOutput, TxError::OutputOverflow)?;
    let mut seen = HashSet::with_capacity(tx.inputs.len());
    for input in &tx.inputs {
        if !seen.insert(input.prev) {
            return Err(TxError::DuplicateInput(input.prev));
        }
    }
    let digest = tx.sign_digest(chain_id);
    for (i, input) in tx.inputs.iter().enumerate() {
        input
            .public_key
            .verify(&digest, &input.signature)
            .map_err(|_| TxError::BadSignature(i))?;
    }
    if let Some(Stake::Register {
        public_key,
        reward_address,
        proof,
    }) = &tx.stake
    {
        let staked = &tx.outputs[STAKE_OUTPUT_INDEX as usize];
        if staked.amount < MIN_COLLATERAL {
            return Err(TxError::CollateralTooLow {
                amount: staked.amount,
                min: MIN_COLLATERAL,
            });
        }
        let proof = proof.as_ref().ok_or(TxError::MissingPossessionProof)?;
        let digest = possession_digest(
            chain_id,
            public_key,
            &staked.address,
            reward_address,
            &tx.inputs[0].prev,
        );
        public_key
            .verify(&digest, proof)
            .map_err(|_| TxError::BadPossessionProof(*public_key))?;
    }
    Ok(())
}

/// Refuses an output below the genesis's [`Genesis::min_output`]: the one stateless rule
/// that depends on a chain parameter. Call after [`check_transaction_stateless`].
fn check_min_output(tx: &Transaction, min_output: Amount) -> Result<(), TxError> {
    match tx.outputs.iter().position(|o| o.amount < min_output) {
        Some(index) => Err(TxError::OutputTooSmall {
            index,
            amount: tx.outputs[index].amount,
            min: min_output,
        }),
        None => Ok(()),
    }
}

/// Refuses a `fee` below [`Genesis::min_fee_for`] the transaction.
pub(crate) fn check_fee(tx: &Transaction, fee: Amount, genesis: &Genesis) -> Result<(), TxError> {
    let min = genesis.min_fee_for(tx);
    if fee < min {
        return Err(TxError::FeeTooLow {
            fee,
            min,
            size: tx.encoded_len(),
        });
    }
    Ok(())
}

/// What the transactions of one block (or one pooled transaction) do to staking state.
#[derive(Clone, Debug, Default)]
pub(crate) struct StakeChanges {
    /// New staking outputs and their records.
    pub entered: Vec<(OutPoint, StakeRecord)>,
    /// Deregistered stakes, records updated with their unlock height.
    pub exited: Vec<(OutPoint, StakeRecord)>,
    /// Unbonded staking outputs spent, with the records that go with them.
    pub released: Vec<(OutPoint, StakeRecord)>,
}

impl StakeChanges {
    /// The set two heights after the block: `next` (the set of the height after it) with
    /// the entries added and the exits removed.
    pub fn apply_to(&self, next: &ValidatorSet) -> Result<ValidatorSet, BlockError> {
        let leaving: HashSet<PublicKey> = self.exited.iter().map(|(_, r)| r.public_key).collect();
        let members = next
            .validators()
            .iter()
            .filter(|v| !leaving.contains(&v.public_key))
            .cloned()
            .chain(self.entered.iter().map(|(_, r)| Validator {
                public_key: r.public_key,
                weight: r.amount,
                reward_address: r.reward_address,
            }))
            .collect();
        ValidatorSet::new(members).map_err(|e| BlockError::ValidatorSet(e.to_string()))
    }
}

/// The state after `block` from its parent's `state`: less the outputs it `spent` and the
/// stake records it ends or rewrites, plus its outputs, its rewards and the records it
/// writes. The same function serves building, validating and applying, so all three agree.
pub(crate) fn state_after(
    mut state: StateHash,
    block: &Block,
    spent: &[(OutPoint, TxOutput)],
    changes: &StakeChanges,
) -> StateHash {
    for (outpoint, output) in spent {
        state.remove_output(outpoint, output);
    }
    for tx in &block.transactions {
        let txid = tx.txid();
        for (index, output) in tx.outputs.iter().enumerate() {
            state.insert_output(
                &OutPoint {
                    txid,
                    index: index as u32,
                },
                output,
            );
        }
    }
    for (index, output) in block.rewards.iter().enumerate() {
        state.insert_output(&reward_outpoint(block.header.height, index as u32), output);
    }
    for (outpoint, record) in &changes.released {
        state.remove_stake(outpoint, record);
    }
    for (outpoint, record) in &changes.exited {
        // A deregistration rewrites a bonded record with its unlock height.
        state.remove_stake(
            outpoint,
            &StakeRecord {
                unlock_height: None,
                ..*record
            },
        );
        state.insert_stake(outpoint, record);
    }
    for (outpoint, record) in &changes.entered {
        state.insert_stake(outpoint, record);
    }
    state
}

/// Checks the staking side of a statelessly valid transaction in a block at `height`:
/// no locked collateral spent, registrations of keys not in `next_set` (the set of
/// `height + 1`, which includes every member and pending entry) nor earlier in `changes`,
/// deregistrations of bonded stakes by their owner. The set cannot become empty: genesis
/// validators have no stake to deregister. On success records the effects in `changes`; on
/// failure leaves it untouched.
pub(crate) fn check_stake<F>(
    tx: &Transaction,
    height: u64,
    unbonding_blocks: u64,
    next_set: &ValidatorSet,
    changes: &mut StakeChanges,
    mut stake_of: F,
) -> Result<(), TxError>
where
    F: FnMut(&OutPoint) -> Result<Option<StakeRecord>, TxError>,
{
    let mut released = Vec::new();
    for input in &tx.inputs {
        if let Some(record) = stake_of(&input.prev)? {
            match record.unlock_height {
                None => return Err(TxError::CollateralBonded(input.prev)),
                Some(unlock_height) if height < unlock_height => {
                    return Err(TxError::CollateralUnbonding {
                        outpoint: input.prev,
                        unlock_height,
                    })
                }
                Some(_) => released.push((input.prev, record)),
            }
        }
    }
    match &tx.stake {
        None => {}
        Some(Stake::Register {
            public_key,
            reward_address,
            ..
        }) => {
            if next_set.get(public_key).is_some()
                || changes
                    .entered
                    .iter()
                    .any(|(_, r)| r.public_key == *public_key)
            {
                return Err(TxError::KeyAlreadyRegistered(*public_key));
            }
            let staked = &tx.outputs[STAKE_OUTPUT_INDEX as usize];
            // Exits only lower the total, so bounding entries here keeps the set of
            // `height + 2` constructible and build, validate and apply in agreement.
            let entering: u128 = changes.entered.iter().map(|(_, r)| r.amount as u128).sum();
            if next_set.total_weight() as u128 + entering + staked.amount as u128 > u64::MAX as u128
            {
                return Err(TxError::WeightOverflow);
            }
            changes.entered.push((
                OutPoint {
                    txid: tx.txid(),
                    index: STAKE_OUTPUT_INDEX,
                },
                StakeRecord {
                    public_key: *public_key,
                    reward_address: *reward_address,
                    owner: staked.address,
                    amount: staked.amount,
                    unlock_height: None,
                },
            ));
        }
        Some(Stake::Deregister { stake }) => {
            let record = stake_of(stake)?.ok_or(TxError::UnknownStake(*stake))?;
            if record.unlock_height.is_some() || changes.exited.iter().any(|(op, _)| op == stake) {
                return Err(TxError::AlreadyDeregistered(*stake));
            }
            if !tx
                .inputs
                .iter()
                .any(|i| Address::of(&i.public_key) == record.owner)
            {
                return Err(TxError::NotStakeOwner {
                    stake: *stake,
                    owner: record.owner,
                });
            }
            let exit_height = height + ACTIVATION_DELAY;
            changes.exited.push((
                *stake,
                StakeRecord {
                    unlock_height: Some(exit_height.saturating_add(unbonding_blocks)),
                    ..record
                },
            ));
        }
    }
    changes.released.extend(released);
    Ok(())
}

/// Checks a statelessly valid transaction's inputs against the UTXO set, reached through
/// `spend` (which may consume the output, when applying), and returns its fee.
pub(crate) fn check_inputs<F>(tx: &Transaction, mut spend: F) -> Result<Amount, TxError>
where
    F: FnMut(&OutPoint) -> Result<Option<TxOutput>, TxError>,
{
    let mut inputs: Amount = 0;
    for (index, input) in tx.inputs.iter().enumerate() {
        let spent = spend(&input.prev)?.ok_or(TxError::MissingInput(input.prev))?;
        let key_address = Address::of(&input.public_key);
        if key_address != spent.address {
            return Err(TxError::WrongOwner {
                index,
                key_address,
                owner: spent.address,
            });
        }
        inputs = inputs
            .checked_add(spent.amount)
            .ok_or(TxError::InputOverflow)?;
    }
    // The stateless check has ruled out an overflow here.
    let outputs: Amount = tx.outputs.iter().map(|o| o.amount).sum();
    inputs
        .checked_sub(outputs)
        .ok_or(TxError::InsufficientFunds { inputs, outputs })
}

/// The chain state a block is checked against.
pub(crate) struct Parent<'a> {
    pub height: u64,
    pub hash: Hash256,
    pub time_ms: u64,
    /// The set voting on `height + 1`.
    pub set: &'a ValidatorSet,
    /// The set voting on `height + 2`.
    pub next_set: &'a ValidatorSet,
}

/// Refuses a block time more than [`MAX_CLOCK_DRIFT_MS`] ahead of the clock `now_ms`.
pub(crate) fn check_not_in_future(time_ms: u64, now_ms: u64) -> Result<(), BlockError> {
    if time_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
        return Err(BlockError::TimeInFuture {
            time_ms,
            now_ms,
            drift: MAX_CLOCK_DRIFT_MS,
        });
    }
    Ok(())
}

/// Transactions whose stateless checks passed, remembered by a hash of the chain id and their
/// full encoding (signatures included), so that each transaction's signatures are verified
/// once per node however often it is checked: at mempool admission, in the proposal and when
/// the finalized block is applied. Bounded; the oldest entries go first.
#[derive(Default)]
pub(crate) struct CheckedTxs(Mutex<(HashSet<Hash256>, VecDeque<Hash256>)>);

impl CheckedTxs {
    /// How many transactions are remembered.
    const CAPACITY: usize = 1 << 18;

    /// Every check of a transaction that needs no chain state under `genesis`:
    /// [`check_transaction_stateless`] for its chain id (skipped for identical bytes that
    /// already passed), then the minimum output.
    pub(crate) fn check(&self, tx: &Transaction, genesis: &Genesis) -> Result<(), TxError> {
        self.check_stateless(tx, &genesis.chain_id)?;
        check_min_output(tx, genesis.min_output)
    }

    /// [`check_transaction_stateless`], skipped for identical bytes that already passed.
    fn check_stateless(&self, tx: &Transaction, chain_id: &str) -> Result<(), TxError> {
        let key = Hash256::digest_parts(&[chain_id.as_bytes(), &codec::encode(tx)]);
        if self.0.lock().expect("checked-tx lock").0.contains(&key) {
            return Ok(());
        }
        check_transaction_stateless(tx, chain_id)?;
        let mut guard = self.0.lock().expect("checked-tx lock");
        let (set, order) = &mut *guard;
        if set.insert(key) {
            order.push_back(key);
            if order.len() > Self::CAPACITY {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
        Ok(())
    }
}

/// Whether the body is the one the header commits to: the transaction count and size limits
/// and the three Merkle roots. Needs no state, so a body that fails is invalid on every node
/// (a relayer changed it, or the proposer signed garbage), unlike a block that fails
/// [`crate::Store::validate_block`] because of the receiver's chain state.
pub fn check_block_body(block: &Block) -> Result<(), BlockError> {
    if block.transactions.len() > MAX_BLOCK_TRANSACTIONS {
        return Err(BlockError::TooManyTransactions(block.transactions.len()));
    }
    let size = block.encoded_len();
    if size > MAX_BLOCK_BYTES {
        return Err(BlockError::TooLarge(size));
    }
    let header = &block.header;
    if header.tx_root != tx_root(&block.transactions) {
        return Err(BlockError::TxRootMismatch);
    }
    if header.full_tx_root != full_tx_root(&block.transactions) {
        return Err(BlockError::FullTxRootMismatch);
    }
    if header.rewards_root != rewards_root(&block.rewards) {
        return Err(BlockError::RewardsRootMismatch);
    }
    Ok(())
}

/// Header, body and stateless transaction checks. `now_ms` is the receiver's clock when
/// checking a proposal, which may then be at most [`MAX_CLOCK_DRIFT_MS`] ahead of it; `None`
/// for a finalized block (applied, perhaps long after its time, when catching up).
pub(crate) fn check_block_shape(
    block: &Block,
    genesis: &Genesis,
    parent: &Parent,
    now_ms: Option<u64>,
    checked: &CheckedTxs,
) -> Result<(), BlockError> {
    let header = &block.header;
    let version = genesis.version_at(header.height);
    if version > PROTOCOL_VERSION {
        return Err(BlockError::UnsupportedVersion {
            height: header.height,
            version,
            supported: PROTOCOL_VERSION,
        });
    }
    if header.version != version {
        return Err(BlockError::WrongVersion {
            expected: version,
            got: header.version,
        });
    }
    if header.chain_id != genesis.chain_id {
        return Err(BlockError::WrongChain {
            expected: genesis.chain_id.clone(),
            got: header.chain_id.clone(),
        });
    }
    let expected_height = parent.height + 1;
    if header.height != expected_height {
        return Err(BlockError::WrongHeight {
            expected: expected_height,
            got: header.height,
        });
    }
    if header.prev_hash != parent.hash {
        return Err(BlockError::WrongPrevHash {
            expected: parent.hash,
            got: header.prev_hash,
        });
    }
    let set_hash = parent.set.hash();
    if header.validator_set_hash != set_hash {
        return Err(BlockError::WrongValidatorSet {
            expected: set_hash,
            got: header.validator_set_hash,
        });
    }
    let next_set_hash = parent.next_set.hash();
    if header.next_validator_set_hash != next_set_hash {
        return Err(BlockError::WrongNextValidatorSet {
            expected: next_set_hash,
            got: header.next_validator_set_hash,
        });
    }
    let proposer = parent.set.proposer(header.height, header.round).public_key;
    if header.proposer != proposer {
        return Err(BlockError::WrongProposer {
            expected: proposer,
            got: header.proposer,
            round: header.round,
        });
    }
    let slot_ms = genesis.slot_time_ms(header.height);
    if header.time_ms < slot_ms {
        return Err(BlockError::TimeBeforeSlot {
            time_ms: header.time_ms,
            slot_ms,
        });
    }
    if header.time_ms < parent.time_ms {
        return Err(BlockError::TimeBeforeParent {
            time_ms: header.time_ms,
            parent_ms: parent.time_ms,
        });
    }
    if let Some(now_ms) = now_ms {
        check_not_in_future(header.time_ms, now_ms)?;
    }
    check_block_body(block)?;
    for (index, tx) in block.transactions.iter().enumerate() {
        checked
            .check(tx, genesis)
            .map_err(|error| BlockError::Transaction {
                index,
                txid: tx.txid(),
                error,
            })?;
    }
    Ok(())
}

/// Spends every input of the block through `spend`, checks staking rules (stake records
/// through `stake_of`, `next_set` = the set of the block's height + 1), fees and rewards, and
/// returns each transaction's fee and the block's staking changes. Call after
/// [`check_block_shape`].
pub(crate) fn check_block_spends<F, S>(
    block: &Block,
    genesis: &Genesis,
    set: &ValidatorSet,
    next_set: &ValidatorSet,
    mut stake_of: S,
    mut spend: F,
) -> Result<(Vec<Amount>, StakeChanges), BlockError>
where
    F: FnMut(&OutPoint) -> Result<Option<TxOutput>, TxError>,
    S: FnMut(&OutPoint) -> Result<Option<StakeRecord>, TxError>,
{
    let mut changes = StakeChanges::default();
    let mut spent = HashSet::new();
    let mut fees = Vec::with_capacity(block.transactions.len());
    let mut total_fees: Amount = 0;
    for (index, tx) in block.transactions.iter().enumerate() {
        for input in &tx.inputs {
            if !spent.insert(input.prev) {
                return Err(BlockError::DoubleSpend {
                    index,
                    outpoint: input.prev,
                });
            }
        }
        let tx_error = |error| BlockError::Transaction {
            index,
            txid: tx.txid(),
            error,
        };
        check_stake(
            tx,
            block.header.height,
            genesis.unbonding_blocks,
            next_set,
            &mut changes,
            &mut stake_of,
        )
        .map_err(tx_error)?;
        let fee = check_inputs(tx, &mut spend).map_err(tx_error)?;
        check_fee(tx, fee, genesis).map_err(tx_error)?;
        total_fees = total_fees
            .checked_add(fee)
            .ok_or(BlockError::RewardOverflow)?;
        fees.push(fee);
    }
    let total = subsidy(block.header.height)
        .checked_add(total_fees)
        .ok_or(BlockError::RewardOverflow)?;
    let expected = reward_outputs(set, &block.header.proposer, total);
    if block.rewards != expected {
        return Err(BlockError::WrongRewards { total, expected });
    }
    Ok((fees, changes))
}
