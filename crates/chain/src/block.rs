//! Blocks: a fixed-layout header whose hash is the block hash, transactions, reward outputs.

use crate::fixed::concat;
use crate::tx::{OutPoint, Transaction, TxOutput};
use serde::{Deserialize, Serialize};
use timecoin_types::{codec, Hash256, PublicKey};

/// The part of a block that is hashed. It commits to every byte of the body (the txids and,
/// separately, the complete transactions with their signatures and proofs; the rewards), to
/// the validator set voting on this height and to the one voting on the next, which the chain
/// fixed one block earlier (joins and leaves take effect two heights after they are
/// finalized). A client holding a trusted header and its certificate thus learns the next
/// set without asking anyone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Protocol version the block follows (see [`crate::PROTOCOL_VERSION`]).
    pub version: u32,
    /// Network the block belongs to.
    pub chain_id: String,
    /// Height; the genesis block is 0.
    pub height: u64,
    /// Round in which the block was proposed; selects the proposer.
    pub round: u32,
    /// Hash of the parent block (zero for genesis).
    pub prev_hash: Hash256,
    /// The validator that built the block.
    pub proposer: PublicKey,
    /// Proposer's wall-clock time in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Merkle root of the txids, see [`tx_root`].
    pub tx_root: Hash256,
    /// Merkle root of the complete transactions, signatures included, see [`full_tx_root`].
    pub full_tx_root: Hash256,
    /// Merkle root of the reward outputs, see [`rewards_root`].
    pub rewards_root: Hash256,
    /// Hash of the validator set that votes on this height.
    pub validator_set_hash: Hash256,
    /// Hash of the validator set that votes on the next height.
    pub next_validator_set_hash: Hash256,
    /// The state after this block: [`crate::StateHash::root`] of the UTXO set and the stake
    /// records.
    pub state_root: Hash256,
}

impl BlockHeader {
    /// BLAKE3 of the header's fixed byte layout (not of its CBOR, which could vary):
    /// `"TIMECOIN/BLKH/03"`, version (u32 BE), chain id (u16 BE length, bytes), height (u64 BE),
    /// round (u32 BE), then prev hash, proposer, time (u64 BE), tx root, full tx root, rewards
    /// root, validator set hash, next validator set hash, state root (32 bytes each but the
    /// time).
    pub fn hash(&self) -> Hash256 {
        let mut bytes = Vec::with_capacity(16 + 4 + 2 + self.chain_id.len() + 8 + 4 + 32 * 8 + 8);
        bytes.extend_from_slice(b"TIMECOIN/BLKH/03");
        bytes.extend_from_slice(&self.version.to_be_bytes());
        bytes.extend_from_slice(&(self.chain_id.len() as u16).to_be_bytes());
        bytes.extend_from_slice(self.chain_id.as_bytes());
        bytes.extend_from_slice(&self.height.to_be_bytes());
        bytes.extend_from_slice(&self.round.to_be_bytes());
        bytes.extend_from_slice(self.prev_hash.as_bytes());
        bytes.extend_from_slice(self.proposer.as_bytes());
        bytes.extend_from_slice(&self.time_ms.to_be_bytes());
        bytes.extend_from_slice(self.tx_root.as_bytes());
        bytes.extend_from_slice(self.full_tx_root.as_bytes());
        bytes.extend_from_slice(self.rewards_root.as_bytes());
        bytes.extend_from_slice(self.validator_set_hash.as_bytes());
        bytes.extend_from_slice(self.next_validator_set_hash.as_bytes());
        bytes.extend_from_slice(self.state_root.as_bytes());
        Hash256::digest(&bytes)
    }
}

/// A block: header, transactions, and the reward outputs paid at this height (for the
/// genesis block, the initial allocations).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Block {
    /// The hashed header.
    pub header: BlockHeader,
    /// Transactions, in order.
    pub transactions: Vec<Transaction>,
    /// Reward outputs; they become UTXOs at [`reward_outpoint`]`(height, i)`.
    pub rewards: Vec<TxOutput>,
}

impl Block {
    /// The block hash: the header's hash.
    pub fn hash(&self) -> Hash256 {
        self.header.hash()
    }

    /// Size of the wire (CBOR) encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        codec::encode(self).len()
    }
}

/// Where reward output `index` of block `height` lives in the UTXO set: a per-height pseudo
/// txid that no real transaction can have (real txids hash a different domain tag).
pub fn reward_outpoint(height: u64, index: u32) -> OutPoint {
    let bytes: [u8; 24] = concat(&[b"TIMECOIN/RWRD/01", &height.to_be_bytes()]);
    OutPoint {
        txid: Hash256::digest(&bytes),
        index,
    }
}

/// Merkle root over the txids of `transactions`.
pub fn tx_root(transactions: &[Transaction]) -> Hash256 {
    merkle_root(transactions.iter().map(|tx| tx.txid().0).collect())
}

/// Merkle root over the complete transactions ([`Transaction::full_hash`]).
pub fn full_tx_root(transactions: &[Transaction]) -> Hash256 {
    merkle_root(transactions.iter().map(|tx| tx.full_hash().0).collect())
}

/// Merkle root over the fixed 28-byte forms of `rewards`.
pub fn rewards_root(rewards: &[TxOutput]) -> Hash256 {
    merkle_root(
        rewards
            .iter()
            .map(|out| Hash256::digest_parts(&[b"timecoin/reward-leaf/v1", &out.to_bytes()]).0)
            .collect(),
    )
}

