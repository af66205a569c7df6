//! Reading the store: queries for the node and its RPC, and checking a transaction or a
//! block against one consistent read snapshot of the finalized state.

use super::apply::check_state_root;
use super::tables::{
    address_key, address_key_outpoint, check_genesis, read_encoded, read_pruned_below, read_record,
    read_set, read_state, read_tip, Tip, ADDRESS_UTXOS, BLOCKS, BLOCK_HASHES, BLOCK_HEIGHTS,
    CERTIFICATES, HEADERS, META, STAKES, TXS, UTXOS, VALIDATOR_SETS,
};
use super::{check_spends, corrupt, Store, StoreError, TxLocation};
use crate::block::{Block, BlockHeader};
use crate::genesis::Genesis;
use crate::stake::{StakeRecord, ACTIVATION_DELAY};
use crate::tx::{OutPoint, Transaction, TxOutput};
use crate::validate::{
    check_block_shape, check_fee, check_inputs, check_stake, BlockError, Parent, StakeChanges,
    TxError,
};
use crate::StateHash;
use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};
use timecoin_types::{Address, Amount, Certificate, Hash256, ValidatorSet};

/// One read snapshot of what a block at tip + 1 is checked or built against: the tip and
/// the sets voting on tip + 1 and tip + 2, with the UTXO set and stake records of the same
/// moment on demand ([`Snapshot::lookups`]).
pub(crate) struct Snapshot {
    txn: ReadTransaction,
    tip: Tip,
    /// Votes on tip + 1.
    pub set: ValidatorSet,
    /// Votes on tip + 2.
    pub next_set: ValidatorSet,
}

impl Snapshot {
    /// The state hash of the tip.
    pub fn state(&self) -> Result<StateHash, StoreError> {
        read_state(&self.txn.open_table(META)?)
    }

    /// The parent of the block at tip + 1.
    pub fn parent(&self) -> Parent<'_> {
        self.tip.parent(&self.set, &self.next_set)
    }

    /// Opens the UTXO set and the stake records of this snapshot.
    pub fn lookups(&self) -> Result<Lookups, StoreError> {
        Ok(Lookups {
            utxos: self.txn.open_table(UTXOS)?,
            stakes: self.txn.open_table(STAKES)?,
        })
    }
}

/// The UTXO set and stake records of a [`Snapshot`].
pub(crate) struct Lookups {
    utxos: ReadOnlyTable<&'static [u8; 36], &'static [u8; 28]>,
    stakes: ReadOnlyTable<&'static [u8; 36], &'static [u8; 88]>,
}

impl Lookups {
    /// The unspent output at `outpoint`.
    pub fn utxo(&self, outpoint: &OutPoint) -> Result<Option<TxOutput>, StoreError> {
        read_record(&self.utxos, outpoint, TxOutput::from_bytes)
    }

    /// The binding of staking output `outpoint`, while it is unspent.
    pub fn stake(&self, outpoint: &OutPoint) -> Result<Option<StakeRecord>, StoreError> {
        read_record(&self.stakes, outpoint, StakeRecord::from_bytes)
    }
}

