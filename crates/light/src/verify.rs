//! The walk from a trusted set to the target block.

use crate::{Bundle, LightBlock, BUNDLE_FORMAT};
use std::fmt;
use timecoin_chain::Genesis;
use timecoin_types::{CertificateError, Hash256};

/// Where the verifier's trust starts.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// The genesis: its validator set votes on the first heights.
    Genesis(&'a Genesis),
    /// A block the caller already holds as final (its height and hash), on the genesis's
    /// chain; the bundle's first light block must be that block.
    Block(&'a Genesis, u64, Hash256),
}

/// The first thing that fails, with the height where it fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A bundle format this verifier does not read.
    #[error("bundle format {0} is not supported (this verifier reads format {BUNDLE_FORMAT})")]
    Format(u32),
    /// The bundle or one of its headers is for another chain.
    #[error("height {height}: chain id {found:?}, but the genesis is for {expected:?}")]
    WrongChain {
        /// Height of the offending header (0 for the bundle itself).
        height: u64,
        /// The genesis's chain id.
        expected: String,
        /// The bundle's or header's.
        found: String,
    },
    /// No light blocks.
    #[error("the bundle holds no blocks")]
    Empty,
    /// The bundle starts from a trusted height but no trusted block was given, or the other
    /// way round.
    #[error("{0}")]
    TrustMismatch(String),
    /// Light blocks out of order.
    #[error("height {height} comes after height {after}: blocks must ascend")]
    OutOfOrder {
        /// The block's height.
        height: u64,
        /// The previous block's.
        after: u64,
    },
    /// The set listed as the signers is not the one the header commits to.
    #[error(
        "height {height}: the listed validator set does not match the header's validator_set_hash"
    )]
    SetNotInHeader {
        /// The block's height.
        height: u64,
    },
    /// The listed next set is not the one the header commits to.
    #[error("height {height}: the listed next validator set does not match the header's next_validator_set_hash")]
    NextSetNotInHeader {
        /// The block's height.
        height: u64,
    },
    /// The block is signed by a set other than the one the walk reached: a set change was
    /// left out of the bundle, or the block is not of this chain.
    #[error("height {height}: signed by validator set {found}, but the chain hands this height to set {expected} (is a validator-set change missing from the bundle?)")]
    UnexpectedSet {
        /// The block's height.
        height: u64,
        /// Hash of the set the verifier trusts for the height.
        expected: Hash256,
        /// Hash of the set the header names.
        found: Hash256,
    },
    /// The certificate does not prove finality of the header.
    #[error("height {height}: {source}")]
    Certificate {
        /// The block's height.
        height: u64,
        /// What is wrong with it.
        source: CertificateError,
    },
    /// The transaction's path does not lead to the target's `full_tx_root`.
    #[error("transaction {txid} is not in block {height}: its path does not lead to the header's full_tx_root")]
    NotIncluded {
        /// The transaction's txid.
        txid: Hash256,
        /// The target height.
        height: u64,
    },
}

/// What a bundle proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The chain.
    pub chain_id: String,
    /// The target block's height.
    pub height: u64,
    /// The target block's hash.
    pub block_hash: Hash256,
    /// How many validator-set changes the walk crossed.
    pub set_changes: usize,
    /// Weight that signed the target.
    pub signed_weight: u64,
    /// Total weight of the target's set.
    pub total_weight: u64,
    /// The transaction proven included, if any.
    pub txid: Option<Hash256>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "verified: {} height {} block {} final ({} of {} weight signed, {} validator-set changes)",
            self.chain_id,
            self.height,
            self.block_hash,
            self.signed_weight,
            self.total_weight,
            self.set_changes
        )?;
        if let Some(txid) = self.txid {
            write!(f, "; transaction {txid} included")?;
        }
        Ok(())
    }
}

