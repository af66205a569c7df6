//! Writing the chain: the genesis, and each finalized block with its certificate, each in
//! one write transaction that either commits whole or leaves the file as it was.

use super::tables::{
    address_key, check_genesis, read_pruned_below, read_set, read_state, read_tip, Tip,
    ADDRESS_UTXOS, BLOCKS, BLOCK_HASHES, BLOCK_HEIGHTS, CERTIFICATES, HEADERS, META, META_GENESIS,
    META_PRUNED_BELOW, META_STATE, META_TIP, STAKES, TXS, UTXOS, VALIDATOR_SETS,
};
use super::{check_spends, Store, StoreError, TxLocation, PRUNE_BATCH};
use crate::block::{reward_outpoint, Block};
use crate::genesis::Genesis;
use crate::stake::ACTIVATION_DELAY;
use crate::tx::{OutPoint, TxOutput};
use crate::validate::{check_block_shape, BlockError};
use crate::StateHash;
use redb::{Table, WriteTransaction};
use timecoin_types::{codec, Certificate, Hash256};

/// The UTXO set and its address index, which always change together.
struct Utxos<'txn> {
    utxos: Table<'txn, &'static [u8; 36], &'static [u8; 28]>,
    by_address: Table<'txn, &'static [u8; 56], ()>,
}

impl<'txn> Utxos<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Utxos<'txn>, StoreError> {
        Ok(Utxos {
            utxos: txn.open_table(UTXOS)?,
            by_address: txn.open_table(ADDRESS_UTXOS)?,
        })
    }

    /// Adds `output` at `outpoint`.
    fn insert(&mut self, outpoint: &OutPoint, output: &TxOutput) -> Result<(), StoreError> {
        self.utxos
            .insert(&outpoint.to_bytes(), &output.to_bytes())?;
        self.by_address
            .insert(&address_key(&output.address, outpoint), ())?;
        Ok(())
    }

    /// Adds the reward outputs of the block at `height` (for genesis, the allocations).
    fn insert_rewards(&mut self, height: u64, rewards: &[TxOutput]) -> Result<(), StoreError> {
        for (i, output) in rewards.iter().enumerate() {
            self.insert(&reward_outpoint(height, i as u32), output)?;
        }
        Ok(())
    }

    /// Removes the output at `outpoint`, returning it if it existed.
    fn spend(&mut self, outpoint: &OutPoint) -> Result<Option<TxOutput>, StoreError> {
        let removed = self
            .utxos
            .remove(&outpoint.to_bytes())?
            .map(|g| TxOutput::from_bytes(g.value()));
        if let Some(output) = &removed {
            self.by_address
                .remove(&address_key(&output.address, outpoint))?;
        }
        Ok(removed)
    }
}

/// Indexes `block` (hash `hash`) at its height: the block itself, its header and both hash
/// indexes.
fn insert_block(txn: &WriteTransaction, block: &Block, hash: &Hash256) -> Result<(), StoreError> {
    let height = block.header.height;
    txn.open_table(BLOCKS)?
        .insert(height, codec::encode(block).as_slice())?;
    txn.open_table(HEADERS)?
        .insert(height, codec::encode(&block.header).as_slice())?;
    txn.open_table(BLOCK_HEIGHTS)?
        .insert(hash.as_bytes(), height)?;
    txn.open_table(BLOCK_HASHES)?
        .insert(height, hash.as_bytes())?;
    Ok(())
}

