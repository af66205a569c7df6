//! Signed consensus messages and finality certificates.
//!
//! Every signature covers the BLAKE3 digest of a fixed byte layout: a domain tag, the chain
//! id (length-prefixed), then the message's fields in a fixed order and width. Nothing
//! depends on how the codec lays out a struct.

use crate::{Hash256, Keypair, PublicKey, Signature, SignatureError, ValidatorSet};
use serde::{Deserialize, Serialize};

/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// The two voting phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VoteKind {
    /// First phase: the block is valid and this validator is not locked on another.
    Prepare,
    /// Second phase: a 2/3 prepare quorum was seen for the block.
    Precommit,
}

impl VoteKind {
    fn tag(self) -> u8 {
        match self {
            VoteKind::Prepare => 1,
            VoteKind::Precommit => 2,
        }
    }
}

fn chain_prefix(tag: &[u8; 16], chain_id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(tag);
    out.extend_from_slice(&(chain_id.len() as u16).to_be_bytes());
    out.extend_from_slice(chain_id.as_bytes());
}

/// A prepare or precommit vote. `block_hash` is `None` for a vote for no block (nil), cast
/// when the proposal was missing, invalid or conflicts with this validator's lock.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// Phase.
    pub kind: VoteKind,
    /// Height voted on.
    pub height: u64,
    /// Round within the height.
    pub round: u32,
    /// The block voted for, or nil.
    pub block_hash: Option<Hash256>,
    /// The voter.
    pub validator: PublicKey,
    /// Ed25519 signature over [`Vote::sign_digest`].
    pub signature: Signature,
}

impl Vote {
    /// The digest a vote signs.
    pub fn sign_digest(
        chain_id: &str,
        kind: VoteKind,
        height: u64,
        round: u32,
        block_hash: Option<Hash256>,
    ) -> Hash256 {
        let mut bytes = Vec::with_capacity(128);
        chain_prefix(b"TIMECOIN/VOTE/01", chain_id, &mut bytes);
        bytes.push(kind.tag());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&round.to_be_bytes());
        match block_hash {
            Some(hash) => {
                bytes.push(1);
                bytes.extend_from_slice(hash.as_bytes());
            }
            None => bytes.push(0),
        }
        Hash256::digest(&bytes)
    }

    /// Creates and signs a vote.
    pub fn sign(
        chain_id: &str,
        key: &Keypair,
        kind: VoteKind,
        height: u64,
        round: u32,
        block_hash: Option<Hash256>,
    ) -> Vote {
        let digest = Vote::sign_digest(chain_id, kind, height, round, block_hash);
        Vote {
            kind,
            height,
            round,
            block_hash,
            validator: key.public(),
            signature: key.sign(&digest),
        }
    }

    /// The digest this vote's signature covers.
    fn digest(&self, chain_id: &str) -> Hash256 {
        Vote::sign_digest(
            chain_id,
            self.kind,
            self.height,
            self.round,
            self.block_hash,
        )
    }

    /// Checks the signature against the voter's key.
    pub fn verify(&self, chain_id: &str) -> Result<(), SignatureError> {
        let digest = self.digest(chain_id);
        self.validator.verify(&digest, &self.signature)
    }
}

/// A proposer's signed statement that `block_hash` is its block for `(height, round)`.
/// `valid_round` is the round in which the proposer saw a 2/3 prepare quorum for this block,
/// when it re-proposes a block from an earlier round.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proposal {
    /// Height proposed for.
    pub height: u64,
    /// Round proposed in.
    pub round: u32,
    /// Earlier round with a prepare quorum for the block, if re-proposed.
    pub valid_round: Option<u32>,
    /// The proposed block.
    pub block_hash: Hash256,
    /// The proposer.
    pub proposer: PublicKey,
    /// Ed25519 signature over [`Proposal::sign_digest`].
    pub signature: Signature,
}

