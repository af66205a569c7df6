//! The double-sign guard.
//!
//! Every vote and proposal this validator signs goes through [`Signer`], which refuses to
//! sign anything that could conflict with what it signed before: a different message for the
//! same (height, round, step), or any message for an older (height, round, step). Its
//! [`SignerState`] is what the node persists before sending what was signed, so the guard
//! survives a crash and restart.

use serde::{Deserialize, Serialize};
use timecoin_types::{Hash256, Keypair, Proposal, PublicKey, Signature, Vote, VoteKind};

/// Step number of a proposal in [`SignerState::step`].
pub const STEP_PROPOSAL: u8 = 1;
/// Step number of a prepare vote in [`SignerState::step`].
pub const STEP_PREPARE: u8 = 2;
/// Step number of a precommit vote in [`SignerState::step`].
pub const STEP_PRECOMMIT: u8 = 3;

/// What the signer last signed, and the lock it held at that height. The node persists it
/// durably before sending any message signed under it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerState {
    /// Height of the last signed message (0 with `step` 0: nothing signed yet).
    pub height: u64,
    /// Round of the last signed message.
    pub round: u32,
    /// Step of the last signed message: [`STEP_PROPOSAL`], [`STEP_PREPARE`] or
    /// [`STEP_PRECOMMIT`]; 0 when nothing was signed.
    pub step: u8,
    /// Block of the last signed message (`None` for a nil vote).
    pub block_hash: Option<Hash256>,
    /// Signature of the last signed message, returned again when the identical message is
    /// requested (a restart re-broadcasting its last vote).
    pub signature: Option<Signature>,
    /// The lock `(round, block)` held at `height`: a restart must keep it for safety.
    pub locked: Option<(u32, Hash256)>,
    /// The valid value `(round, block)` seen at `height`: kept so a restarted proposer can
    /// re-propose it.
    pub valid: Option<(u32, Hash256)>,
}

/// Why the signer refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The message is for an older (height, round, step) than the last signed one.
    #[error("refusing to sign ({0}, {1}, {2}): older than the last signed message")]
    Regression(u64, u32, u8),
    /// A different message was already signed for this (height, round, step).
    #[error("refusing to sign ({0}, {1}, {2}): a different message was signed for it")]
    Conflict(u64, u32, u8),
}

/// A validator's key behind the double-sign guard.
#[derive(Debug)]
pub struct Signer {
    key: Keypair,
    state: SignerState,
}

fn step_of(kind: VoteKind) -> u8 {
    match kind {
        VoteKind::Prepare => STEP_PREPARE,
        VoteKind::Precommit => STEP_PRECOMMIT,
    }
}

impl Signer {
    /// A signer for `key`, restored from the persisted `state` (`None` on first start).
    pub fn new(key: Keypair, state: Option<SignerState>) -> Signer {
        Signer {
            key,
            state: state.unwrap_or_default(),
        }
    }

    /// The validator's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// The state to persist.
    pub fn state(&self) -> &SignerState {
        &self.state
    }

    /// True when the signer has signed something at `(height, round, step)` or later, so
    /// nothing new can be signed for that slot.
    pub fn has_passed(&self, height: u64, round: u32, step: u8) -> bool {
        self.state.step != 0
            && (self.state.height, self.state.round, self.state.step) >= (height, round, step)
    }

    /// Checks `(height, round, step)` against the last signed slot. `Ok(Some(sig))` when
    /// this is the same slot and `digest` is exactly what was signed; `Ok(None)` when the
    /// slot is new.
    fn check(
        &self,
        height: u64,
        round: u32,
        step: u8,
        digest: &Hash256,
    ) -> Result<Option<Signature>, SignerError> {
        let last = (self.state.height, self.state.round, self.state.step);
        let next = (height, round, step);
        if self.state.step == 0 || next > last {
            return Ok(None);
        }
        if next < last {
            return Err(SignerError::Regression(height, round, step));
        }
        // Same slot: the identical message has the identical digest, so the stored
        // signature verifies over it exactly when nothing differs (valid_round included).
        match self.state.signature {
            Some(sig) if self.key.public().verify(digest, &sig).is_ok() => Ok(Some(sig)),
            _ => Err(SignerError::Conflict(height, round, step)),
        }
    }

    fn record(&mut self, height: u64, round: u32, step: u8, hash: Option<Hash256>, sig: Signature) {
        if height != self.state.height {
            // A lock only binds within its height.
            self.state.locked = None;
            self.state.valid = None;
        }
        self.state.height = height;
        self.state.round = round;
        self.state.step = step;
        self.state.block_hash = hash;
        self.state.signature = Some(sig);
    }

    /// Signs a vote unless it conflicts with or is older than the last signed message.
    pub fn sign_vote(
        &mut self,
        chain_id: &str,
        kind: VoteKind,
        height: u64,
        round: u32,
        block_hash: Option<Hash256>,
    ) -> Result<Vote, SignerError> {
        let step = step_of(kind);
        let digest = Vote::sign_digest(chain_id, kind, height, round, block_hash);
        let signature = match self.check(height, round, step, &digest)? {
            Some(sig) => sig,
            None => {
                let sig = self.key.sign(&digest);
                self.record(height, round, step, block_hash, sig);
                sig
            }
        };
        Ok(Vote {
            kind,
            height,
            round,
            block_hash,
            validator: self.key.public(),
            signature,
        })
    }

