//! Validator registration on-chain: staking outputs, proofs of possession and the rule that
//! turns the transactions of a block into the validator set two heights later.
//!
//! A registration is an ordinary signed transaction whose first output is the *staking
//! output*: coins (at least [`MIN_COLLATERAL`]) still owned by the output's address, but bound
//! by the transaction's [`Stake::Register`] to a consensus key and a reward address. The
//! consensus key proves possession by signing [`possession_digest`], which binds the chain, the
//! owner, the reward address and the first input spent (so a proof cannot be replayed in
//! another registration). Registered at height h, the key votes from h + [`ACTIVATION_DELAY`]
//! with weight = the locked amount. A [`Stake::Deregister`] that includes an input signed by
//! the staking output's owner removes the key at h + [`ACTIVATION_DELAY`]; the collateral can
//! be spent from that height + `unbonding_blocks` (genesis) on. Genesis validators have no
//! staking output and therefore cannot deregister.

use crate::fixed::{concat, field};
use crate::tx::{OutPoint, Transaction, TxOutput};
use serde::{Deserialize, Serialize};
use timecoin_types::{Address, Amount, Hash256, Keypair, PublicKey, Signature, COIN};

/// Smallest collateral a registration may lock (the Bronze level): 1,000 TIME.
pub const MIN_COLLATERAL: Amount = 1_000 * COIN;

/// Heights between the block that finalizes a registration or deregistration and the first
/// height whose validator set reflects it. Two, so that when block h is applied every node
/// already knows the sets of h + 1 (fixed by block h − 1) and h + 2 (fixed now): the engine
/// and sync can always look one height past the tip.
pub const ACTIVATION_DELAY: u64 = 2;

/// Position of the staking output in a registration transaction.
pub const STAKE_OUTPUT_INDEX: u32 = 0;

/// Domain tag of [`possession_digest`].
const POSSESSION_TAG: &[u8; 16] = b"TIMECOIN/STPK/01";

/// What a staking transaction does to the validator set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stake {
    /// Locks output [`STAKE_OUTPUT_INDEX`] as collateral of `public_key`.
    Register {
        /// The consensus key that will vote.
        public_key: PublicKey,
        /// Where the validator's rewards are paid.
        reward_address: Address,
        /// The consensus key's signature over [`possession_digest`]; `None` is refused, it
        /// is optional only so that its absence gets its own error.
        proof: Option<Signature>,
    },
    /// Starts unbonding the staking output `stake`.
    Deregister {
        /// The staking output of the registration being ended.
        stake: OutPoint,
    },
}

impl Stake {
    /// The fixed bytes the txid covers: a kind byte, then the key and reward address of a
    /// registration (not the proof: like input signatures it is checked, not hashed, so the
    /// id cannot be changed by re-encoding it) or the staking outpoint of a deregistration.
    pub(crate) fn id_bytes(&self) -> Vec<u8> {
        match self {
            Stake::Register {
                public_key,
                reward_address,
                ..
            } => {
                let mut out = vec![1u8];
                out.extend_from_slice(public_key.as_bytes());
                out.extend_from_slice(&reward_address.0);
                out
            }
            Stake::Deregister { stake } => {
                let mut out = vec![2u8];
                out.extend_from_slice(&stake.to_bytes());
                out
            }
        }
    }
}

/// The digest a consensus key signs to prove that its holder agrees to be registered with
/// this owner and reward address: domain tag, length-prefixed chain id, the consensus key,
/// the staking output's owner, the reward address and the registration's first input.
pub fn possession_digest(
    chain_id: &str,
    public_key: &PublicKey,
    owner: &Address,
    reward_address: &Address,
    first_input: &OutPoint,
) -> Hash256 {
    let mut bytes = Vec::with_capacity(16 + 2 + chain_id.len() + 32 + 20 + 20 + 36);
    bytes.extend_from_slice(POSSESSION_TAG);
    bytes.extend_from_slice(&(chain_id.len() as u16).to_be_bytes());
    bytes.extend_from_slice(chain_id.as_bytes());
    bytes.extend_from_slice(public_key.as_bytes());
    bytes.extend_from_slice(&owner.0);
    bytes.extend_from_slice(&reward_address.0);
    bytes.extend_from_slice(&first_input.to_bytes());
    Hash256::digest(&bytes)
}

