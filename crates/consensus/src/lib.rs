//! Pure BFT consensus for TIME Coin.
//!
//! A Tendermint-style state machine (Propose → Prepare → Precommit with locking) that
//! decides one block per height with a finality [`timecoin_types::Certificate`]. It does no
//! I/O, keeps no clock and draws no randomness: the node feeds it [`Input`]s (messages,
//! fired timers, application answers) and carries out its [`Output`]s (persist, broadcast,
//! set timers, validate or build blocks, commit decisions). That makes every run
//! reproducible, which the deterministic simulator in `tests/` relies on.
//!
//! Safety holds while faulty validators carry less than a third of the weight, whatever the
//! network does; the [`Signer`] keeps this validator from equivocating even across
//! restarts, as long as the node persists every [`Output::PersistSigner`] before sending
//! what follows it.

#![warn(missing_docs)]

mod engine;
mod messages;
mod signer;
mod votes;

pub use engine::{
    Engine, FUTURE_HEIGHTS, MAX_BUFFERED_PER_HEIGHT, MAX_BUFFERED_PER_KEY, MAX_PAST_ROUNDS,
};
pub use messages::{Config, Evidence, Handled, Input, Output, Step, Timeout, Verdict};
pub use signer::{Signer, SignerError, SignerState, STEP_PRECOMMIT, STEP_PREPARE, STEP_PROPOSAL};

#[cfg(test)]
mod tests;
