//! The node's database: one redb file holding blocks, finality certificates, the UTXO set,
//! validator sets, chain metadata, the validator's last-signed state and equivocation
//! evidence. Applying a finalized block is a single write transaction, so after a crash the
//! file is at the previous block or the next one, never in between.

use crate::block::{reward_outpoint, Block, BlockHeader};
use crate::genesis::{Genesis, GenesisError};
use crate::rewards::{reward_outputs, subsidy};
use crate::stake::{StakeRecord, ACTIVATION_DELAY};
use crate::tx::{OutPoint, Transaction, TxOutput};
use crate::validate::{
    check_block_shape, check_block_spends, check_inputs, check_stake, BlockError, CheckedTxs,
    Parent, StakeChanges, TxError,
};
use crate::{MAX_BLOCK_BYTES, MAX_BLOCK_TRANSACTIONS};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use std::collections::HashSet;
use std::path::Path;
use timecoin_types::{
    codec, Address, Amount, Certificate, CertificateError, Hash256, PublicKey, ValidatorSet,
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_HEIGHTS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_heights");
const BLOCK_HASHES: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("block_hashes");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const VALIDATOR_SETS: TableDefinition<u64, &[u8]> = TableDefinition::new("validator_sets");
const UTXOS: TableDefinition<&[u8; 36], &[u8; 28]> = TableDefinition::new("utxos");
/// Address ‖ outpoint, so one address's outputs are a key range.
const ADDRESS_UTXOS: TableDefinition<&[u8; 56], ()> = TableDefinition::new("address_utxos");
const TXS: TableDefinition<&[u8; 32], &[u8; 20]> = TableDefinition::new("txs");
const SIGNER: TableDefinition<&str, &[u8]> = TableDefinition::new("signer");
const EVIDENCE: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("evidence");
/// Staking outpoint → [`StakeRecord`], for every staking output not yet spent.
const STAKES: TableDefinition<&[u8; 36], &[u8; 88]> = TableDefinition::new("stakes");

const META_GENESIS: &str = "genesis_hash";
const META_TIP: &str = "tip";
const SIGNER_STATE: &str = "last_signed";

/// Decode limit for what this store wrote itself (blocks, certificates, sets).
const STORED_LIMIT: usize = MAX_BLOCK_BYTES;
/// Room left in a built block for CBOR framing beyond the header and rewards.
const BUILD_MARGIN: usize = 1024;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption it detected, a lock held by another process).
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// Stored bytes that do not decode, or a missing record that must exist.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// No genesis yet.
    #[error("the store has no genesis; call init_genesis first")]
    NotInitialized,
    /// The genesis given is not valid.
    #[error("invalid genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The store was initialized with another genesis.
    #[error("the store belongs to genesis {stored}, not {given}")]
    GenesisMismatch {
        /// Hash in the store.
        stored: Hash256,
        /// Hash of the genesis given.
        given: Hash256,
    },
    /// The block is not at tip + 1.
    #[error("block height {got} is not the next height {expected}")]
    NotNextHeight {
        /// Tip + 1.
        expected: u64,
        /// The block's height.
        got: u64,
    },
    /// A height beyond tip + [`ACTIVATION_DELAY`], whose validator set is not known yet.
    #[error("no validator set for height {height} yet (tip is {tip})")]
    UnknownHeight {
        /// Height asked for.
        height: u64,
        /// Current tip.
        tip: u64,
    },
    /// The finality certificate does not prove the block final.
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The block breaks a validation rule.
    #[error("invalid block: {0}")]
    InvalidBlock(#[from] BlockError),
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(e: $error) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Where a finalized transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Position in the block's transactions.
    pub index: u32,
    /// Fee it paid.
    pub fee: Amount,
}

impl TxLocation {
    fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..12].copy_from_slice(&self.index.to_be_bytes());
        out[12..].copy_from_slice(&self.fee.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8; 20]) -> TxLocation {
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[..8]);
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[8..12]);
        let mut fee = [0u8; 8];
        fee.copy_from_slice(&bytes[12..]);
        TxLocation {
            height: u64::from_be_bytes(height),
            index: u32::from_be_bytes(index),
            fee: u64::from_be_bytes(fee),
        }
    }
}

/// The finalized tip as kept in the metadata table.
struct Tip {
    height: u64,
    hash: Hash256,
    time_ms: u64,
}