/// Checks `bundle` with nothing but the trust anchor: every header against the set the walk
/// holds for its height, every certificate (strict Ed25519, two thirds of the weight), every
/// set hand-over, and the transaction's path to the last header.
pub fn verify(trust: Trust<'_>, bundle: &Bundle) -> Result<Summary, VerifyError> {
    let genesis = match trust {
        Trust::Genesis(genesis) | Trust::Block(genesis, ..) => genesis,
    };
    if bundle.format != BUNDLE_FORMAT {
        return Err(VerifyError::Format(bundle.format));
    }
    let chain_id = &genesis.chain_id;
    if &bundle.chain_id != chain_id {
        return Err(VerifyError::WrongChain {
            height: 0,
            expected: chain_id.clone(),
            found: bundle.chain_id.clone(),
        });
    }
    let (first, rest) = bundle.blocks.split_first().ok_or(VerifyError::Empty)?;
    // `trusted` is the set the chain hands the heights after `from`, up to the next change;
    // `checked` the signed and total weight of the last block whose certificate verified.
    let mut checked = None;
    let (mut from, mut trusted, mut remaining) = match (trust, bundle.trusted_height) {
        (Trust::Genesis(_), None) => (0, genesis.validator_set(), &bundle.blocks[..]),
        (Trust::Block(_, height, hash), Some(start)) => {
            let found = first.header.hash();
            if start != height || first.header.height != height || found != hash {
                return Err(VerifyError::TrustMismatch(format!(
                    "the bundle starts at height {} block {found}, not at the trusted height {height} block {hash}",
                    first.header.height
                )));
            }
            checked = Some(check_header(chain_id, first)?);
            (height, first.next_validators.clone(), rest)
        }
        (Trust::Genesis(_), Some(start)) => {
            return Err(VerifyError::TrustMismatch(format!(
                "the bundle starts from trusted height {start}: name the block hash you trust there"
            )))
        }
        (Trust::Block(_, height, _), None) => {
            return Err(VerifyError::TrustMismatch(format!(
                "the bundle starts from the genesis, not from the trusted height {height}"
            )))
        }
    };
    let mut set_changes = 0;
    while let Some((block, tail)) = remaining.split_first() {
        let height = block.header.height;
        if height <= from {
            return Err(VerifyError::OutOfOrder {
                height,
                after: from,
            });
        }
        let expected = trusted.hash();
        if block.header.validator_set_hash != expected {
            return Err(VerifyError::UnexpectedSet {
                height,
                expected,
                found: block.header.validator_set_hash,
            });
        }
        checked = Some(check_header(chain_id, block)?);
        if block.next_validators != trusted {
            set_changes += 1;
        }
        (from, trusted, remaining) = (height, block.next_validators.clone(), tail);
    }
    let target = bundle.blocks.last().ok_or(VerifyError::Empty)?;
    let (signed_weight, total_weight) =
        checked.expect("a non-empty bundle has at least one checked block");
    let txid = match &bundle.transaction {
        None => None,
        Some(inclusion) => {
            let txid = inclusion.transaction.txid();
            let leaf = inclusion.transaction.full_hash().0;
            if inclusion.path.root(&leaf) != Some(target.header.full_tx_root) {
                return Err(VerifyError::NotIncluded {
                    txid,
                    height: target.header.height,
                });
            }
            Some(txid)
        }
    };
    Ok(Summary {
        chain_id: chain_id.clone(),
        height: target.header.height,
        block_hash: target.header.hash(),
        set_changes,
        signed_weight,
        total_weight,
        txid,
    })
}

/// Checks one light block on its own: chain id, both set hashes, and the certificate against
/// the listed set; returns the signed and total weight.
fn check_header(chain_id: &str, block: &LightBlock) -> Result<(u64, u64), VerifyError> {
    let header = &block.header;
    let height = header.height;
    if header.chain_id != chain_id {
        return Err(VerifyError::WrongChain {
            height,
            expected: chain_id.to_string(),
            found: header.chain_id.clone(),
        });
    }
    if block.validators.hash() != header.validator_set_hash {
        return Err(VerifyError::SetNotInHeader { height });
    }
    if block.next_validators.hash() != header.next_validator_set_hash {
        return Err(VerifyError::NextSetNotInHeader { height });
    }
    let signed = block
        .certificate
        .verify_for(chain_id, &block.validators, height, &header.hash())
        .map_err(|source| VerifyError::Certificate { height, source })?;
    Ok((signed, block.validators.total_weight()))
}
