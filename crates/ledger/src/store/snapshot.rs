//! Writing the state of a height as a snapshot, and installing one fetched from peers (see
//! [`crate::snapshot`] for the format).

use super::tables::{
    address_key, check_genesis, read_tip, Tip, ADDRESS_UTXOS, BLOCK_HASHES, BLOCK_HEIGHTS,
    CERTIFICATES, HEADERS, META, META_PRUNED_BELOW, META_STATE, META_TIP, STAKES, UTXOS,
    VALIDATOR_SETS,
};
use super::{Store, StoreError};
use crate::block::BlockHeader;
use crate::genesis::Genesis;
use crate::snapshot::{
    decode_chunk, Record, SnapshotConfig, SnapshotDir, SnapshotError, SnapshotManifest,
    SNAPSHOT_FORMAT,
};
use crate::stake::StakeRecord;
use crate::tx::{OutPoint, TxOutput};
use crate::StateHash;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use timecoin_types::{codec, Certificate, ValidatorSet};

/// The snapshots a store writes, and whether one is being written now.
pub(super) struct Snapshots {
    pub config: SnapshotConfig,
    /// Set while a [`SnapshotJob`] lives: one snapshot at a time.
    pub writing: Arc<AtomicBool>,
}

/// A snapshot to write: a read transaction of the height's state, held until written.
pub struct SnapshotJob {
    txn: ReadTransaction,
    height: u64,
    chain_id: String,
    config: SnapshotConfig,
    writing: Arc<AtomicBool>,
}

impl Drop for SnapshotJob {
    fn drop(&mut self) {
        self.writing.store(false, Ordering::Release);
    }
}

/// What a joining node verified and now installs: the manifest's records, and the header,
/// certificate and validator sets that let the chain go on from the snapshot's height.
pub struct Restore {
    /// The snapshot.
    pub manifest: SnapshotManifest,
    /// The header of the snapshot's height.
    pub header: BlockHeader,
    /// The certificate that finalized it.
    pub certificate: Certificate,
    /// The sets of the snapshot's height and of the next two (fixed by then).
    pub sets: [ValidatorSet; 3],
}

impl Store {
    /// This store, writing snapshots as `config` says.
    pub fn with_snapshots(mut self, config: SnapshotConfig) -> Store {
        self.snapshots = Some(Snapshots {
            config,
            writing: Arc::default(),
        });
        self
    }

    /// The directory of the snapshots this store writes, if it writes any.
    pub fn snapshot_dir(&self) -> Option<SnapshotDir> {
        self.snapshots
            .as_ref()
            .map(|s| SnapshotDir::new(&s.config.dir))
    }

    /// Whether this store writes a snapshot of `height`: a run of blocks applied in one
    /// transaction must end there, so that the snapshot sees the state of that height.
    pub fn is_snapshot_height(&self, height: u64) -> bool {
        self.snapshots
            .as_ref()
            .is_some_and(|s| s.config.interval > 0 && height.is_multiple_of(s.config.interval))
    }

    /// The snapshot of `height` to write, when it is a snapshot height, the tip is still
    /// there and no other snapshot is being written. Call it right after applying the block;
    /// the job holds the state of that moment however long the writing takes.
    pub fn begin_snapshot(
        &self,
        height: u64,
        chain_id: &str,
    ) -> Result<Option<SnapshotJob>, StoreError> {
        let Some(snapshots) = self
            .snapshots
            .as_ref()
            .filter(|_| self.is_snapshot_height(height))
        else {
            return Ok(None);
        };
        let txn = self.db.begin_read()?;
        if read_tip(&txn.open_table(META)?)?.height != height
            || snapshots.writing.swap(true, Ordering::AcqRel)
        {
            return Ok(None);
        }
        Ok(Some(SnapshotJob {
            txn,
            height,
            chain_id: chain_id.to_string(),
            config: snapshots.config.clone(),
            writing: snapshots.writing.clone(),
        }))
    }

