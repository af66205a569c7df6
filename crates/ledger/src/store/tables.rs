//! Every redb table of the store, with the byte layout of its keys and values, and the
//! encodings and typed reads built on them. This is the on-disk format: a node reopens files
//! written by earlier versions, so a name, key or value layout here never changes.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `"genesis_hash"` | genesis hash, 32 bytes |
//! | `meta` | `"tip"` | [`Tip`]: height u64 ‖ block hash (32) ‖ time_ms u64, 48 bytes |
//! | `meta` | `"state"` | the tip's [`StateHash`]: 1024 lanes u16 little-endian, 2048 bytes |
//! | `meta` | `"pruned_below"` | the lowest height whose body is still in `blocks`, u64 big-endian, 8 bytes; absent until a body is pruned |
//! | `blocks` | height u64 | CBOR [`Block`], for the heights from `pruned_below` on |
//! | `headers` | height u64 | CBOR [`BlockHeader`], for every height |
//! | `block_heights` | block hash (32) | height u64 |
//! | `block_hashes` | height u64 | block hash (32) |
//! | `certificates` | height u64 | CBOR [`Certificate`]; none for height 0 |
//! | `validator_sets` | height u64 | CBOR [`ValidatorSet`] voting on that height |
//! | `utxos` | [`OutPoint::to_bytes`]: txid (32) ‖ index u32, 36 bytes | [`TxOutput::to_bytes`]: address (20) ‖ amount u64, 28 bytes |
//! | `address_utxos` | [`address_key`]: address (20) ‖ outpoint (36), 56 bytes | `()` |
//! | `txs` | txid (32) | [`TxLocation`]: height u64 ‖ index u32 ‖ fee u64, 20 bytes |
//! | `signer` | `"last_signed"` | the consensus signer's state, opaque bytes |
//! | `evidence` | (height u64, sequence u64) | equivocation evidence, opaque bytes |
//! | `stakes` | staking outpoint, 36 bytes as in `utxos` | [`StakeRecord`]: key (32) ‖ reward address (20) ‖ owner (20) ‖ amount u64 ‖ unlock height u64 (`u64::MAX` while bonded), 88 bytes |
//!
//! Why these layouts:
//! - Integers inside byte keys and values are big-endian, so byte order is numeric order:
//!   the outputs of one transaction sort together by index. Plain `u64` keys are redb's own
//!   integer keys, ordered numerically.
//! - Fixed-size records (outpoints, outputs, locations, stake records, the tip) are laid out
//!   field by field rather than in CBOR: they are read on every spend and their size is
//!   checked by the type.
//! - Blocks, headers, certificates and validator sets are CBOR, decoded with the block size limit
//!   ([`STORED_LIMIT`]), as they travel on the wire.
//! - `block_heights` and `block_hashes` index blocks both ways, so neither lookup decodes a
//!   block.
//! - `headers` repeats each block's header apart from its body, so that a store pruning
//!   bodies (`Store::retaining`) keeps what sync and light clients need: every header,
//!   certificate and validator set. Pruning deletes bodies from the bottom of `blocks` up
//!   and raises `pruned_below` in the same write transaction as the block applied, so a read
//!   tells a pruned height (below it) from one never stored. Files written before `headers`
//!   existed get it filled from `blocks` when opened. The `txs` index is not pruned: a
//!   transaction of a pruned block still has its height.
//! - `address_utxos` puts the address first, so one address's outputs are one key range; it
//!   holds no value because the output is in `utxos`.
//! - `validator_sets` holds a set for every height up to tip + [`ACTIVATION_DELAY`], since the
//!   set of h + 2 is fixed when block h is applied.
//! - `evidence` numbers the pieces of one height from 0, so a range over the height finds the
//!   next number and readers get them in arrival order.
//! - `stakes` is keyed like `utxos`: a stake record lives exactly as long as its staking
//!   output is unspent.

use super::{corrupt, StoreError, TxLocation};
use crate::block::BlockHeader;
use crate::fixed::{concat, field};
use crate::genesis::Genesis;
use crate::tx::OutPoint;
use crate::validate::Parent;
use crate::{StateHash, MAX_BLOCK_BYTES};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};
use timecoin_types::{codec, Address, Hash256, ValidatorSet};

#[cfg(doc)]
use crate::{Block, StakeRecord, TxOutput, ACTIVATION_DELAY};
#[cfg(doc)]
use timecoin_types::Certificate;