impl Tip {
    fn of(header: &BlockHeader, hash: Hash256) -> Tip {
        Tip {
            height: header.height,
            hash,
            time_ms: header.time_ms,
        }
    }

    fn to_bytes(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..40].copy_from_slice(self.hash.as_bytes());
        out[40..].copy_from_slice(&self.time_ms.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Tip, StoreError> {
        let bytes: &[u8; 48] = bytes.try_into().map_err(|_| corrupt("tip record"))?;
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[8..40]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&bytes[40..]);
        Ok(Tip {
            height: u64::from_be_bytes(height),
            hash: Hash256(hash),
            time_ms: u64::from_be_bytes(time),
        })
    }
}

fn address_key(address: &Address, outpoint: &OutPoint) -> [u8; 56] {
    let mut key = [0u8; 56];
    key[..20].copy_from_slice(&address.0);
    key[20..].copy_from_slice(&outpoint.to_bytes());
    key
}

fn read_tip(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Tip, StoreError> {
    let guard = meta.get(META_TIP)?.ok_or(StoreError::NotInitialized)?;
    Tip::from_bytes(guard.value())
}

fn check_genesis(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    genesis: &Genesis,
) -> Result<(), StoreError> {
    let guard = meta.get(META_GENESIS)?.ok_or(StoreError::NotInitialized)?;
    let stored = Hash256(
        guard
            .value()
            .try_into()
            .map_err(|_| corrupt("genesis hash record"))?,
    );
    let given = genesis.hash();
    if stored != given {
        return Err(StoreError::GenesisMismatch { stored, given });
    }
    Ok(())
}

fn read_set(
    sets: &impl ReadableTable<u64, &'static [u8]>,
    height: u64,
) -> Result<ValidatorSet, StoreError> {
    let guard = sets
        .get(height)?
        .ok_or_else(|| corrupt(format!("validator set of height {height} missing")))?;
    codec::decode(guard.value(), STORED_LIMIT).map_err(corrupt)
}

fn read_stake(
    stakes: &impl ReadableTable<&'static [u8; 36], &'static [u8; 88]>,
    outpoint: &OutPoint,
) -> Result<Option<StakeRecord>, StoreError> {
    Ok(stakes
        .get(&outpoint.to_bytes())?
        .map(|guard| StakeRecord::from_bytes(guard.value())))
}

fn read_utxo(
    utxos: &impl ReadableTable<&'static [u8; 36], &'static [u8; 28]>,
    outpoint: &OutPoint,
) -> Result<Option<TxOutput>, StoreError> {
    Ok(utxos
        .get(&outpoint.to_bytes())?
        .map(|guard| TxOutput::from_bytes(guard.value())))
}

/// Removes an output from the UTXO set and the address index, returning it if it existed.
fn spend_utxo(
    utxos: &mut Table<&'static [u8; 36], &'static [u8; 28]>,
    by_address: &mut Table<&'static [u8; 56], ()>,
    outpoint: &OutPoint,
) -> Result<Option<TxOutput>, StoreError> {
    let removed = utxos
        .remove(&outpoint.to_bytes())?
        .map(|g| TxOutput::from_bytes(g.value()));
    if let Some(output) = &removed {
        by_address.remove(&address_key(&output.address, outpoint))?;
    }
    Ok(removed)
}

/// Runs a UTXO lookup inside validation code that only speaks [`TxError`], keeping the real
/// storage error aside so the caller can report it as one.
fn lookup_keeping_error<T>(
    kept: &mut Option<StoreError>,
    result: Result<T, StoreError>,
) -> Result<T, TxError> {
    result.map_err(|e| {
        let message = e.to_string();
        *kept = Some(e);
        TxError::Storage(message)
    })
}

/// The node's database. All methods take `&self`; redb serializes writers and gives readers
/// consistent snapshots, so a `Store` can be shared between threads.
pub struct Store {
    db: Database,
    checked: CheckedTxs,
}

impl Store {
    /// Opens the database file, creating it and its tables if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(META)?;
        txn.open_table(BLOCKS)?;
        txn.open_table(BLOCK_HEIGHTS)?;
        txn.open_table(BLOCK_HASHES)?;
        txn.open_table(CERTIFICATES)?;
        txn.open_table(VALIDATOR_SETS)?;
        txn.open_table(UTXOS)?;
        txn.open_table(ADDRESS_UTXOS)?;
        txn.open_table(TXS)?;
        txn.open_table(SIGNER)?;
        txn.open_table(EVIDENCE)?;
        txn.open_table(STAKES)?;
        txn.commit()?;
        Ok(Store {
            db,
            checked: CheckedTxs::default(),
        })
    }

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
            let mut utxos = txn.open_table(UTXOS)?;
            let mut by_address = txn.open_table(ADDRESS_UTXOS)?;
            for (i, output) in block.rewards.iter().enumerate() {
                let outpoint = reward_outpoint(0, i as u32);
                utxos.insert(&outpoint.to_bytes(), &output.to_bytes())?;
                by_address.insert(&address_key(&output.address, &outpoint), ())?;
            }
            let mut sets = txn.open_table(VALIDATOR_SETS)?;
            let set_bytes = codec::encode(&set);
            // Height 0 is never voted on, but every height has a set; the sets are known
            // ACTIVATION_DELAY heights past the tip.
            for height in 0..=ACTIVATION_DELAY {
                sets.insert(height, set_bytes.as_slice())?;
            }
            txn.open_table(BLOCKS)?
                .insert(0, codec::encode(&block).as_slice())?;
            txn.open_table(BLOCK_HEIGHTS)?.insert(hash.as_bytes(), 0)?;
            txn.open_table(BLOCK_HASHES)?.insert(0, hash.as_bytes())?;
            meta.insert(META_GENESIS, genesis.hash().as_bytes().as_slice())?;
            meta.insert(META_TIP, Tip::of(&block.header, hash).to_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The finalized tip: height and block hash.
    pub fn tip(&self) -> Result<(u64, Hash256), StoreError> {
        let txn = self.db.begin_read()?;
        let tip = read_tip(&txn.open_table(META)?)?;
        Ok((tip.height, tip.hash))
    }

    /// The finalized block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCKS)?;
        let Some(guard) = table.get(height)? else {
            return Ok(None);
        };
        codec::decode(guard.value(), STORED_LIMIT)
            .map(Some)
            .map_err(corrupt)
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
        let table = txn.open_table(CERTIFICATES)?;
        let Some(guard) = table.get(height)? else {
            return Ok(None);
        };
        codec::decode(guard.value(), STORED_LIMIT)
            .map(Some)
            .map_err(corrupt)
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
        read_set(&txn.open_table(VALIDATOR_SETS)?, height)
    }

    /// The binding of staking output `outpoint`, while it is unspent.
    pub fn stake(&self, outpoint: &OutPoint) -> Result<Option<StakeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        read_stake(&txn.open_table(STAKES)?, outpoint)
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
        read_utxo(&txn.open_table(UTXOS)?, outpoint)
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
            let mut outpoint_bytes = [0u8; 36];
            outpoint_bytes.copy_from_slice(&key.value()[20..]);
            let outpoint = OutPoint::from_bytes(&outpoint_bytes);
            let output = read_utxo(&utxos, &outpoint)?
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

    /// Checks a transaction statelessly and against the current UTXO set and staking state
    /// (as if in the block at tip + 1), and returns its fee (at least `min_fee`).
    pub fn validate_transaction(
        &self,
        tx: &Transaction,
        chain_id: &str,
        min_fee: Amount,
    ) -> Result<Amount, TxError> {
        self.checked.check(tx, chain_id)?;
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
            |op| read_stake(&stakes, op).map_err(storage),
        )?;
        let utxos = txn.open_table(UTXOS).map_err(|e| storage(e.into()))?;
        let fee = check_inputs(tx, |op| read_utxo(&utxos, op).map_err(storage))?;
        if fee < min_fee {
            return Err(TxError::FeeTooLow { fee, min: min_fee });
        }
        Ok(fee)
    }

    /// Checks that `block` is a valid next block (tip + 1) under `genesis`: header, proposer,
    /// roots, validator set, sizes, every transaction, no double spend, exact rewards.
    pub fn validate_block(&self, block: &Block, genesis: &Genesis) -> Result<(), BlockError> {
        self.validate_block_inner(block, genesis)
            .map_err(|e| match e {
                StoreError::InvalidBlock(e) => e,
                StoreError::GenesisMismatch { stored, given } => {
                    BlockError::WrongGenesis { stored, given }
                }
                other => BlockError::Storage(other.to_string()),
            })
    }

    fn validate_block_inner(&self, block: &Block, genesis: &Genesis) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        check_genesis(&meta, genesis)?;
        let tip = read_tip(&meta)?;
        let sets = txn.open_table(VALIDATOR_SETS)?;
        let set = read_set(&sets, tip.height + 1)?;
        let next_set = read_set(&sets, tip.height + 2)?;
        let parent = Parent {
            height: tip.height,
            hash: tip.hash,
            time_ms: tip.time_ms,
            set: &set,
        };
        check_block_shape(block, genesis, &parent, &self.checked)?;
        let utxos = txn.open_table(UTXOS)?;
        let stakes = txn.open_table(STAKES)?;
        let mut kept = None;
        let mut kept_stake = None;
        let result = check_block_spends(
            block,
            genesis,
            &set,
            &next_set,
            |op| lookup_keeping_error(&mut kept_stake, read_stake(&stakes, op)),
            |op| lookup_keeping_error(&mut kept, read_utxo(&utxos, op)),
        );
        if let Some(e) = kept.or(kept_stake) {
            return Err(e);
        }
        let (_, changes) = result?;
        // Apply refuses a block whose set change fails, so validation must too.
        changes.apply_to(&next_set)?;
        Ok(())
    }

    /// Builds the block for tip + 1 from `candidates` in the given order (callers pass them
    /// best first), skipping any that no longer validate, conflict with an earlier pick or do
    /// not fit the size limits. The time is raised to the parent's if it is earlier.
    pub fn build_block(
        &self,
        genesis: &Genesis,
        round: u32,
        proposer: PublicKey,
        time_ms: u64,
        candidates: Vec<Transaction>,
    ) -> Result<Block, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        check_genesis(&meta, genesis)?;
        let tip = read_tip(&meta)?;
        let height = tip.height + 1;
        let sets = txn.open_table(VALIDATOR_SETS)?;
        let set = read_set(&sets, height)?;
        let next_set = read_set(&sets, height + 1)?;
        let utxos = txn.open_table(UTXOS)?;
        let stakes = txn.open_table(STAKES)?;
        let mut changes = StakeChanges::default();

        let mut block = Block {
            header: BlockHeader {
                chain_id: genesis.chain_id.clone(),
                height,
                round,
                prev_hash: tip.hash,
                proposer,
                time_ms: time_ms.max(tip.time_ms),
                tx_root: Hash256::ZERO,
                rewards_root: Hash256::ZERO,
                validator_set_hash: set.hash(),
            },
            transactions: Vec::new(),
            // Sized with the largest possible amounts, so the real rewards can only be
            // smaller and the transaction budget below is safe.
            rewards: reward_outputs(&set, &proposer, Amount::MAX),
        };
        let budget = MAX_BLOCK_BYTES.saturating_sub(block.encoded_len() + BUILD_MARGIN);

        let mut used = 0usize;
        let mut spent = HashSet::new();
        let mut fees: Amount = 0;
        for tx in candidates {
            if block.transactions.len() == MAX_BLOCK_TRANSACTIONS {
                break;
            }
            let size = tx.encoded_len();
            if used + size > budget
                || tx.inputs.iter().any(|i| spent.contains(&i.prev))
                || self.checked.check(&tx, &genesis.chain_id).is_err()
            {
                continue;
            }
            let mut kept = None;
            let fee = check_inputs(&tx, |op| {
                lookup_keeping_error(&mut kept, read_utxo(&utxos, op))
            });
            if let Some(e) = kept {
                return Err(e);
            }
            let Ok(fee) = fee else { continue };
            if fee < genesis.min_fee {
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
                &next_set,
                &mut changes,
                |op| lookup_keeping_error(&mut kept, read_stake(&stakes, op)),
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
            block.transactions.push(tx);
        }

        let total = subsidy(height)
            .checked_add(fees)
            .ok_or(BlockError::RewardOverflow)?;
        block.rewards = reward_outputs(&set, &proposer, total);
        block.header.tx_root = crate::block::tx_root(&block.transactions);
        block.header.rewards_root = crate::block::rewards_root(&block.rewards);
        Ok(block)
    }

    /// Applies a finalized block and its certificate in one write transaction: the block by
    /// height and hash, the certificate, spent and new UTXOs, the transaction index, the next
    /// height's validator set and the tip. Refuses a block that is not tip + 1, whose
    /// certificate does not verify against the height's set, or that is invalid; a refused
    /// block leaves the store untouched.
    pub fn apply_block(
        &self,
        block: &Block,
        certificate: &Certificate,
        genesis: &Genesis,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
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
            let parent = Parent {
                height: tip.height,
                hash: tip.hash,
                time_ms: tip.time_ms,
                set: &set,
            };
            check_block_shape(block, genesis, &parent, &self.checked)?;

            // Spending writes as it goes: a later failure (a double spend, wrong rewards)
            // returns before commit and the dropped transaction discards these writes.
            let mut utxos = txn.open_table(UTXOS)?;
            let mut by_address = txn.open_table(ADDRESS_UTXOS)?;
            let mut stakes = txn.open_table(STAKES)?;
            let mut kept = None;
            let mut kept_stake = None;
            let result = check_block_spends(
                block,
                genesis,
                &set,
                &next_set,
                |op| lookup_keeping_error(&mut kept_stake, read_stake(&stakes, op)),
                |op| lookup_keeping_error(&mut kept, spend_utxo(&mut utxos, &mut by_address, op)),
            );
            if let Some(e) = kept.or(kept_stake) {
                return Err(e);
            }
            let (fees, changes) = result?;
            let after_next = changes.apply_to(&next_set)?;
            for outpoint in &changes.released {
                stakes.remove(&outpoint.to_bytes())?;
            }
            for (outpoint, record) in changes.entered.iter().chain(&changes.exited) {
                stakes.insert(&outpoint.to_bytes(), &record.to_bytes())?;
            }

            let mut txs = txn.open_table(TXS)?;
            for (index, (tx, fee)) in block.transactions.iter().zip(fees).enumerate() {
                let txid = tx.txid();
                for (i, output) in tx.outputs.iter().enumerate() {
                    let outpoint = OutPoint {
                        txid,
                        index: i as u32,
                    };
                    utxos.insert(&outpoint.to_bytes(), &output.to_bytes())?;
                    by_address.insert(&address_key(&output.address, &outpoint), ())?;
                }
                let location = TxLocation {
                    height,
                    index: index as u32,
                    fee,
                };
                txs.insert(txid.as_bytes(), &location.to_bytes())?;
            }
            for (i, output) in block.rewards.iter().enumerate() {
                let outpoint = reward_outpoint(height, i as u32);
                utxos.insert(&outpoint.to_bytes(), &output.to_bytes())?;
                by_address.insert(&address_key(&output.address, &outpoint), ())?;
            }

            txn.open_table(BLOCKS)?
                .insert(height, codec::encode(block).as_slice())?;
            txn.open_table(BLOCK_HEIGHTS)?
                .insert(hash.as_bytes(), height)?;
            txn.open_table(BLOCK_HASHES)?
                .insert(height, hash.as_bytes())?;
            txn.open_table(CERTIFICATES)?
                .insert(height, codec::encode(certificate).as_slice())?;
            // The block's (de)registrations take effect ACTIVATION_DELAY heights later.
            sets.insert(
                height + ACTIVATION_DELAY,
                codec::encode(&after_next).as_slice(),
            )?;
            meta.insert(META_TIP, Tip::of(&block.header, hash).to_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The consensus signer's last-signed state, as opaque bytes.
    pub fn load_signer_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SIGNER)?;
        Ok(table.get(SIGNER_STATE)?.map(|g| g.value().to_vec()))
    }

    /// Replaces the signer state; it is on disk when this returns, so a vote may be sent.
    pub fn save_signer_state(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SIGNER)?.insert(SIGNER_STATE, bytes)?;
        txn.commit()?;
        Ok(())
    }

    /// Records a piece of equivocation evidence (opaque bytes) seen at `height`.
    pub fn put_evidence(&self, height: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(EVIDENCE)?;
            let next = match table.range((height, 0)..=(height, u64::MAX))?.next_back() {
                Some(last) => last?.0.value().1 + 1,
                None => 0,
            };
            table.insert((height, next), bytes)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` pieces of evidence from `from_height` on, oldest first.
    pub fn evidence(
        &self,
        from_height: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE)?;
        let mut out = Vec::new();
        for entry in table.range((from_height, 0)..)?.take(limit) {
            let (key, value) = entry?;
            out.push((key.value().0, value.value().to_vec()));
        }
        Ok(out)
    }
}
