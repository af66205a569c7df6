//! The TIME Coin ledger: everything about state that is not consensus.
//!
//! Validation with a reason for every rejection, the redb store (one file; applying a
//! finalized block is one write transaction), block building and the mempool, over the chain
//! data of `timecoin-chain` (transactions, blocks, genesis, rewards, staking), which this crate
//! re-exports so its users need one dependency.
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

mod build;
mod mempool;
pub mod snapshot;
mod store;
mod validate;

pub use mempool::{Mempool, MempoolError};
pub use store::{Restore, SnapshotJob, Store, StoreError, TxLocation};
// The chain data lives in its own crate so verifiers need no storage; the glob also brings
// its modules, so the ledger reaches them as `crate::tx` and so on.
pub use timecoin_chain::*;
pub use validate::{check_block_body, check_transaction_stateless, BlockError, TxError};

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
