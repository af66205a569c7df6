//! The TIME Coin ledger: everything about state that is not consensus.
//!
//! UTXO transactions signed with Ed25519 over fixed-layout sign bytes, blocks whose hash
//! covers a fixed-layout header, the genesis file, the block subsidy and reward split
//! (integer arithmetic only), validation with a reason for every rejection, the redb store
//! (one file; applying a finalized block is one write transaction) and the mempool.
//!
//! Validators join and leave through staking transactions (see [`Stake`]): the set of height
//! h + 2 is fixed when block h is applied.
//!
//! Inputs may only spend outputs that exist in the UTXO set of the parent block: a block
//! never spends an output created inside the same block.
//!
//! Fees are priced per encoded byte ([`Genesis::min_fee_for`]) and outputs carry at least
//! [`Genesis::min_output`]. A block is dated no earlier than its slot and, as a proposal, no
//! further than [`MAX_CLOCK_DRIFT_MS`] ahead of the receiver's clock. Every rejection says
//! whether it holds on every node or only on this one ([`BlockError::is_local`]).

#![warn(missing_docs)]

mod block;
mod build;
mod fixed;
mod genesis;
mod mempool;
mod rewards;
mod stake;
mod store;
mod tx;
mod validate;

pub use block::{full_tx_root, reward_outpoint, rewards_root, tx_root, Block, BlockHeader};
pub use genesis::{
    Genesis, GenesisError, GenesisValidator, DEFAULT_MIN_OUTPUT, DEFAULT_UNBONDING_BLOCKS,
};
pub use mempool::{Mempool, MempoolError};
pub use rewards::{reward_outputs, subsidy};
pub use stake::{
    possession_digest, Stake, StakeRecord, ACTIVATION_DELAY, MIN_COLLATERAL, STAKE_OUTPUT_INDEX,
};
pub use store::{Store, StoreError, TxLocation};
pub use tx::{OutPoint, Transaction, TxInput, TxOutput};
pub use validate::{check_block_body, check_transaction_stateless, BlockError, TxError};

/// The protocol version this binary follows; every header carries it.
pub const PROTOCOL_VERSION: u32 = 1;
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
/// How far, in milliseconds, a proposed block's time may be ahead of the receiver's clock.
///
/// Honest validators' clocks disagree a little (NTP keeps them within tens of milliseconds;
/// ten seconds leaves room for a badly synchronised host), but a proposer must not date its
/// block far in the future: later blocks may not be older than their parent, so a block
/// dated ahead would pull the chain's time ahead with it, and every time-based rule after it.
/// Only proposals are checked ([`Store::validate_block`]); a finalized block is applied
/// whatever the clock says, since a quorum accepted it and a node catching up after being
/// offline, or with a wrong clock, must still follow the chain.
pub const MAX_CLOCK_DRIFT_MS: u64 = 10_000;