/// Defines each table once, and [`create_tables`] from the same list, so that no table can
/// be defined and left uncreated.
macro_rules! tables {
    ($($(#[doc = $doc:literal])* $name:ident: $key:ty => $value:ty = $table:literal;)*) => {
        $(
            $(#[doc = $doc])*
            pub(super) const $name: TableDefinition<$key, $value> = TableDefinition::new($table);
        )*

        /// Creates every table not in the file yet (opening a table in a write transaction
        /// creates it), so that readers never meet a missing table.
        pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
            $(txn.open_table($name)?;)*
            Ok(())
        }
    };
}

tables! {
    /// Chain metadata under string keys: [`META_GENESIS`], [`META_TIP`] and [`META_STATE`].
    META: &str => &[u8] = "meta";
    /// Height → CBOR block, from [`META_PRUNED_BELOW`] on.
    BLOCKS: u64 => &[u8] = "blocks";
    /// Height → CBOR block header, for every stored height.
    HEADERS: u64 => &[u8] = "headers";
    /// Block hash → height.
    BLOCK_HEIGHTS: &[u8; 32] => u64 = "block_heights";
    /// Height → block hash.
    BLOCK_HASHES: u64 => &[u8; 32] = "block_hashes";
    /// Height → CBOR finality certificate.
    CERTIFICATES: u64 => &[u8] = "certificates";
    /// Height → CBOR validator set voting on it.
    VALIDATOR_SETS: u64 => &[u8] = "validator_sets";
    /// Outpoint → unspent output: the UTXO set.
    UTXOS: &[u8; 36] => &[u8; 28] = "utxos";
    /// Address ‖ outpoint, so one address's outputs are a key range.
    ADDRESS_UTXOS: &[u8; 56] => () = "address_utxos";
    /// Txid → where the transaction was finalized and its fee.
    TXS: &[u8; 32] => &[u8; 20] = "txs";
    /// The consensus signer's last-signed state under [`SIGNER_STATE`].
    SIGNER: &str => &[u8] = "signer";
    /// (Height, sequence) → equivocation evidence.
    EVIDENCE: (u64, u64) => &[u8] = "evidence";
    /// Staking outpoint → [`StakeRecord`], for every staking output not yet spent.
    STAKES: &[u8; 36] => &[u8; 88] = "stakes";
}

/// `meta` key of the genesis hash the store was initialized with.
pub(super) const META_GENESIS: &str = "genesis_hash";
/// `meta` key of the finalized [`Tip`].
pub(super) const META_TIP: &str = "tip";
/// `meta` key of the finalized state's [`StateHash`] lanes.
pub(super) const META_STATE: &str = "state";
/// `meta` key of the lowest height whose block body is kept (absent: none pruned).
pub(super) const META_PRUNED_BELOW: &str = "pruned_below";
/// `signer` key of the last-signed state.
pub(super) const SIGNER_STATE: &str = "last_signed";

/// Decode limit for what this store wrote itself (blocks, certificates, sets).
pub(super) const STORED_LIMIT: usize = MAX_BLOCK_BYTES;

impl TxLocation {
    /// The `txs` value: height ‖ index ‖ fee.
    pub(super) fn to_bytes(self) -> [u8; 20] {
        concat(&[
            &self.height.to_be_bytes(),
            &self.index.to_be_bytes(),
            &self.fee.to_be_bytes(),
        ])
    }

    /// Inverse of [`TxLocation::to_bytes`].
    pub(super) fn from_bytes(bytes: &[u8; 20]) -> TxLocation {
        TxLocation {
            height: u64::from_be_bytes(field(bytes, 0)),
            index: u32::from_be_bytes(field(bytes, 8)),
            fee: u64::from_be_bytes(field(bytes, 12)),
        }
    }
}

/// The finalized tip as kept in the metadata table.
pub(super) struct Tip {
    pub height: u64,
    pub hash: Hash256,
    pub time_ms: u64,
}

impl Tip {
    /// The tip once the block with this header and hash is applied.
    pub fn of(header: &BlockHeader, hash: Hash256) -> Tip {
        Tip {
            height: header.height,
            hash,
            time_ms: header.time_ms,
        }
    }

    /// The state a block at tip + 1 is checked against; `set` votes on tip + 1, `next_set` on
    /// tip + 2.
    pub fn parent<'a>(&self, set: &'a ValidatorSet, next_set: &'a ValidatorSet) -> Parent<'a> {
        Parent {
            height: self.height,
            hash: self.hash,
            time_ms: self.time_ms,
            set,
            next_set,
        }
    }

    /// The `meta` value under [`META_TIP`]: height ‖ hash ‖ time.
    pub fn to_bytes(&self) -> [u8; 48] {
        concat(&[
            &self.height.to_be_bytes(),
            self.hash.as_bytes(),
            &self.time_ms.to_be_bytes(),
        ])
    }

    /// Inverse of [`Tip::to_bytes`]; any other length is corruption.
    pub fn from_bytes(bytes: &[u8]) -> Result<Tip, StoreError> {
        let bytes: &[u8; 48] = bytes.try_into().map_err(|_| corrupt("tip record"))?;
        Ok(Tip {
            height: u64::from_be_bytes(field(bytes, 0)),
            hash: Hash256(field(bytes, 8)),
            time_ms: u64::from_be_bytes(field(bytes, 40)),
        })
    }
}

/// The `address_utxos` key of `outpoint`, an output of `address`.
pub(super) fn address_key(address: &Address, outpoint: &OutPoint) -> [u8; 56] {
    concat(&[&address.0, &outpoint.to_bytes()])
}

/// The outpoint part of an `address_utxos` key.
pub(super) fn address_key_outpoint(key: &[u8; 56]) -> OutPoint {
    OutPoint::from_bytes(&field(key, 20))
}

/// The finalized tip; [`StoreError::NotInitialized`] before genesis.
pub(super) fn read_tip(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Tip, StoreError> {
    let guard = meta.get(META_TIP)?.ok_or(StoreError::NotInitialized)?;
    Tip::from_bytes(guard.value())
}

/// The finalized state's hash (see [`StateHash`]).
pub(super) fn read_state(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<StateHash, StoreError> {
    let guard = meta.get(META_STATE)?.ok_or_else(|| {
        corrupt(
            "no state hash: the database was written by an older version; remove it and sync again",
        )
    })?;
    StateHash::from_bytes(guard.value()).ok_or_else(|| corrupt("state hash record"))
}

/// The lowest height whose block body is kept; 0 while nothing is pruned.
pub(super) fn read_pruned_below(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    let Some(guard) = meta.get(META_PRUNED_BELOW)? else {
        return Ok(0);
    };
    let bytes: [u8; 8] = guard
        .value()
        .try_into()
        .map_err(|_| corrupt("pruned_below record"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Refuses a `genesis` other than the one the store was initialized with.
pub(super) fn check_genesis(
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

/// The CBOR record at `height` of `blocks`, `headers`, `certificates` or `validator_sets` (what the
/// store encodes it also decodes, hence both bounds).
pub(super) fn read_encoded<T: Serialize + DeserializeOwned>(
    table: &impl ReadableTable<u64, &'static [u8]>,
    height: u64,
) -> Result<Option<T>, StoreError> {
    let Some(guard) = table.get(height)? else {
        return Ok(None);
    };
    codec::decode(guard.value(), STORED_LIMIT)
        .map(Some)
        .map_err(corrupt)
}

/// The validator set of `height`, which must be stored (every height up to tip +
/// [`ACTIVATION_DELAY`] has one).
pub(super) fn read_set(
    sets: &impl ReadableTable<u64, &'static [u8]>,
    height: u64,
) -> Result<ValidatorSet, StoreError> {
    read_encoded(sets, height)?
        .ok_or_else(|| corrupt(format!("validator set of height {height} missing")))
}

/// The fixed-layout record kept under `outpoint` in `utxos` or `stakes`, decoded with
/// `decode` ([`TxOutput::from_bytes`] or [`StakeRecord::from_bytes`]).
pub(super) fn read_record<const N: usize, T>(
    table: &impl ReadableTable<&'static [u8; 36], &'static [u8; N]>,
    outpoint: &OutPoint,
    decode: fn(&[u8; N]) -> T,
) -> Result<Option<T>, StoreError> {
    Ok(table
        .get(&outpoint.to_bytes())?
        .map(|guard| decode(guard.value())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1, 2, 3, … as a fixed array, so each field's bytes show where they land.
    fn counting<const N: usize>(from: u8) -> [u8; N] {
        std::array::from_fn(|i| from + i as u8)
    }

    #[test]
    fn records_have_the_documented_layouts() {
        let location = TxLocation {
            height: u64::from_be_bytes(counting(1)),
            index: u32::from_be_bytes(counting(9)),
            fee: u64::from_be_bytes(counting(13)),
        };
        assert_eq!(location.to_bytes(), counting::<20>(1));
        assert_eq!(TxLocation::from_bytes(&location.to_bytes()), location);

        let tip = Tip {
            height: u64::from_be_bytes(counting(1)),
            hash: Hash256(counting(9)),
            time_ms: u64::from_be_bytes(counting(41)),
        };
        assert_eq!(tip.to_bytes(), counting::<48>(1));
        let read = Tip::from_bytes(&tip.to_bytes()).unwrap();
        assert_eq!(
            (read.height, read.hash, read.time_ms),
            (tip.height, tip.hash, tip.time_ms)
        );
        assert!(matches!(
            Tip::from_bytes(&[0; 47]),
            Err(StoreError::Corrupt(_))
        ));

        let outpoint = OutPoint {
            txid: Hash256(counting(21)),
            index: u32::from_be_bytes(counting(53)),
        };
        let key = address_key(&Address(counting(1)), &outpoint);
        assert_eq!(key, counting::<56>(1));
        assert_eq!(address_key_outpoint(&key), outpoint);
    }
}
