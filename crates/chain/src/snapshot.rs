//! State snapshots: the finalized state of one height (every unspent output and stake
//! record) cut into chunks that a joining node fetches from several peers, checks one by one
//! against a manifest, and installs only when the whole hashes to the state root of a header
//! it verified (state sync).
//!
//! The layout is fixed (`docs/PROTOCOL.md`, "State snapshots"), so that every honest node
//! writes the same chunks for the same height and a joiner may take each chunk from a
//! different peer:
//! - The records are the unspent outputs in ascending outpoint order, then the stake records
//!   in ascending outpoint order.
//! - A record is a tag byte and its fixed layout: `0x00` ‖ outpoint (36) ‖ output (28), or
//!   `0x01` ‖ outpoint (36) ‖ stake record (88).
//! - Chunk `i` is the concatenation of records `i × chunk_records ..` up to
//!   `chunk_records` of them; only the last chunk may hold fewer.
//! - The manifest lists each chunk's hash, [`chunk_hash`].
//!
//! Order is strict across the whole snapshot, so no record can appear twice: the state root
//! is a multiset hash, and a record repeated 65,536 times would add nothing to it.

use crate::stake::StakeRecord;
use crate::tx::{OutPoint, TxOutput};
use serde::{Deserialize, Serialize};
use timecoin_types::{codec, Hash256};

/// The manifest format this node writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Most chunks one manifest may list (with the default 4,096 records per chunk, 64 million
/// records).
pub const MAX_SNAPSHOT_CHUNKS: usize = 16_384;
/// Most records one chunk may hold.
pub const MAX_CHUNK_RECORDS: u32 = 8_192;
/// Bytes of the largest record (a stake record with its tag).
pub const MAX_RECORD_BYTES: usize = 1 + 36 + 88;
/// Largest chunk.
pub const MAX_CHUNK_BYTES: usize = MAX_CHUNK_RECORDS as usize * MAX_RECORD_BYTES;
/// Largest encoded manifest.
pub const MAX_MANIFEST_BYTES: usize = MAX_SNAPSHOT_CHUNKS * 40 + 1024;

const OUTPUT_TAG: u8 = 0;
const STAKE_TAG: u8 = 1;

/// Describes one snapshot: what it is of, and the hash of every chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The chain.
    pub chain_id: String,
    /// The height whose state this is (after its block).
    pub height: u64,
    /// That block's hash.
    pub block_hash: Hash256,
    /// That block's header's state root, which the records must hash to.
    pub state_root: Hash256,
    /// Records per chunk.
    pub chunk_records: u32,
    /// Records in all.
    pub records: u64,
    /// [`chunk_hash`] of every chunk, in order.
    pub chunks: Vec<Hash256>,
}

/// One entry of the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// An unspent output.
    Output(OutPoint, TxOutput),
    /// The stake record under a staking output.
    Stake(OutPoint, StakeRecord),
}

impl Record {
    /// The key the snapshot is ordered by: the tag, then the outpoint's bytes.
    pub fn order_key(&self) -> (u8, [u8; 36]) {
        match self {
            Record::Output(op, _) => (OUTPUT_TAG, op.to_bytes()),
            Record::Stake(op, _) => (STAKE_TAG, op.to_bytes()),
        }
    }

    /// Appends the record's layout to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Record::Output(op, output) => {
                out.push(OUTPUT_TAG);
                out.extend_from_slice(&op.to_bytes());
                out.extend_from_slice(&output.to_bytes());
            }
            Record::Stake(op, record) => {
                out.push(STAKE_TAG);
                out.extend_from_slice(&op.to_bytes());
                out.extend_from_slice(&record.to_bytes());
            }
        }
    }
}