impl Proposal {
    /// The digest a proposal signs.
    pub fn sign_digest(
        chain_id: &str,
        height: u64,
        round: u32,
        valid_round: Option<u32>,
        block_hash: &Hash256,
    ) -> Hash256 {
        let mut bytes = Vec::with_capacity(128);
        chain_prefix(b"TIMECOIN/PROP/01", chain_id, &mut bytes);
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&round.to_be_bytes());
        match valid_round {
            Some(r) => {
                bytes.push(1);
                bytes.extend_from_slice(&r.to_be_bytes());
            }
            None => bytes.push(0),
        }
        bytes.extend_from_slice(block_hash.as_bytes());
        Hash256::digest(&bytes)
    }

    /// Creates and signs a proposal.
    pub fn sign(
        chain_id: &str,
        key: &Keypair,
        height: u64,
        round: u32,
        valid_round: Option<u32>,
        block_hash: Hash256,
    ) -> Proposal {
        let digest = Proposal::sign_digest(chain_id, height, round, valid_round, &block_hash);
        Proposal {
            height,
            round,
            valid_round,
            block_hash,
            proposer: key.public(),
            signature: key.sign(&digest),
        }
    }

    /// The digest this proposal's signature covers.
    fn digest(&self, chain_id: &str) -> Hash256 {
        Proposal::sign_digest(
            chain_id,
            self.height,
            self.round,
            self.valid_round,
            &self.block_hash,
        )
    }

    /// Checks the signature against the proposer's key.
    pub fn verify(&self, chain_id: &str) -> Result<(), SignatureError> {
        let digest = self.digest(chain_id);
        self.proposer.verify(&digest, &self.signature)
    }
}

/// One validator's precommit signature inside a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommitSignature {
    /// The signer.
    pub validator: PublicKey,
    /// Its precommit signature for the certificate's block.
    pub signature: Signature,
}

/// Proof that a block is final: precommits for it carrying at least 2/3 of the weight of its
/// height's validator set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    /// Height of the block.
    pub height: u64,
    /// Round in which it was decided.
    pub round: u32,
    /// The finalized block.
    pub block_hash: Hash256,
    /// The precommits, sorted by validator key.
    pub signatures: Vec<CommitSignature>,
}

/// Why a certificate does not prove finality.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A signer outside the validator set.
    #[error("signer {0} is not in the validator set")]
    UnknownValidator(PublicKey),
    /// A signer listed twice.
    #[error("signer {0} appears twice")]
    DuplicateSigner(PublicKey),
    /// A signature that does not verify.
    #[error("signature of {0} does not verify")]
    BadSignature(PublicKey),
    /// Too little weight signed.
    #[error("signed weight {signed} of {total} is below two thirds")]
    InsufficientWeight {
        /// Weight of the valid signatures.
        signed: u64,
        /// Weight of the whole set.
        total: u64,
    },
    /// The certificate is for another height or block than expected.
    #[error("certificate is for height {height} block {block_hash}, expected {expected}")]
    WrongBlock {
        /// Certificate's height.
        height: u64,
        /// Certificate's block.
        block_hash: Hash256,
        /// What the caller expected.
        expected: String,
    },
}

