//! The state commitment: one hash over the UTXO set and the stake records that a block
//! updates in time proportional to the block, not to the state.
//!
//! It is a homomorphic multiset hash (LtHash, as used by Facebook's and Solana's state
//! hashes): every entry is expanded by BLAKE3's extendable output into [`LANES`] 16-bit
//! lanes, and the state is the lane-wise sum, wrapping, of its entries. Adding an entry adds
//! its lanes and removing it subtracts them, so the order of changes does not matter and a
//! block costs one expansion per output created or spent. The root a header carries is
//! BLAKE3 of the lanes. Finding two different states with the same sum is a short-vector
//! problem in a lattice of dimension 1024, which is believed hard (about 200 bits). A sparse
//! Merkle tree would give per-coin proofs too, but costs a path of hashes per change and a
//! tree on disk; a snapshot is checked as a whole, which this hash does with one pass.

use crate::stake::StakeRecord;
use crate::tx::{OutPoint, TxOutput};
use timecoin_types::Hash256;

/// Lanes of the accumulator.
pub const LANES: usize = 1024;
/// Bytes of [`StateHash::to_bytes`].
pub const STATE_HASH_BYTES: usize = 2 * LANES;

/// The running multiset hash of a state.
#[derive(Clone, PartialEq, Eq)]
pub struct StateHash(Box<[u16; LANES]>);

impl std::fmt::Debug for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateHash({})", self.root())
    }
}

impl Default for StateHash {
    fn default() -> Self {
        StateHash::empty()
    }
}

/// One entry's lanes: BLAKE3 extendable output of `"TIMECOIN/STEL/01"`, a kind byte (0 for an
/// unspent output, 1 for a stake record) and the entry's fixed bytes (outpoint then record).
fn lanes_of(kind: u8, outpoint: &OutPoint, record: &[u8]) -> [u16; LANES] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"TIMECOIN/STEL/01");
    hasher.update(&[kind]);
    hasher.update(&outpoint.to_bytes());
    hasher.update(record);
    let mut bytes = [0u8; STATE_HASH_BYTES];
    hasher.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl StateHash {
    /// The hash of the empty state.
    pub fn empty() -> StateHash {
        StateHash(Box::new([0; LANES]))
    }

    fn add(&mut self, lanes: [u16; LANES]) {
        for (acc, lane) in self.0.iter_mut().zip(lanes) {
            *acc = acc.wrapping_add(lane);
        }
    }

    fn subtract(&mut self, lanes: [u16; LANES]) {
        for (acc, lane) in self.0.iter_mut().zip(lanes) {
            *acc = acc.wrapping_sub(lane);
        }
    }

    /// Adds unspent output `output` at `outpoint`.
    pub fn insert_output(&mut self, outpoint: &OutPoint, output: &TxOutput) {
        self.add(lanes_of(0, outpoint, &output.to_bytes()));
    }

    /// Removes unspent output `output` at `outpoint` (it was spent).
    pub fn remove_output(&mut self, outpoint: &OutPoint, output: &TxOutput) {
        self.subtract(lanes_of(0, outpoint, &output.to_bytes()));
    }

    /// Adds the stake record kept under staking output `outpoint`.
    pub fn insert_stake(&mut self, outpoint: &OutPoint, record: &StakeRecord) {
        self.add(lanes_of(1, outpoint, &record.to_bytes()));
    }

    /// Removes the stake record kept under `outpoint`.
    pub fn remove_stake(&mut self, outpoint: &OutPoint, record: &StakeRecord) {
        self.subtract(lanes_of(1, outpoint, &record.to_bytes()));
    }

    /// The root a header commits to: BLAKE3 of `"TIMECOIN/STAT/01"` and the lanes, each
    /// little-endian.
    pub fn root(&self) -> Hash256 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"TIMECOIN/STAT/01");
        hasher.update(&self.to_bytes());
        Hash256(*hasher.finalize().as_bytes())
    }

    /// The lanes, little-endian, as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }

    /// Inverse of [`StateHash::to_bytes`]; `None` unless `bytes` has [`STATE_HASH_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Option<StateHash> {
        if bytes.len() != STATE_HASH_BYTES {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(StateHash(lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timecoin_types::Address;

    fn coin(n: u8) -> (OutPoint, TxOutput) {
        (
            OutPoint {
                txid: Hash256([n; 32]),
                index: n as u32,
            },
            TxOutput {
                address: Address([n; 20]),
                amount: n as u64 + 1,
            },
        )
    }

    #[test]
    fn order_does_not_matter_and_removal_undoes_insertion() {
        let mut forward = StateHash::empty();
        let mut backward = StateHash::empty();
        for n in 0..10 {
            let (op, out) = coin(n);
            forward.insert_output(&op, &out);
            let (op, out) = coin(9 - n);
            backward.insert_output(&op, &out);
        }
        assert_eq!(forward.root(), backward.root());
        let before = forward.root();
        let (op, out) = coin(42);
        forward.insert_output(&op, &out);
        assert_ne!(forward.root(), before);
        forward.remove_output(&op, &out);
        assert_eq!(forward.root(), before);
        for n in 0..10 {
            let (op, out) = coin(n);
            forward.remove_output(&op, &out);
        }
        assert_eq!(forward, StateHash::empty());
        assert_eq!(StateHash::from_bytes(&backward.to_bytes()), Some(backward));
    }

    #[test]
    fn an_output_and_a_stake_record_never_collide() {
        let (op, out) = coin(1);
        let record = StakeRecord::from_bytes(&[1; 88]);
        let mut a = StateHash::empty();
        a.insert_output(&op, &out);
        let mut b = StateHash::empty();
        b.insert_stake(&op, &record);
        let mut amount = StateHash::empty();
        amount.insert_output(&op, &TxOutput { amount: 3, ..out });
        assert_ne!(a.root(), b.root());
        assert_ne!(a.root(), amount.root());
    }
}
