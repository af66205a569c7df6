//! Primitive types shared by every TIME Coin crate.
//!
//! Everything here is plain computation: hashing, Ed25519 keys and signatures, addresses,
//! amounts, the CBOR wire codec with hard size limits, validator sets with stake-weighted
//! quorums, signed votes and proposals with fixed-layout sign bytes, and finality
//! certificates that anyone who knows the validator set can verify offline.

mod address;
mod amount;
mod bytes;
pub mod codec;
mod crypto;
mod hash;
mod validator;
mod vote;

pub use address::{Address, AddressError};
pub use amount::{format_amount, parse_amount, Amount, AmountError, COIN};
pub use crypto::{Keypair, PublicKey, Signature, SignatureError};
pub use hash::{Hash256, HashParseError};
pub use validator::{Validator, ValidatorSet, ValidatorSetError};
pub use vote::{
    Certificate, CertificateError, CommitSignature, Proposal, Vote, VoteKind, MAX_CHAIN_ID_LEN,
};
