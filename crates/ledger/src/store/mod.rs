//! The node's database: one redb file holding blocks, finality certificates, the UTXO set,
//! validator sets, chain metadata, the validator's last-signed state and equivocation
//! evidence. Applying a finalized block is a single write transaction, so after a crash the
//! file is at the previous block or the next one, never in between.
//!
//! A store opened [`Store::retaining`] N blocks keeps the bodies (transactions, rewards) of
//! the last N heights only, deleting the oldest in the same write transaction as each block
//! applied; headers, certificates and validator sets are kept for every height.
//!
//! [`tables`] names every table and the layout of its keys and values (the on-disk format);
//! [`read`] answers queries and checks transactions and blocks against one read snapshot;
//! [`apply`] writes the genesis and finalized blocks. Assembling a block from candidates is
//! [`crate::build`]'s job, on a snapshot taken here.

use crate::genesis::GenesisError;
use crate::stake::StakeRecord;
use crate::tx::{OutPoint, TxOutput};
use crate::validate::{
    check_block_spends, state_after, BlockError, CheckedTxs, StakeChanges, TxError,
};
use crate::{Block, Genesis, StateHash};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use std::path::{Path, PathBuf};
use tables::{
    create_tables, read_record, read_tip, BLOCKS, EVIDENCE, HEADERS, META, META_GENESIS, SIGNER,
    SIGNER_STATE, STORED_LIMIT,
};
use timecoin_types::{codec, Amount, CertificateError, Hash256, ValidatorSet};

#[cfg(doc)]
use crate::ACTIVATION_DELAY;

mod apply;
mod read;
mod snapshot;
mod tables;

pub use snapshot::{Restore, SnapshotJob};

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
    /// State sync installs a snapshot only into a store that holds nothing but the genesis.
    #[error("state sync needs a database at the genesis; this one is at height {tip} (remove the data directory to join by state sync)")]
    NotFresh {
        /// The store's tip.
        tip: u64,
    },
    /// A snapshot (its manifest or a chunk) was refused.
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The body of this height was pruned ([`Store::retaining`]); its header, certificate
    /// and validator set are still stored.
    #[error(
        "block {height} is pruned: this store keeps block bodies from height {retained_from} on"
    )]
    Pruned {
        /// Height asked for.
        height: u64,
        /// The lowest height whose body is kept.
        retained_from: u64,
    },
}

