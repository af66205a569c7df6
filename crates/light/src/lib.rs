//! The TIME Coin light client: finality checked by anyone, offline, from the genesis alone.
//!
//! A [`Bundle`] carries the light blocks (header, finality certificate, the validator set that
//! signed it and the next set its header commits to) of every height where the validator set
//! changed between the genesis, or a trusted height, and the target, then the target itself,
//! and optionally one transaction with its inclusion path. [`verify`] walks it: each
//! certificate must carry two thirds of the weight of the set the verifier already trusts for
//! that height, and each header hands over the next set by its hash. A bundle that leaves out a
//! set change fails at the first block signed by a set the verifier was never handed.
//!
//! No trusting period is needed because nothing is skipped blindly: the only assumption is the
//! one of the chain itself, that no set ever had two thirds of its weight signing two
//! different blocks of one height (or keeps signing after the chain has moved on to another
//! set; a light client that is handed only old sets cannot tell, see `docs/PROTOCOL.md`).
//!
//! The crate needs no network, storage or async runtime, so wallets and bridges can embed it.

#![warn(missing_docs)]

mod bundle;
mod verify;

pub use bundle::{Bundle, LightBlock, TxInclusion, BUNDLE_FORMAT};
pub use verify::{verify, Summary, Trust, VerifyError};