    /// Installs a verified snapshot into a store that holds only the genesis, in one write
    /// transaction: every chunk is read through `chunk`, checked against the manifest and
    /// the order, and the whole must hash to the header's state root; anything wrong leaves
    /// the store as it was. Afterwards the tip is the snapshot's height, whose header,
    /// certificate and sets are stored; the bodies of every height up to it are absent
    /// ([`StoreError::Pruned`]).
    pub fn install_snapshot(
        &self,
        genesis: &Genesis,
        restore: &Restore,
        mut chunk: impl FnMut(u32) -> Result<Vec<u8>, SnapshotError>,
    ) -> Result<(), StoreError> {
        check_restore(genesis, restore)?;
        let Restore {
            manifest,
            header,
            certificate,
            sets,
        } = restore;
        let height = manifest.height;
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            check_genesis(&meta, genesis)?;
            let tip = read_tip(&meta)?.height;
            if tip != 0 {
                return Err(StoreError::NotFresh { tip });
            }
            let mut utxos = txn.open_table(UTXOS)?;
            let mut by_address = txn.open_table(ADDRESS_UTXOS)?;
            let mut stakes = txn.open_table(STAKES)?;
            let mut set_table = txn.open_table(VALIDATOR_SETS)?;
            // The genesis allocations and sets give way to the snapshot's.
            utxos.retain(|_, _| false)?;
            by_address.retain(|_, _| false)?;
            stakes.retain(|_, _| false)?;
            set_table.retain(|_, _| false)?;

            let mut state = StateHash::empty();
            let mut last = None;
            for index in 0..manifest.chunks.len() as u32 {
                let records = decode_chunk(manifest, index, &chunk(index)?)?;
                if let (Some(last), Some(first)) = (last, records.first()) {
                    if first.order_key() <= last {
                        return Err(SnapshotError::Chunk {
                            index,
                            reason: "its first record does not follow the previous chunk's last"
                                .into(),
                        }
                        .into());
                    }
                }
                last = records.last().map(Record::order_key).or(last);
                for record in &records {
                    match record {
                        Record::Output(op, output) => {
                            state.insert_output(op, output);
                            utxos.insert(&op.to_bytes(), &output.to_bytes())?;
                            by_address.insert(&address_key(&output.address, op), ())?;
                        }
                        Record::Stake(op, stake) => {
                            state.insert_stake(op, stake);
                            stakes.insert(&op.to_bytes(), &stake.to_bytes())?;
                        }
                    }
                }
            }
            let computed = state.root();
            if computed != header.state_root {
                return Err(SnapshotError::WrongRoot {
                    expected: header.state_root,
                    computed,
                }
                .into());
            }

            let hash = header.hash();
            txn.open_table(HEADERS)?
                .insert(height, codec::encode(header).as_slice())?;
            txn.open_table(BLOCK_HEIGHTS)?
                .insert(hash.as_bytes(), height)?;
            txn.open_table(BLOCK_HASHES)?
                .insert(height, hash.as_bytes())?;
            txn.open_table(CERTIFICATES)?
                .insert(height, codec::encode(certificate).as_slice())?;
            for (offset, set) in (0..).zip(sets) {
                set_table.insert(height + offset, codec::encode(set).as_slice())?;
            }
            meta.insert(META_TIP, Tip::of(header, hash).to_bytes().as_slice())?;
            meta.insert(META_STATE, state.to_bytes().as_slice())?;
            meta.insert(META_PRUNED_BELOW, (height + 1).to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Checks that the parts of `restore` belong together: the header is the manifest's block,
/// commits to the first two sets, and the certificate finalizes it.
fn check_restore(genesis: &Genesis, restore: &Restore) -> Result<(), StoreError> {
    let (manifest, header, sets) = (&restore.manifest, &restore.header, &restore.sets);
    manifest.check(&genesis.chain_id)?;
    let refuse = |why: &str| Err(SnapshotError::Manifest(why.to_string()).into());
    if header.height != manifest.height || header.hash() != manifest.block_hash {
        return refuse("it names another block than the certified header");
    }
    if header.state_root != manifest.state_root {
        return refuse("its state root is not the certified header's");
    }
    if sets[0].hash() != header.validator_set_hash
        || sets[1].hash() != header.next_validator_set_hash
    {
        return refuse("the validator sets given are not the header's");
    }
    restore
        .certificate
        .verify_for(&genesis.chain_id, &sets[0], header.height, &header.hash())?;
    Ok(())
}

impl SnapshotJob {
    /// The height whose state this is.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Writes the snapshot: chunk files, then the manifest, then its final name.
    pub fn write(self) -> Result<SnapshotManifest, StoreError> {
        let tip = read_tip(&self.txn.open_table(META)?)?;
        let header: BlockHeader =
            super::tables::read_encoded(&self.txn.open_table(HEADERS)?, tip.height)?.ok_or_else(
                || super::corrupt(format!("header of height {} missing", tip.height)),
            )?;
        let per_chunk = self.config.chunk_records as usize;
        let mut partial = SnapshotDir::new(&self.config.dir).begin(self.height)?;
        let mut chunk = Vec::new();
        let mut in_chunk = 0usize;
        let mut records = 0u64;
        let mut push = |record: Record| -> Result<(), SnapshotError> {
            record.encode_into(&mut chunk);
            in_chunk += 1;
            records += 1;
            if in_chunk == per_chunk {
                partial.push(&chunk)?;
                chunk.clear();
                in_chunk = 0;
            }
            Ok(())
        };
        for entry in self.txn.open_table(UTXOS)?.iter()? {
            let (key, value) = entry?;
            push(Record::Output(
                OutPoint::from_bytes(key.value()),
                TxOutput::from_bytes(value.value()),
            ))?;
        }
        for entry in self.txn.open_table(STAKES)?.iter()? {
            let (key, value) = entry?;
            push(Record::Stake(
                OutPoint::from_bytes(key.value()),
                StakeRecord::from_bytes(value.value()),
            ))?;
        }
        if in_chunk > 0 {
            partial.push(&chunk)?;
        }
        let manifest = partial.finish(|chunks| SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            chain_id: self.chain_id.clone(),
            height: self.height,
            block_hash: tip.hash,
            state_root: header.state_root,
            chunk_records: self.config.chunk_records,
            records,
            chunks,
        })?;
        Ok(manifest)
    }
}