impl StoreError {
    /// True when the database file is open in another process (a running node holds its
    /// lock): opening fails at once with this error rather than waiting for the lock.
    pub fn is_in_use(&self) -> bool {
        matches!(self, StoreError::Database(redb::Error::DatabaseAlreadyOpen))
    }
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

/// Runs a UTXO lookup inside validation code that only speaks [`TxError`], keeping the real
/// storage error aside so the caller can report it as one.
pub(crate) fn lookup_keeping_error<T>(
    kept: &mut Option<StoreError>,
    result: Result<T, StoreError>,
) -> Result<T, TxError> {
    result.map_err(|e| {
        let message = e.to_string();
        *kept = Some(e);
        TxError::Storage(message)
    })
}

/// What a valid block spends: the fee of each transaction, the staking changes and the
/// outputs it consumes.
struct Spends {
    fees: Vec<Amount>,
    changes: StakeChanges,
    spent: Vec<(OutPoint, TxOutput)>,
}

impl Spends {
    /// The state after the block, from its parent's.
    fn state_after(&self, parent: StateHash, block: &Block) -> StateHash {
        state_after(parent, block, &self.spent, &self.changes)
    }
}

/// Runs `check_block_spends` with stake records read from `stakes` and inputs spent
/// through `spend` (a read when checking, a removal when applying). A storage failure inside
/// a lookup is returned as itself, the UTXO side's first, not as the rejection it caused.
fn check_spends<F>(
    block: &Block,
    genesis: &Genesis,
    set: &ValidatorSet,
    next_set: &ValidatorSet,
    stakes: &impl ReadableTable<&'static [u8; 36], &'static [u8; 88]>,
    mut spend: F,
) -> Result<Spends, StoreError>
where
    F: FnMut(&OutPoint) -> Result<Option<TxOutput>, StoreError>,
{
    let mut kept = None;
    let mut spent = Vec::new();
    let mut kept_stake = None;
    let result = check_block_spends(
        block,
        genesis,
        set,
        next_set,
        |op| {
            lookup_keeping_error(
                &mut kept_stake,
                read_record(stakes, op, StakeRecord::from_bytes),
            )
        },
        |op| {
            let output = lookup_keeping_error(&mut kept, spend(op))?;
            if let Some(output) = output {
                spent.push((*op, output));
            }
            Ok(output)
        },
    );
    if let Some(e) = kept.or(kept_stake) {
        return Err(e);
    }
    let (fees, changes) = result?;
    Ok(Spends {
        fees,
        changes,
        spent,
    })
}

/// The node's database. All methods take `&self`; redb serializes writers and gives readers
/// consistent snapshots, so a `Store` can be shared between threads.
pub struct Store {
    db: Database,
    /// The database file.
    path: PathBuf,
    /// Block bodies kept: the last this many heights; 0 keeps every body.
    retain_blocks: u64,
    /// Stateless checks already passed, shared by validation, apply and block building.
    pub(crate) checked: CheckedTxs,
    /// Where and how often snapshots are written, if they are.
    snapshots: Option<snapshot::Snapshots>,
}

/// Most bodies one block's apply prunes: when pruning is turned on for a long chain, the
/// backlog goes a bounded batch per block instead of in one huge transaction.
const PRUNE_BATCH: u64 = 1024;

/// Fills `headers` from `blocks` for a file written before `headers` existed (whose bodies
/// are all still there: those versions never pruned). Costs one lookup when nothing is
/// missing.
fn backfill_headers(txn: &WriteTransaction) -> Result<(), StoreError> {
    let tip = match read_tip(&txn.open_table(META)?) {
        Ok(tip) => tip.height,
        Err(StoreError::NotInitialized) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut headers = txn.open_table(HEADERS)?;
    if headers.get(tip)?.is_some() {
        return Ok(());
    }
    let blocks = txn.open_table(BLOCKS)?;
    for entry in blocks.iter()? {
        let (height, bytes) = entry?;
        let block: Block = codec::decode(bytes.value(), STORED_LIMIT).map_err(corrupt)?;
        headers.insert(height.value(), codec::encode(&block.header).as_slice())?;
    }
    Ok(())
}

impl Store {
    /// Opens the database file, creating it and its tables if needed; it keeps every block
    /// body until [`Store::retaining`] says otherwise.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        create_tables(&txn)?;
        backfill_headers(&txn)?;
        txn.commit()?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
            retain_blocks: 0,
            checked: CheckedTxs::default(),
            snapshots: None,
        })
    }

    /// This store, keeping from now on the bodies of the last `blocks` heights only (0 keeps
    /// every body). Each block applied deletes the bodies that fell out of that window (at most
    /// 1,024 at a time, when the window shrank) in its own write transaction;
    /// headers, certificates, validator sets and the transaction index stay for every height.
    /// A body once pruned does not come back when the window grows again.
    pub fn retaining(mut self, blocks: u64) -> Store {
        self.retain_blocks = blocks;
        self
    }

    /// How many heights' block bodies are kept (0: all).
    pub fn retain_blocks(&self) -> u64 {
        self.retain_blocks
    }

    /// The size of the database file in bytes.
    pub fn file_bytes(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// The bytes of the pages in use (the file also holds free pages, and grows in regions):
    /// what the data takes, for measurements. Briefly holds the write lock.
    pub fn allocated_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
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

    /// The hash of the genesis the store was initialized with, `None` before
    /// [`Store::init_genesis`]: lets a tool check that a database belongs to a home's chain
    /// without writing to it.
    pub fn genesis_hash(&self) -> Result<Option<Hash256>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(guard) = meta.get(META_GENESIS)? else {
            return Ok(None);
        };
        let bytes: [u8; 32] = guard
            .value()
            .try_into()
            .map_err(|_| corrupt("genesis hash record"))?;
        Ok(Some(Hash256(bytes)))
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
