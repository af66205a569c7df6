//! What a light client is handed: light blocks and, optionally, a transaction's path.

use serde::{Deserialize, Serialize};
use timecoin_chain::{BlockHeader, MerklePath, Transaction};
use timecoin_types::{Certificate, ValidatorSet};

/// The bundle format this crate reads and writes.
pub const BUNDLE_FORMAT: u32 = 1;

/// Everything needed to check one block: its header, the certificate that finalized it, the
/// set that signed it (whose hash is in the header) and the next height's set (whose hash is
/// in the header too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightBlock {
    /// The block's header; its hash is the block hash.
    pub header: BlockHeader,
    /// Precommits of two thirds of `validators`' weight for the block.
    pub certificate: Certificate,
    /// The validator set of the block's height.
    pub validators: ValidatorSet,
    /// The validator set of the next height, as fixed by the chain.
    pub next_validators: ValidatorSet,
}

/// A transaction and its path to its block's `full_tx_root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInclusion {
    /// The complete transaction, signatures included.
    pub transaction: Transaction,
    /// Its inclusion path in the target block.
    pub path: MerklePath,
}

/// A self-contained proof that a block (and optionally a transaction in it) is final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: u32,
    /// The chain the proof is for.
    pub chain_id: String,
    /// The height the walk starts from, when not the genesis; the verifier must be told the
    /// block hash it trusts there.
    pub trusted_height: Option<u64>,
    /// The light blocks, in increasing height: the trusted one (if any), every block whose
    /// header hands over a different set, and last the target.
    pub blocks: Vec<LightBlock>,
    /// A transaction of the target block, with its path.
    pub transaction: Option<TxInclusion>,
}

impl LightBlock {
    /// True when this block's header hands the next height to a different set.
    pub fn changes_set(&self) -> bool {
        self.header.next_validator_set_hash != self.header.validator_set_hash
    }
}
