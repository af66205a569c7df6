//! TIME Coin chain data, shared by the node's ledger and by anyone who only verifies.
//!
//! UTXO transactions signed with Ed25519 over fixed-layout sign bytes, blocks whose hash
//! covers a fixed-layout header, the Merkle trees a header commits to (with inclusion
//! paths), staking records, the state commitment, the genesis file and the block subsidy and reward split (integer
//! arithmetic only). Nothing here stores, sends or schedules anything, so a light client or
//! a wallet can depend on it alone; `docs/PROTOCOL.md` writes every layout down.

#![warn(missing_docs)]

pub mod block;
pub mod fixed;
pub mod genesis;
pub mod rewards;
pub mod snapshot;
pub mod stake;
pub mod state;
pub mod tx;

pub use block::{
    full_tx_root, reward_outpoint, rewards_root, tx_root, Block, BlockHeader, MerklePath,
};
pub use genesis::{
    Genesis, GenesisError, GenesisValidator, Upgrade, DEFAULT_MIN_OUTPUT, DEFAULT_UNBONDING_BLOCKS,
};
pub use rewards::{reward_outputs, subsidy};
pub use stake::{
    possession_digest, Stake, StakeRecord, ACTIVATION_DELAY, MIN_COLLATERAL, STAKE_OUTPUT_INDEX,
};
pub use state::StateHash;
pub use tx::{OutPoint, Transaction, TxInput, TxOutput};

/// The highest protocol version this binary implements. Every header carries the version in
/// force at its height ([`Genesis::version_at`]); a chain starts at version 1.
///
/// Version 2 changes no validity rule: it is the first version a chain can schedule, so that
/// a network can take an upgrade at an agreed height (headers switch to 2, nothing forks)
/// before an upgrade that changes rules needs the path.
pub const PROTOCOL_VERSION: u32 = 2;
/// Largest encoded transaction, in bytes.
pub const MAX_TX_BYTES: usize = 100 * 1024;
/// Most inputs in one transaction.
pub const MAX_TX_INPUTS: usize = 256;
/// Most outputs in one transaction.
pub const MAX_TX_OUTPUTS: usize = 256;
/// Largest encoded block, in bytes (also the decode limit for blocks on the wire and on disk).
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// Most transactions in one block.
pub const MAX_BLOCK_TRANSACTIONS: usize = 10_000;