/// The inclusion path of one transaction in a block's [`full_tx_root`]: its position, the
/// number of transactions and the sibling hashes from the bottom level up. Anyone holding the
/// complete transaction and a verified header can check it with [`MerklePath::root`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerklePath {
    /// Position of the leaf, from 0.
    pub index: u32,
    /// Number of leaves in the tree.
    pub leaf_count: u32,
    /// Sibling hashes, bottom up; a level where the node has no sibling contributes none.
    pub siblings: Vec<Hash256>,
}

impl MerklePath {
    /// The path of the transaction at `index` to the block's [`full_tx_root`], or `None`
    /// when there is no such transaction.
    pub fn of_transaction(transactions: &[Transaction], index: usize) -> Option<MerklePath> {
        let leaves: Vec<[u8; 32]> = transactions.iter().map(|tx| tx.full_hash().0).collect();
        MerklePath::of(&leaves, index)
    }

    /// The path of `leaves[index]`, or `None` when `index` is out of range.
    pub fn of(leaves: &[[u8; 32]], index: usize) -> Option<MerklePath> {
        if index >= leaves.len() {
            return None;
        }
        let mut level: Vec<[u8; 32]> = leaves.iter().map(leaf_hash).collect();
        let mut at = index;
        let mut siblings = Vec::new();
        while level.len() > 1 {
            if let Some(sibling) = level.get(at ^ 1) {
                siblings.push(Hash256(*sibling));
            }
            level = parent_level(&level);
            at /= 2;
        }
        Some(MerklePath {
            index: u32::try_from(index).ok()?,
            leaf_count: u32::try_from(leaves.len()).ok()?,
            siblings,
        })
    }

    /// The root this path leads to from `leaf`, or `None` when the path's shape does not fit
    /// its position and leaf count (a sibling too many or too few, a position past the end).
    pub fn root(&self, leaf: &[u8; 32]) -> Option<Hash256> {
        if self.index >= self.leaf_count {
            return None;
        }
        let mut node = leaf_hash(leaf);
        let (mut at, mut width) = (self.index as u64, self.leaf_count as u64);
        let mut siblings = self.siblings.iter();
        while width > 1 {
            let carried = at % 2 == 0 && at + 1 == width;
            if !carried {
                let sibling = &siblings.next()?.0;
                node = if at % 2 == 0 {
                    node_hash(&node, sibling)
                } else {
                    node_hash(sibling, &node)
                };
            }
            at /= 2;
            width = width.div_ceil(2);
        }
        siblings.next().is_none().then_some(Hash256(node))
    }
}

/// Leaves and inner nodes hash different domains, and an odd node is carried up unchanged
/// rather than paired with itself, so no two different leaf lists share a root.
fn merkle_root(leaves: Vec<[u8; 32]>) -> Hash256 {
    if leaves.is_empty() {
        return Hash256::digest_parts(&[b"timecoin/merkle-empty/v1"]);
    }
    let mut level: Vec<[u8; 32]> = leaves.iter().map(leaf_hash).collect();
    while level.len() > 1 {
        level = parent_level(&level);
    }
    Hash256(level[0])
}

fn leaf_hash(leaf: &[u8; 32]) -> [u8; 32] {
    Hash256::digest_parts(&[b"timecoin/merkle-leaf/v1", leaf]).0
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Hash256::digest_parts(&[b"timecoin/merkle-node/v1", left, right]).0
}

fn parent_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use timecoin_types::Address;

    fn outputs(n: u64) -> Vec<TxOutput> {
        (1..=n)
            .map(|amount| TxOutput {
                address: Address([amount as u8; 20]),
                amount,
            })
            .collect()
    }

    #[test]
    fn merkle_roots_distinguish_lists() {
        let mut roots: Vec<Hash256> = (0..8).map(|n| rewards_root(&outputs(n))).collect();
        roots.push(tx_root(&[]));
        let mut three = outputs(3);
        three.push(three[2]);
        roots.push(rewards_root(&three));
        let mut sorted = roots.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            roots.len() - 1,
            "only the two empty roots may coincide"
        );
        assert_eq!(tx_root(&[]), rewards_root(&[]));
    }

    #[test]
    fn paths_lead_to_the_root_and_only_from_their_leaf() {
        for count in 1..=9usize {
            let leaves: Vec<[u8; 32]> = (0..count).map(|i| [i as u8; 32]).collect();
            let root = merkle_root(leaves.clone());
            for (index, leaf) in leaves.iter().enumerate() {
                let path = MerklePath::of(&leaves, index).unwrap();
                assert_eq!(path.root(leaf), Some(root), "{count} leaves, index {index}");
                assert_ne!(path.root(&[0xff; 32]), Some(root));
                let mut moved = path.clone();
                moved.index = (moved.index + 1) % count as u32;
                if count > 1 {
                    assert_ne!(
                        moved.root(leaf),
                        Some(root),
                        "{count} leaves, index {index}"
                    );
                }
                let mut longer = path.clone();
                longer.siblings.push(Hash256::ZERO);
                assert_eq!(longer.root(leaf), None);
            }
            assert!(MerklePath::of(&leaves, count).is_none());
        }
    }

    #[test]
    fn reward_outpoints_differ_by_height_and_index() {
        assert_ne!(reward_outpoint(1, 0), reward_outpoint(2, 0));
        assert_eq!(reward_outpoint(1, 0).txid, reward_outpoint(1, 3).txid);
        assert_eq!(reward_outpoint(1, 3).index, 3);
    }
}
