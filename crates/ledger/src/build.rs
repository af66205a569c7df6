//! Block building: how a proposer assembles the block for tip + 1 from candidate
//! transactions (the mempool's best first). A candidate goes in only if it is valid on top of
//! the ones already picked, so the block built is one every node's validation accepts.

use crate::block::{full_tx_root, rewards_root, tx_root, Block, BlockHeader};
use crate::genesis::Genesis;
use crate::rewards::{reward_outputs, subsidy};
use crate::store::{lookup_keeping_error, Store, StoreError};
use crate::tx::Transaction;
use crate::validate::{
    check_fee, check_inputs, check_not_in_future, check_stake, state_after, BlockError,
    StakeChanges,
};
use crate::{MAX_BLOCK_BYTES, MAX_BLOCK_TRANSACTIONS};
use std::collections::HashSet;
use timecoin_types::{Amount, Hash256, PublicKey};

/// Room left in a built block for CBOR framing beyond the header and rewards.
const BUILD_MARGIN: usize = 1024;

impl Store {
    /// Builds the block for tip + 1 from `candidates` in the given order (callers pass them
    /// best first), skipping any that no longer validate, conflict with an earlier pick or do
    /// not fit the size limits.
    ///
    /// `time_ms` is the proposer's clock. The block's time is raised to the parent's time and
    /// to the start of the height's slot if it is earlier; if that puts it more than
    /// [`crate::MAX_CLOCK_DRIFT_MS`] ahead of `time_ms`, the proposer's own
    /// [`Store::validate_block`] (and its peers') would refuse the block, so none is built:
    /// [`StoreError::InvalidBlock`] with [`BlockError::TimeInFuture`].
    pub fn build_block(
        &self,
        genesis: &Genesis,
        round: u32,
        proposer: PublicKey,
        time_ms: u64,
        candidates: Vec<Transaction>,
    ) -> Result<Block, StoreError> {
        let snapshot = self.snapshot(genesis)?;
        let parent = snapshot.parent();
        let height = parent.height + 1;
        let lookups = snapshot.lookups()?;
        let mut changes = StakeChanges::default();
        let block_time = time_ms
            .max(parent.time_ms)
            .max(genesis.slot_time_ms(height));
        check_not_in_future(block_time, time_ms)?;

        let mut block = Block {
            header: BlockHeader {
                version: genesis.version_at(height),
                chain_id: genesis.chain_id.clone(),
                height,
                round,
                prev_hash: parent.hash,
                proposer,
                time_ms: block_time,
                tx_root: Hash256::ZERO,
                full_tx_root: Hash256::ZERO,
                rewards_root: Hash256::ZERO,
                validator_set_hash: parent.set.hash(),
                next_validator_set_hash: parent.next_set.hash(),
                state_root: Hash256::ZERO,
            },
            transactions: Vec::new(),
            // Sized with the largest possible amounts, so the real rewards can only be
            // smaller and the transaction budget below is safe.
            rewards: reward_outputs(parent.set, &proposer, Amount::MAX),
        };
        let budget = MAX_BLOCK_BYTES.saturating_sub(block.encoded_len() + BUILD_MARGIN);

        let mut used = 0usize;
        let mut spent = HashSet::new();
        let mut spent_outputs = Vec::new();
        let mut fees: Amount = 0;
        for tx in candidates {
            if block.transactions.len() == MAX_BLOCK_TRANSACTIONS {
                break;
            }
            let size = tx.encoded_len();
            if used + size > budget
                || tx.inputs.iter().any(|i| spent.contains(&i.prev))
                || self.checked.check(&tx, genesis).is_err()
            {
                continue;
            }
            let mut kept = None;
            let mut outputs = Vec::with_capacity(tx.inputs.len());
            let fee = check_inputs(&tx, |op| {
                let output = lookup_keeping_error(&mut kept, lookups.utxo(op))?;
                outputs.extend(output.map(|o| (*op, o)));
                Ok(output)
            });
            if let Some(e) = kept {
                return Err(e);
            }
            let Ok(fee) = fee else { continue };
            if check_fee(&tx, fee, genesis).is_err() {
                continue;
            }
            let Some(new_fees) = fees.checked_add(fee) else {
                continue;
            };
            // Last, because it records the transaction's staking effects on success.
            let staked = check_stake(
                &tx,
                height,
                genesis.unbonding_blocks,
                &snapshot.next_set,
                &mut changes,
                |op| lookup_keeping_error(&mut kept, lookups.stake(op)),
            );
            if let Some(e) = kept {
                return Err(e);
            }
            if staked.is_err() {
                continue;
            }
            fees = new_fees;
            used += size;
            spent.extend(tx.inputs.iter().map(|i| i.prev));
            spent_outputs.extend(outputs);
            block.transactions.push(tx);
        }

        let total = subsidy(height)
            .checked_add(fees)
            .ok_or(BlockError::RewardOverflow)?;
        block.rewards = reward_outputs(parent.set, &proposer, total);
        block.header.tx_root = tx_root(&block.transactions);
        block.header.full_tx_root = full_tx_root(&block.transactions);
        block.header.rewards_root = rewards_root(&block.rewards);
        block.header.state_root =
            state_after(snapshot.state()?, &block, &spent_outputs, &changes).root();
        Ok(block)
    }
}
