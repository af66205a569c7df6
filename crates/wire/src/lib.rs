//! Every message format a TIME Coin node sends to peers or clients, or writes for itself, with
//! its size limit.
//!
//! Kept in one place so that a change to what goes on the wire (or to disk) is one visible
//! change: gossip (proposals, votes), the catch-up sync protocol, the consensus record a
//! validator persists and the raw transactions clients submit. All are CBOR through
//! [`timecoin_types::codec`]. A crate of its own, free of networking, so that fuzz targets
//! and other tools decode exactly what the node decodes.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use timecoin_chain::snapshot::SnapshotManifest;
use timecoin_chain::{Block, Transaction, MAX_BLOCK_BYTES, MAX_TX_BYTES};
use timecoin_consensus::SignerState;
use timecoin_light::LightBlock;
use timecoin_types::codec::{self, CodecError};
use timecoin_types::{Certificate, Hash256, Proposal, Vote};

/// Largest vote message.
pub const MAX_VOTE_BYTES: usize = 1024;
/// Largest proposal message: a full block plus the signed proposal.
pub const MAX_PROPOSAL_BYTES: usize = timecoin_chain::MAX_BLOCK_BYTES + 4096;
/// Largest stored [`ConsensusRecord`]: the signer state and a few proposals.
pub const MAX_CONSENSUS_RECORD_BYTES: usize = 8 * MAX_PROPOSAL_BYTES;
/// Most blocks one sync request may ask for.
pub const MAX_SYNC_BATCH: u32 = 256;
/// Largest sync response.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 16 << 20;
/// Largest sync request.
pub const MAX_SYNC_REQUEST_BYTES: usize = 256;
/// Most light blocks one answer to [`SyncRequest::LightBlocks`] holds.
pub const MAX_LIGHT_BLOCKS: usize = 64;
/// Largest gossiped transaction.
pub const MAX_TX_MESSAGE_BYTES: usize = MAX_TX_BYTES;

/// A block proposal on the wire: the signed proposal and the block it names, the block as
/// its canonical encoding in a byte string. The proposal is decoded and checked (height,
/// round, proposer, signature) before the body is decoded at all, so that a peer cannot make
/// the node decode megabytes for a proposal it would refuse anyway.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProposalMessage {
    /// The proposer's signed statement.
    pub proposal: Proposal,
    /// The block's encoding.
    #[serde(with = "serde_bytes")]
    pub block: Vec<u8>,
}

impl ProposalMessage {
    /// The message for `proposal` of `block`.
    pub fn new(proposal: Proposal, block: &Block) -> ProposalMessage {
        ProposalMessage {
            proposal,
            block: codec::encode(block),
        }
    }

    /// Decodes a gossiped proposal, leaving the body undecoded.
    pub fn decode(data: &[u8]) -> Result<ProposalMessage, CodecError> {
        codec::decode(data, MAX_PROPOSAL_BYTES)
    }

    /// Decodes the body.
    pub fn block(&self) -> Result<Block, CodecError> {
        codec::decode(&self.block, MAX_BLOCK_BYTES)
    }
}

/// A vote on the wire. The engine re-sends votes when a round stalls (gossipsub never
/// retransmits what a partition or a restart lost); gossipsub drops a message whose bytes it
/// has seen before, so every send carries a fresh `nonce` and the engine drops duplicates.
#[derive(Serialize, Deserialize)]
pub struct VoteMessage {
    /// The signed vote.
    pub vote: Vote,
    /// Distinguishes re-sends of one vote; not signed, not interpreted.
    pub nonce: u64,
}

/// What a validator persists before any vote leaves it: the signer's state, and the
/// proposals of the blocks it is locked on or holds as its valid value. Without the blocks, a
/// restart of every validator locked on a block would lose its only copies, and the locked
/// validators could then never prepare anything else.
#[derive(Serialize, Deserialize)]
pub struct ConsensusRecord {
    /// The signer's state.
    pub signer: SignerState,
    /// The proposals of its locked and valid blocks.
    pub proposals: Vec<ProposalMessage>,
}

/// A request on the sync protocol.
#[derive(Debug, Serialize, Deserialize)]
pub enum SyncRequest {
    /// What is your finalized tip?
    Status,
    /// Finalized blocks `from..from + count` with their certificates.
    Blocks {
        /// First height.
        from: u64,
        /// How many (at most [`MAX_SYNC_BATCH`]).
        count: u32,
    },
    /// The light blocks that walk a verifier from height `after` (whose next set it holds)
    /// to `to`: those of the heights in `after + 1..to` whose header hands the next height
    /// to a different set, then `to`. At most [`MAX_LIGHT_BLOCKS`]: when more sets changed,
    /// the answer stops at a change, and the verifier asks again from there.
    LightBlocks {
        /// The height the verifier trusts.
        after: u64,
        /// The height it wants to reach.
        to: u64,
    },
    /// The newest state snapshot you serve.
    Snapshot,
    /// One chunk of a snapshot.
    SnapshotChunk {
        /// The snapshot's height.
        height: u64,
        /// The chunk's position.
        index: u32,
    },
}

/// An answer on the sync protocol.
#[derive(Debug, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The peer's finalized tip.
    Status {
        /// Height.
        tip: u64,
        /// Hash.
        tip_hash: Hash256,
    },
    /// Consecutive finalized blocks from the requested height (possibly fewer than asked).
    Blocks(Vec<SyncedBlock>),
    /// Light blocks in ascending height, as [`SyncRequest::LightBlocks`] describes.
    LightBlocks(Vec<LightBlock>),
    /// The newest snapshot's manifest, if the peer serves one.
    Snapshot(Option<SnapshotManifest>),
    /// A snapshot chunk's bytes.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request was refused.
    Error(String),
}

/// A finalized block and the certificate that proves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncedBlock {
    /// The block.
    pub block: Block,
    /// Its finality certificate.
    pub certificate: Certificate,
}

/// Why a raw transaction from a client was refused.
#[derive(Debug, thiserror::Error)]
pub enum RawTransactionError {
    /// Not hexadecimal.
    #[error("transaction must be hex-encoded CBOR")]
    NotHex,
    /// Hex, but not a transaction's canonical encoding within the size limit.
    #[error("cannot decode transaction: {0}")]
    Decode(#[from] CodecError),
}

/// Decodes a transaction as `sendrawtransaction` takes it: the hex of its CBOR encoding
/// (surrounding white space allowed).
pub fn decode_raw_transaction(hex_text: &str) -> Result<Transaction, RawTransactionError> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| RawTransactionError::NotHex)?;
    Ok(codec::decode(&bytes, MAX_TX_BYTES)?)
}