impl Transaction {
    /// Builds a registration: `inputs` signed by their keys, the staking output of
    /// `collateral` owned by the first input's key, `change` outputs after it, and a proof of
    /// possession by `consensus_key`.
    ///
    /// # Panics
    /// If `inputs` is empty.
    pub fn build_registration(
        chain_id: &str,
        inputs: Vec<(OutPoint, &Keypair)>,
        consensus_key: &Keypair,
        reward_address: Address,
        collateral: Amount,
        change: Vec<TxOutput>,
    ) -> Transaction {
        let (first, owner_key) = inputs[0];
        let owner = Address::of(&owner_key.public());
        let public_key = consensus_key.public();
        let proof = consensus_key.sign(&possession_digest(
            chain_id,
            &public_key,
            &owner,
            &reward_address,
            &first,
        ));
        let mut outputs = vec![TxOutput {
            address: owner,
            amount: collateral,
        }];
        outputs.extend(change);
        Transaction::build_signed_with_stake(
            chain_id,
            inputs,
            outputs,
            Some(Stake::Register {
                public_key,
                reward_address,
                proof: Some(proof),
            }),
        )
    }

    /// Builds a deregistration of `stake`; one of `inputs` must be signed by the staking
    /// output's owner (they pay the fee, and prove the owner asks for it).
    pub fn build_deregistration(
        chain_id: &str,
        inputs: Vec<(OutPoint, &Keypair)>,
        outputs: Vec<TxOutput>,
        stake: OutPoint,
    ) -> Transaction {
        Transaction::build_signed_with_stake(
            chain_id,
            inputs,
            outputs,
            Some(Stake::Deregister { stake }),
        )
    }
}

/// A staking output's binding, kept in the store beside the UTXO while the output is locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StakeRecord {
    /// The consensus key it backs.
    pub public_key: PublicKey,
    /// Where that validator's rewards go.
    pub reward_address: Address,
    /// The staking output's owner: the only one who may deregister or, later, spend it.
    pub owner: Address,
    /// Locked collateral (= the validator's weight).
    pub amount: Amount,
    /// `None` while bonded; after a deregistration, the first height whose blocks may spend
    /// the output.
    pub unlock_height: Option<u64>,
}

impl StakeRecord {
    /// Fixed 88-byte storage form: key, reward address, owner, amount, unlock height
    /// (`u64::MAX` while bonded), integers big-endian.
    pub fn to_bytes(self) -> [u8; 88] {
        concat(&[
            self.public_key.as_bytes(),
            &self.reward_address.0,
            &self.owner.0,
            &self.amount.to_be_bytes(),
            &self.unlock_height.unwrap_or(u64::MAX).to_be_bytes(),
        ])
    }

    /// Inverse of [`StakeRecord::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 88]) -> StakeRecord {
        let unlock = u64::from_be_bytes(field(bytes, 80));
        StakeRecord {
            public_key: PublicKey(field(bytes, 0)),
            reward_address: Address(field(bytes, 32)),
            owner: Address(field(bytes, 52)),
            amount: u64::from_be_bytes(field(bytes, 72)),
            unlock_height: (unlock != u64::MAX).then_some(unlock),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        for unlock_height in [None, Some(0), Some(17)] {
            let record = StakeRecord {
                public_key: Keypair::from_seed([1; 32]).public(),
                reward_address: Address([2; 20]),
                owner: Address([3; 20]),
                amount: MIN_COLLATERAL,
                unlock_height,
            };
            assert_eq!(StakeRecord::from_bytes(&record.to_bytes()), record);
        }
    }

    #[test]
    fn possession_digest_binds_every_field() {
        let key = Keypair::from_seed([1; 32]).public();
        let op = OutPoint {
            txid: Hash256::digest(b"x"),
            index: 0,
        };
        let base = possession_digest("c", &key, &Address([1; 20]), &Address([2; 20]), &op);
        let other_key = Keypair::from_seed([2; 32]).public();
        let other_op = OutPoint { index: 1, ..op };
        for digest in [
            possession_digest("d", &key, &Address([1; 20]), &Address([2; 20]), &op),
            possession_digest("c", &other_key, &Address([1; 20]), &Address([2; 20]), &op),
            possession_digest("c", &key, &Address([9; 20]), &Address([2; 20]), &op),
            possession_digest("c", &key, &Address([1; 20]), &Address([9; 20]), &op),
            possession_digest("c", &key, &Address([1; 20]), &Address([2; 20]), &other_op),
        ] {
            assert_ne!(digest, base);
        }
    }
}