/// Why a snapshot, a manifest or a chunk was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The manifest is not one this node can use.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A chunk does not match its manifest, does not decode, or breaks the order.
    #[error("chunk {index}: {reason}")]
    Chunk {
        /// The chunk's position.
        index: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The records are well formed but are not the state the certified header commits to.
    #[error("the snapshot's records hash to state root {computed}, not to {expected} of the certified header")]
    WrongRoot {
        /// The header's.
        expected: Hash256,
        /// The records'.
        computed: Hash256,
    },
    /// Reading or writing snapshot files (this node's, not a peer's fault).
    #[error("snapshot files: {0}")]
    Io(#[from] std::io::Error),
}

impl SnapshotError {
    /// True when the snapshot itself is wrong (so whoever served it is at fault), rather than
    /// this node's files or store.
    pub fn is_invalid_snapshot(&self) -> bool {
        !matches!(self, SnapshotError::Io(_))
    }
}

/// The hash the manifest lists for a chunk: BLAKE3 of `"TIMECOIN/CHNK/01"` and the chunk,
/// each length-prefixed ([`Hash256::digest_parts`]).
pub fn chunk_hash(chunk: &[u8]) -> Hash256 {
    Hash256::digest_parts(&[b"TIMECOIN/CHNK/01", chunk])
}

impl SnapshotManifest {
    /// Checks what holds for every valid manifest of `chain_id`, whoever sent it.
    pub fn check(&self, chain_id: &str) -> Result<(), SnapshotError> {
        let refuse = |why: String| Err(SnapshotError::Manifest(why));
        if self.format != SNAPSHOT_FORMAT {
            return refuse(format!(
                "format {} (this node reads {SNAPSHOT_FORMAT})",
                self.format
            ));
        }
        if self.chain_id != chain_id {
            return refuse(format!("for chain {:?}, not {chain_id:?}", self.chain_id));
        }
        if self.height == 0 {
            return refuse("of the genesis, which needs no snapshot".into());
        }
        if !(1..=MAX_CHUNK_RECORDS).contains(&self.chunk_records) {
            return refuse(format!(
                "{} records per chunk (1 to {MAX_CHUNK_RECORDS})",
                self.chunk_records
            ));
        }
        let expected = self.records.div_ceil(u64::from(self.chunk_records));
        if self.chunks.len() as u64 != expected || self.chunks.len() > MAX_SNAPSHOT_CHUNKS {
            return refuse(format!(
                "{} chunk hashes for {} records of {} per chunk (at most {MAX_SNAPSHOT_CHUNKS} chunks)",
                self.chunks.len(),
                self.records,
                self.chunk_records
            ));
        }
        Ok(())
    }

    /// Identifies the snapshot: equal for two manifests exactly when they describe the same
    /// records cut the same way, so peers offering equal ids can serve each other's chunks.
    pub fn id(&self) -> Hash256 {
        Hash256::digest_parts(&[b"TIMECOIN/SNAP/01", &codec::encode(self)])
    }

    /// How many records chunk `index` holds.
    pub fn records_in(&self, index: u32) -> u64 {
        let per = u64::from(self.chunk_records);
        self.records.saturating_sub(u64::from(index) * per).min(per)
    }
}

/// Decodes chunk `index` of `manifest`: its hash must be the listed one, and it must hold
/// exactly its share of records, in strictly ascending order.
pub fn decode_chunk(
    manifest: &SnapshotManifest,
    index: u32,
    bytes: &[u8],
) -> Result<Vec<Record>, SnapshotError> {
    let refuse = |reason: String| SnapshotError::Chunk { index, reason };
    let listed = manifest
        .chunks
        .get(index as usize)
        .ok_or_else(|| refuse(format!("the manifest lists {}", manifest.chunks.len())))?;
    if chunk_hash(bytes) != *listed {
        return Err(refuse("its hash is not the one in the manifest".into()));
    }
    let records = decode_records(bytes).map_err(refuse)?;
    if records.len() as u64 != manifest.records_in(index) {
        return Err(refuse(format!(
            "{} records, where the manifest makes it {}",
            records.len(),
            manifest.records_in(index)
        )));
    }
    Ok(records)
}

/// The records of a chunk's bytes, which must be whole and strictly ascending.
pub fn decode_records(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
    let mut records: Vec<Record> = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        let cut_short = || format!("record {} is cut short", records.len());
        let (&op, rest) = rest.split_first_chunk::<36>().ok_or_else(cut_short)?;
        let op = OutPoint::from_bytes(&op);
        let (record, rest) = match tag {
            OUTPUT_TAG => {
                let (output, rest) = rest.split_first_chunk::<28>().ok_or_else(cut_short)?;
                (Record::Output(op, TxOutput::from_bytes(output)), rest)
            }
            STAKE_TAG => {
                let (stake, rest) = rest.split_first_chunk::<88>().ok_or_else(cut_short)?;
                (Record::Stake(op, StakeRecord::from_bytes(stake)), rest)
            }
            other => return Err(format!("record {} has tag {other}", records.len())),
        };
        if records
            .last()
            .is_some_and(|last| last.order_key() >= record.order_key())
        {
            return Err(format!("record {} is out of order", records.len()));
        }
        records.push(record);
        bytes = rest;
    }
    Ok(records)
}

#[cfg(test)]
mod tests;