impl Store {
    /// Writes the genesis block, its allocations and the first validator set. Calling it
    /// again with the same genesis does nothing; a different genesis is refused.
    pub fn init_genesis(&self, genesis: &Genesis) -> Result<(), StoreError> {
        genesis.validate()?;
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            match check_genesis(&meta, genesis) {
                Ok(()) => return Ok(()),
                Err(StoreError::NotInitialized) => {}
                Err(e) => return Err(e),
            }
            let block = genesis.genesis_block();
            let hash = block.hash();
            let set = genesis.validator_set();
            Utxos::open(&txn)?.insert_rewards(0, &block.rewards)?;
            let mut sets = txn.open_table(VALIDATOR_SETS)?;
            let set_bytes = codec::encode(&set);
            // Height 0 is never voted on, but every height has a set; the sets are known
            // ACTIVATION_DELAY heights past the tip.
            for height in 0..=ACTIVATION_DELAY {
                sets.insert(height, set_bytes.as_slice())?;
            }
            insert_block(&txn, &block, &hash)?;
            meta.insert(META_GENESIS, genesis.hash().as_bytes().as_slice())?;
            meta.insert(META_TIP, Tip::of(&block.header, hash).to_bytes().as_slice())?;
            meta.insert(META_STATE, genesis.state().to_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Applies a finalized block and its certificate in one write transaction: the block by
    /// height and hash, the certificate, spent and new UTXOs, the transaction index, the next
    /// height's validator set and the tip. Refuses a block that is not tip + 1, whose
    /// certificate does not verify against the height's set, or that is invalid (as
    /// [`Store::validate_block`] but for the bound on the time ahead of the clock: a
    /// finalized block is applied whenever it arrives); a refused block leaves the store
    /// untouched.
    pub fn apply_block(
        &self,
        block: &Block,
        certificate: &Certificate,
        genesis: &Genesis,
    ) -> Result<(), StoreError> {
        self.apply_blocks(&[(block, certificate)], genesis)
    }

    /// Applies consecutive finalized blocks, each checked as [`Store::apply_block`] checks
    /// it, in one write transaction (one durable commit for the run, as catch-up sync wants):
    /// all of them or, if any is refused, none.
    pub fn apply_blocks(
        &self,
        blocks: &[(&Block, &Certificate)],
        genesis: &Genesis,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        for (block, certificate) in blocks {
            self.apply_in(&txn, block, certificate, genesis)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Applies one block inside `txn`.
    fn apply_in(
        &self,
        txn: &WriteTransaction,
        block: &Block,
        certificate: &Certificate,
        genesis: &Genesis,
    ) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META)?;
        check_genesis(&meta, genesis)?;
        let tip = read_tip(&meta)?;
        let height = block.header.height;
        if height != tip.height + 1 {
            return Err(StoreError::NotNextHeight {
                expected: tip.height + 1,
                got: height,
            });
        }
        let mut sets = txn.open_table(VALIDATOR_SETS)?;
        let set = read_set(&sets, height)?;
        let next_set = read_set(&sets, height + 1)?;
        let hash = block.hash();
        certificate.verify_for(&genesis.chain_id, &set, height, &hash)?;
        // No clock bound: the block is final, and may be old (catching up).
        let parent = tip.parent(&set, &next_set);
        check_block_shape(block, genesis, &parent, None, &self.checked)?;

        // Spending writes as it goes: a later failure (a double spend, wrong rewards)
        // returns before commit and the dropped transaction discards these writes.
        let mut utxos = Utxos::open(txn)?;
        let mut stakes = txn.open_table(STAKES)?;
        let spends = check_spends(block, genesis, &set, &next_set, &stakes, |op| {
            utxos.spend(op)
        })?;
        let state = spends.state_after(read_state(&meta)?, block);
        check_state_root(block, &state)?;
        let changes = &spends.changes;
        let after_next = changes.apply_to(&next_set)?;
        for (outpoint, _) in &changes.released {
            stakes.remove(&outpoint.to_bytes())?;
        }
        for (outpoint, record) in changes.entered.iter().chain(&changes.exited) {
            stakes.insert(&outpoint.to_bytes(), &record.to_bytes())?;
        }

        let mut txs = txn.open_table(TXS)?;
        for (index, (tx, &fee)) in block.transactions.iter().zip(&spends.fees).enumerate() {
            let txid = tx.txid();
            for (i, output) in tx.outputs.iter().enumerate() {
                let outpoint = OutPoint {
                    txid,
                    index: i as u32,
                };
                utxos.insert(&outpoint, output)?;
            }
            let location = TxLocation {
                height,
                index: index as u32,
                fee,
            };
            txs.insert(txid.as_bytes(), &location.to_bytes())?;
        }
        utxos.insert_rewards(height, &block.rewards)?;

        insert_block(txn, block, &hash)?;
        txn.open_table(CERTIFICATES)?
            .insert(height, codec::encode(certificate).as_slice())?;
        // The block's (de)registrations take effect ACTIVATION_DELAY heights later.
        sets.insert(
            height + ACTIVATION_DELAY,
            codec::encode(&after_next).as_slice(),
        )?;
        meta.insert(META_TIP, Tip::of(&block.header, hash).to_bytes().as_slice())?;
        meta.insert(META_STATE, state.to_bytes().as_slice())?;
        if self.retain_blocks > 0 {
            prune_bodies(txn, &mut meta, height, self.retain_blocks)?;
        }
        Ok(())
    }
}

/// Deletes the bodies that fall out of the last `retain` heights once `tip` is applied (at
/// most [`PRUNE_BATCH`] of them) and raises `pruned_below` past them, in the apply's
/// transaction.
fn prune_bodies(
    txn: &WriteTransaction,
    meta: &mut Table<&'static str, &'static [u8]>,
    tip: u64,
    retain: u64,
) -> Result<(), StoreError> {
    let Some(keep_from) = (tip + 1).checked_sub(retain) else {
        return Ok(());
    };
    let from = read_pruned_below(meta)?;
    let to = keep_from.min(from.saturating_add(PRUNE_BATCH));
    if to <= from {
        return Ok(());
    }
    let mut blocks = txn.open_table(BLOCKS)?;
    for height in from..to {
        blocks.remove(height)?;
    }
    meta.insert(META_PRUNED_BELOW, to.to_be_bytes().as_slice())?;
    Ok(())
}

/// Refuses a block whose header names another state than the one it leads to.
pub(super) fn check_state_root(block: &Block, state: &StateHash) -> Result<(), BlockError> {
    let computed = state.root();
    if block.header.state_root != computed {
        return Err(BlockError::WrongStateRoot {
            header: block.header.state_root,
            computed,
        });
    }
    Ok(())
}