impl Store {
    /// A [`Snapshot`] of the finalized state, refusing a `genesis` the store does not belong
    /// to.
    pub(crate) fn snapshot(&self, genesis: &Genesis) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        check_genesis(&meta, genesis)?;
        let tip = read_tip(&meta)?;
        let sets = txn.open_table(VALIDATOR_SETS)?;
        let set = read_set(&sets, tip.height + 1)?;
        let next_set = read_set(&sets, tip.height + 2)?;
        Ok(Snapshot {
            txn,
            tip,
            set,
            next_set,
        })
    }

    /// The finalized tip: height and block hash.
    pub fn tip(&self) -> Result<(u64, Hash256), StoreError> {
        let txn = self.db.begin_read()?;
        let tip = read_tip(&txn.open_table(META)?)?;
        Ok((tip.height, tip.hash))
    }

    /// The finalized block at `height`; [`StoreError::Pruned`] if its body was pruned
    /// ([`Store::retaining`]; [`Store::header`] still has its header).
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read()?;
        let retained_from = read_pruned_below(&txn.open_table(META)?)?;
        if height < retained_from {
            return Err(StoreError::Pruned {
                height,
                retained_from,
            });
        }
        read_encoded(&txn.open_table(BLOCKS)?, height)
    }

    /// The header of the finalized block at `height`, kept for every height even when its
    /// body is pruned.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, StoreError> {
        let txn = self.db.begin_read()?;
        read_encoded(&txn.open_table(HEADERS)?, height)
    }

    /// The lowest height whose block body is kept: 0 while nothing is pruned, and every
    /// height below it answers [`StoreError::Pruned`] to [`Store::block`].
    pub fn pruned_below(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        read_pruned_below(&txn.open_table(META)?)
    }

    /// Hash of the finalized block at `height`.
    pub fn block_hash(&self, height: u64) -> Result<Option<Hash256>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCK_HASHES)?;
        Ok(table.get(height)?.map(|g| Hash256(*g.value())))
    }

    /// Height of the finalized block with this hash.
    pub fn height_of(&self, hash: &Hash256) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCK_HEIGHTS)?;
        Ok(table.get(hash.as_bytes())?.map(|g| g.value()))
    }

    /// Finality certificate of the block at `height` (none for genesis).
    pub fn certificate(&self, height: u64) -> Result<Option<Certificate>, StoreError> {
        let txn = self.db.begin_read()?;
        read_encoded(&txn.open_table(CERTIFICATES)?, height)
    }

    /// The validator set that votes on `height`, for any height up to
    /// tip + [`ACTIVATION_DELAY`] (the set of h + 2 is fixed when block h is applied).
    pub fn validator_set(&self, height: u64) -> Result<ValidatorSet, StoreError> {
        let txn = self.db.begin_read()?;
        let tip = read_tip(&txn.open_table(META)?)?;
        if height > tip.height + ACTIVATION_DELAY {
            return Err(StoreError::UnknownHeight {
                height,
                tip: tip.height,
            });
        }
        if let Some(set) = read_encoded(&txn.open_table(VALIDATOR_SETS)?, height)? {
            return Ok(set);
        }
        // A store restored from a snapshot holds no sets below the snapshot's height.
        let retained_from = read_pruned_below(&txn.open_table(META)?)?;
        if height < retained_from {
            return Err(StoreError::Pruned {
                height,
                retained_from,
            });
        }
        Err(corrupt(format!("validator set of height {height} missing")))
    }

    /// The finalized state's hash computed afresh from every unspent output and stake record
    /// (the incremental one is kept in `meta`; this checks it, in time proportional to the
    /// state).
    pub fn recompute_state(&self) -> Result<StateHash, StoreError> {
        let txn = self.db.begin_read()?;
        let mut state = StateHash::empty();
        for entry in txn.open_table(UTXOS)?.iter()? {
            let (key, value) = entry?;
            state.insert_output(
                &OutPoint::from_bytes(key.value()),
                &TxOutput::from_bytes(value.value()),
            );
        }
        for entry in txn.open_table(STAKES)?.iter()? {
            let (key, value) = entry?;
            state.insert_stake(
                &OutPoint::from_bytes(key.value()),
                &StakeRecord::from_bytes(value.value()),
            );
        }
        Ok(state)
    }

    /// The heights `h` in `from..to` whose header hands the next height to a different set
    /// (the set of `h + 1` differs from that of `h`): the blocks a light client must be shown
    /// to walk from `from` to `to`. Sets are compared as stored bytes, which the canonical
    /// encoding makes equal exactly when the sets are.
    pub fn set_changes(&self, from: u64, to: u64) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let sets = txn.open_table(VALIDATOR_SETS)?;
        let mut changes = Vec::new();
        let mut previous: Option<Vec<u8>> = None;
        for entry in sets.range(from..to.saturating_add(1))? {
            let (height, bytes) = entry?;
            let bytes = bytes.value().to_vec();
            if previous.as_ref().is_some_and(|before| *before != bytes) {
                changes.push(height.value() - 1);
            }
            previous = Some(bytes);
        }
        Ok(changes)
    }

    /// The binding of staking output `outpoint`, while it is unspent.
    pub fn stake(&self, outpoint: &OutPoint) -> Result<Option<StakeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        read_record(&txn.open_table(STAKES)?, outpoint, StakeRecord::from_bytes)
    }

    /// Every unspent staking output (bonded or unbonding), ordered by outpoint.
    pub fn stakes(&self) -> Result<Vec<(OutPoint, StakeRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STAKES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push((
                OutPoint::from_bytes(key.value()),
                StakeRecord::from_bytes(value.value()),
            ));
        }
        Ok(out)
    }

    /// The unspent output at `outpoint`.
    pub fn utxo(&self, outpoint: &OutPoint) -> Result<Option<TxOutput>, StoreError> {
        let txn = self.db.begin_read()?;
        read_record(&txn.open_table(UTXOS)?, outpoint, TxOutput::from_bytes)
    }

    /// Every unspent output of `address`, ordered by outpoint.
    pub fn unspent(&self, address: &Address) -> Result<Vec<(OutPoint, TxOutput)>, StoreError> {
        let txn = self.db.begin_read()?;
        let by_address = txn.open_table(ADDRESS_UTXOS)?;
        let utxos = txn.open_table(UTXOS)?;
        let low = address_key(address, &OutPoint::from_bytes(&[0; 36]));
        let high = address_key(address, &OutPoint::from_bytes(&[0xff; 36]));
        let mut out = Vec::new();
        for entry in by_address.range::<&[u8; 56]>(&low..=&high)? {
            let (key, _) = entry?;
            let outpoint = address_key_outpoint(key.value());
            let output = read_record(&utxos, &outpoint, TxOutput::from_bytes)?
                .ok_or_else(|| corrupt(format!("address index names spent {outpoint}")))?;
            out.push((outpoint, output));
        }
        Ok(out)
    }

    /// Sum of the unspent outputs of `address`.
    pub fn balance(&self, address: &Address) -> Result<Amount, StoreError> {
        self.unspent(address)?
            .iter()
            .try_fold(0u64, |sum, (_, o)| sum.checked_add(o.amount))
            .ok_or_else(|| corrupt(format!("balance of {address} overflows")))
    }

    /// Height of the block that finalized transaction `txid`.
    pub fn transaction_height(&self, txid: &Hash256) -> Result<Option<u64>, StoreError> {
        Ok(self.transaction(txid)?.map(|l| l.height))
    }

    /// Where transaction `txid` was finalized, and the fee it paid.
    pub fn transaction(&self, txid: &Hash256) -> Result<Option<TxLocation>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TXS)?;
        Ok(table
            .get(txid.as_bytes())?
            .map(|g| TxLocation::from_bytes(g.value())))
    }

    /// The fee finalized transaction `txid` paid.
    pub fn transaction_fee(&self, txid: &Hash256) -> Result<Option<Amount>, StoreError> {
        Ok(self.transaction(txid)?.map(|l| l.fee))
    }

    /// Fees paid by the transactions of the block at `height`, in block order.
    pub fn block_fees(&self, height: u64) -> Result<Option<Vec<Amount>>, StoreError> {
        let Some(block) = self.block(height)? else {
            return Ok(None);
        };
        block
            .transactions
            .iter()
            .map(|tx| {
                self.transaction(&tx.txid())?
                    .map(|l| l.fee)
                    .ok_or_else(|| corrupt(format!("transaction {} not indexed", tx.txid())))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Checks a transaction statelessly, against `genesis`'s minimum output and fee rate, and
    /// against the current UTXO set and staking state (as if in the block at tip + 1), and
    /// returns its fee (at least [`Genesis::min_fee_for`] the transaction). `genesis` must be
    /// the store's: unlike a block, a transaction is not checked against the stored genesis
    /// hash, which would cost a hash of the whole genesis per transaction.
    pub fn validate_transaction(
        &self,
        tx: &Transaction,
        genesis: &Genesis,
    ) -> Result<Amount, TxError> {
        self.checked.check(tx, genesis)?;
        let storage = |e: StoreError| TxError::Storage(e.to_string());
        let txn = self.db.begin_read().map_err(|e| storage(e.into()))?;
        let tip =
            read_tip(&txn.open_table(META).map_err(|e| storage(e.into()))?).map_err(storage)?;
        let next_set = read_set(
            &txn.open_table(VALIDATOR_SETS)
                .map_err(|e| storage(e.into()))?,
            tip.height + 2,
        )
        .map_err(storage)?;
        let stakes = txn.open_table(STAKES).map_err(|e| storage(e.into()))?;
        // The unbonding delay only dates the unlock; it does not decide validity.
        check_stake(
            tx,
            tip.height + 1,
            0,
            &next_set,
            &mut StakeChanges::default(),
            |op| read_record(&stakes, op, StakeRecord::from_bytes).map_err(storage),
        )?;
        let utxos = txn.open_table(UTXOS).map_err(|e| storage(e.into()))?;
        let fee = check_inputs(tx, |op| {
            read_record(&utxos, op, TxOutput::from_bytes).map_err(storage)
        })?;
        check_fee(tx, fee, genesis)?;
        Ok(fee)
    }

    /// Checks that proposal `block` is a valid next block (tip + 1) under `genesis`: header,
    /// proposer, roots, validator set, sizes, a time from its slot's start to at most
    /// [`crate::MAX_CLOCK_DRIFT_MS`] past `now_ms` (the receiver's clock, milliseconds since
    /// the Unix epoch), every transaction, no double spend, exact rewards.
    /// [`BlockError::is_local`] tells a block invalid everywhere from one refused because of
    /// this node's state or clock.
    pub fn validate_block(
        &self,
        block: &Block,
        genesis: &Genesis,
        now_ms: u64,
    ) -> Result<(), BlockError> {
        self.validate_block_inner(block, genesis, now_ms)
            .map_err(|e| match e {
                StoreError::InvalidBlock(e) => e,
                StoreError::GenesisMismatch { stored, given } => {
                    BlockError::WrongGenesis { stored, given }
                }
                other => BlockError::Storage(other.to_string()),
            })
    }

    fn validate_block_inner(
        &self,
        block: &Block,
        genesis: &Genesis,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let snapshot = self.snapshot(genesis)?;
        check_block_shape(
            block,
            genesis,
            &snapshot.parent(),
            Some(now_ms),
            &self.checked,
        )?;
        let lookups = snapshot.lookups()?;
        let spends = check_spends(
            block,
            genesis,
            &snapshot.set,
            &snapshot.next_set,
            &lookups.stakes,
            |op| lookups.utxo(op),
        )?;
        // Apply refuses a block whose set change fails, so validation must too.
        spends.changes.apply_to(&snapshot.next_set)?;
        check_state_root(block, &spends.state_after(snapshot.state()?, block))?;
        Ok(())
    }
}