    /// Signs a proposal unless it conflicts with or is older than the last signed message.
    pub fn sign_proposal(
        &mut self,
        chain_id: &str,
        height: u64,
        round: u32,
        valid_round: Option<u32>,
        block_hash: Hash256,
    ) -> Result<Proposal, SignerError> {
        let digest = Proposal::sign_digest(chain_id, height, round, valid_round, &block_hash);
        let signature = match self.check(height, round, STEP_PROPOSAL, &digest)? {
            Some(sig) => sig,
            None => {
                let sig = self.key.sign(&digest);
                self.record(height, round, STEP_PROPOSAL, Some(block_hash), sig);
                sig
            }
        };
        Ok(Proposal {
            height,
            round,
            valid_round,
            block_hash,
            proposer: self.key.public(),
            signature,
        })
    }

    /// The last signed vote, rebuilt from the state, if the last signed message was a vote
    /// at `height` (a restarted validator re-broadcasts it).
    pub fn last_vote(&self, height: u64) -> Option<Vote> {
        let kind = match self.state.step {
            STEP_PREPARE => VoteKind::Prepare,
            STEP_PRECOMMIT => VoteKind::Precommit,
            _ => return None,
        };
        if self.state.height != height {
            return None;
        }
        Some(Vote {
            kind,
            height,
            round: self.state.round,
            block_hash: self.state.block_hash,
            validator: self.key.public(),
            signature: self.state.signature?,
        })
    }

    /// Records the engine's lock and valid value for `height`. Only the height of the last
    /// signed message is kept (a lock exists only after a precommit was signed there).
    /// Returns true when the state changed and must be persisted again.
    pub fn record_locks(
        &mut self,
        height: u64,
        locked: Option<(u32, Hash256)>,
        valid: Option<(u32, Hash256)>,
    ) -> bool {
        if self.state.step == 0 || self.state.height != height {
            return false;
        }
        let changed = self.state.locked != locked || self.state.valid != valid;
        self.state.locked = locked;
        self.state.valid = valid;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(Keypair::from_seed([3; 32]), None)
    }

    #[test]
    fn refuses_a_second_different_vote_for_one_slot() {
        let mut s = signer();
        let a = Some(Hash256::digest(b"a"));
        let b = Some(Hash256::digest(b"b"));
        let v = s.sign_vote("c", VoteKind::Prepare, 5, 1, a).unwrap();
        assert!(v.verify("c").is_ok());
        assert_eq!(
            s.sign_vote("c", VoteKind::Prepare, 5, 1, b),
            Err(SignerError::Conflict(5, 1, STEP_PREPARE))
        );
        assert_eq!(
            s.sign_vote("c", VoteKind::Prepare, 5, 1, None),
            Err(SignerError::Conflict(5, 1, STEP_PREPARE))
        );
        // Re-signing the identical vote returns the identical vote.
        assert_eq!(s.sign_vote("c", VoteKind::Prepare, 5, 1, a).unwrap(), v);
    }

    #[test]
    fn refuses_anything_older_than_the_last_slot() {
        let mut s = signer();
        s.sign_vote("c", VoteKind::Precommit, 5, 2, None).unwrap();
        assert!(matches!(
            s.sign_vote("c", VoteKind::Prepare, 5, 2, None),
            Err(SignerError::Regression(..))
        ));
        assert!(matches!(
            s.sign_vote("c", VoteKind::Precommit, 5, 1, None),
            Err(SignerError::Regression(..))
        ));
        assert!(matches!(
            s.sign_proposal("c", 4, 9, None, Hash256::ZERO),
            Err(SignerError::Regression(..))
        ));
        assert!(s.sign_proposal("c", 5, 3, None, Hash256::ZERO).is_ok());
        // Same block, different valid_round: a different message.
        assert!(matches!(
            s.sign_proposal("c", 5, 3, Some(1), Hash256::ZERO),
            Err(SignerError::Conflict(..))
        ));
        assert!(s.sign_vote("c", VoteKind::Prepare, 5, 3, None).is_ok());
    }

    #[test]
    fn restored_state_keeps_the_guard_and_the_lock() {
        let mut s = signer();
        let h = Hash256::digest(b"a");
        let a = Some(h);
        s.sign_vote("c", VoteKind::Precommit, 7, 0, a).unwrap();
        assert!(s.record_locks(7, Some((0, h)), Some((0, h))));
        assert!(!s.record_locks(7, Some((0, h)), Some((0, h))));
        assert!(!s.record_locks(8, None, None));
        let saved = s.state().clone();
        let mut restored = Signer::new(Keypair::from_seed([3; 32]), Some(saved.clone()));
        assert_eq!(restored.state().locked, Some((0, h)));
        assert!(restored
            .sign_vote("c", VoteKind::Precommit, 7, 0, None)
            .is_err());
        assert_eq!(restored.last_vote(7).unwrap().block_hash, a);
        assert!(restored.last_vote(8).is_none());
        // Moving to a new height drops the old height's lock.
        restored
            .sign_vote("c", VoteKind::Prepare, 8, 0, None)
            .unwrap();
        assert_eq!(restored.state().locked, None);
    }
}