impl Certificate {
    /// Builds a certificate from precommit votes for one block (callers pass only votes for
    /// `(height, round, block_hash)`); signatures are sorted by key.
    pub fn from_votes<'a>(
        height: u64,
        round: u32,
        block_hash: Hash256,
        votes: impl IntoIterator<Item = &'a Vote>,
    ) -> Certificate {
        let mut signatures: Vec<CommitSignature> = votes
            .into_iter()
            .map(|v| CommitSignature {
                validator: v.validator,
                signature: v.signature,
            })
            .collect();
        signatures.sort_by_key(|a| a.validator);
        signatures.dedup_by(|a, b| a.validator == b.validator);
        Certificate {
            height,
            round,
            block_hash,
            signatures,
        }
    }

    /// Verifies every signature against `set` (the validator set of the certificate's
    /// height) and returns the signed weight, which is at least 2/3 of the total.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<u64, CertificateError> {
        let digest = Vote::sign_digest(
            chain_id,
            VoteKind::Precommit,
            self.height,
            self.round,
            Some(self.block_hash),
        );
        let mut signed: u64 = 0;
        let mut seen = std::collections::HashSet::with_capacity(self.signatures.len());
        for sig in &self.signatures {
            if !seen.insert(sig.validator) {
                return Err(CertificateError::DuplicateSigner(sig.validator));
            }
            let weight = set.weight_of(&sig.validator);
            if weight == 0 {
                return Err(CertificateError::UnknownValidator(sig.validator));
            }
            sig.validator
                .verify(&digest, &sig.signature)
                .map_err(|_| CertificateError::BadSignature(sig.validator))?;
            signed += weight;
        }
        if !set.is_quorum(signed) {
            return Err(CertificateError::InsufficientWeight {
                signed,
                total: set.total_weight(),
            });
        }
        Ok(signed)
    }

    /// Verifies the certificate and that it finalizes `block_hash` at `height`.
    pub fn verify_for(
        &self,
        chain_id: &str,
        set: &ValidatorSet,
        height: u64,
        block_hash: &Hash256,
    ) -> Result<u64, CertificateError> {
        if self.height != height || &self.block_hash != block_hash {
            return Err(CertificateError::WrongBlock {
                height: self.height,
                block_hash: self.block_hash,
                expected: format!("height {height} block {block_hash}"),
            });
        }
        self.verify(chain_id, set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Validator;

    fn keys(n: u8) -> Vec<Keypair> {
        (1..=n).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    fn set(keys: &[Keypair]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .map(|k| Validator::with_own_reward_address(k.public(), 10))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn sign_bytes_bind_every_field() {
        let h = Some(Hash256::digest(b"b"));
        let base = Vote::sign_digest("c", VoteKind::Prepare, 1, 0, h);
        assert_ne!(base, Vote::sign_digest("d", VoteKind::Prepare, 1, 0, h));
        assert_ne!(base, Vote::sign_digest("c", VoteKind::Precommit, 1, 0, h));
        assert_ne!(base, Vote::sign_digest("c", VoteKind::Prepare, 2, 0, h));
        assert_ne!(base, Vote::sign_digest("c", VoteKind::Prepare, 1, 1, h));
        assert_ne!(base, Vote::sign_digest("c", VoteKind::Prepare, 1, 0, None));
        let p = Proposal::sign_digest("c", 1, 0, None, &Hash256::ZERO);
        assert_ne!(p, Proposal::sign_digest("c", 1, 0, Some(0), &Hash256::ZERO));
    }

    #[test]
    fn vote_signature_checks_chain_id() {
        let k = &keys(1)[0];
        let vote = Vote::sign("main", k, VoteKind::Prepare, 3, 1, Some(Hash256::ZERO));
        assert!(vote.verify("main").is_ok());
        assert!(vote.verify("test").is_err());
        let proposal = Proposal::sign("main", k, 3, 1, None, Hash256::ZERO);
        assert!(proposal.verify("main").is_ok());
        assert!(proposal.verify("test").is_err());
    }

    #[test]
    fn certificate_needs_two_thirds_of_valid_members() {
        let ks = keys(4);
        let vs = set(&ks);
        let block = Hash256::digest(b"block");
        let votes: Vec<Vote> = ks
            .iter()
            .map(|k| Vote::sign("c", k, VoteKind::Precommit, 5, 2, Some(block)))
            .collect();
        let cert = Certificate::from_votes(5, 2, block, &votes[..3]);
        assert_eq!(cert.verify("c", &vs), Ok(30));
        assert!(cert.verify_for("c", &vs, 5, &block).is_ok());
        assert!(matches!(
            cert.verify_for("c", &vs, 6, &block),
            Err(CertificateError::WrongBlock { .. })
        ));
        assert!(cert.verify("other", &vs).is_err());

        let short = Certificate::from_votes(5, 2, block, &votes[..2]);
        assert_eq!(
            short.verify("c", &vs),
            Err(CertificateError::InsufficientWeight {
                signed: 20,
                total: 40
            })
        );

        let mut dup = cert.clone();
        dup.signatures.push(dup.signatures[0].clone());
        assert!(matches!(
            dup.verify("c", &vs),
            Err(CertificateError::DuplicateSigner(_))
        ));

        let outsider = Keypair::from_seed([99; 32]);
        let mut foreign = short.clone();
        let v = Vote::sign("c", &outsider, VoteKind::Precommit, 5, 2, Some(block));
        foreign.signatures.push(CommitSignature {
            validator: v.validator,
            signature: v.signature,
        });
        assert!(matches!(
            foreign.verify("c", &vs),
            Err(CertificateError::UnknownValidator(_))
        ));

        let prepare = Vote::sign("c", &ks[3], VoteKind::Prepare, 5, 2, Some(block));
        let mut wrong_phase = short;
        wrong_phase.signatures.push(CommitSignature {
            validator: prepare.validator,
            signature: prepare.signature,
        });
        assert!(matches!(
            wrong_phase.verify("c", &vs),
            Err(CertificateError::BadSignature(_))
        ));
    }
}
