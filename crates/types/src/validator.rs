//! Validator sets: who may vote at a height and with how much weight.

use crate::{Address, Hash256, PublicKey};
use serde::{Deserialize, Serialize};

/// One member of a validator set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// The consensus key; also the validator's identity.
    pub public_key: PublicKey,
    /// Voting weight: the validator's locked collateral in base units.
    pub weight: u64,
    /// Where the validator's block rewards are paid.
    pub reward_address: Address,
}

impl Validator {
    /// A member with `weight` whose rewards are paid to the address of its own key.
    pub fn with_own_reward_address(public_key: PublicKey, weight: u64) -> Validator {
        Validator {
            public_key,
            weight,
            reward_address: Address::of(&public_key),
        }
    }
}

/// Why a list of validators is not a valid set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// No members.
    #[error("a validator set needs at least one member")]
    Empty,
    /// A member with no weight.
    #[error("validator {0} has zero weight")]
    ZeroWeight(PublicKey),
    /// A key listed twice.
    #[error("validator {0} is listed twice")]
    Duplicate(PublicKey),
    /// The total weight does not fit in 64 bits.
    #[error("total validator weight overflows")]
    Overflow,
}

/// The validators of one height, sorted by public key, with their total weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Validator>", into = "Vec<Validator>")]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    total_weight: u64,
}

impl TryFrom<Vec<Validator>> for ValidatorSet {
    type Error = ValidatorSetError;
    fn try_from(v: Vec<Validator>) -> Result<Self, Self::Error> {
        ValidatorSet::new(v)
    }
}

impl From<ValidatorSet> for Vec<Validator> {
    fn from(set: ValidatorSet) -> Self {
        set.validators
    }
}

impl ValidatorSet {
    /// Builds a set, checking that it is non-empty, keys are unique, weights are positive and
    /// the total fits in `u64`.
    pub fn new(mut validators: Vec<Validator>) -> Result<ValidatorSet, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        validators.sort_by_key(|a| a.public_key);
        let mut total: u64 = 0;
        for (i, v) in validators.iter().enumerate() {
            if v.weight == 0 {
                return Err(ValidatorSetError::ZeroWeight(v.public_key));
            }
            if i > 0 && validators[i - 1].public_key == v.public_key {
                return Err(ValidatorSetError::Duplicate(v.public_key));
            }
            total = total
                .checked_add(v.weight)
                .ok_or(ValidatorSetError::Overflow)?;
        }
        Ok(ValidatorSet {
            validators,
            total_weight: total,
        })
    }

    /// The members, sorted by public key.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set has at least one member.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Sum of all weights.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// The member with this key, if any.
    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.index_of(key).map(|i| &self.validators[i])
    }

    /// The position of the member with this key, if any.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.validators
            .binary_search_by(|v| v.public_key.cmp(key))
            .ok()
    }

    /// The weight of `key`: zero for keys outside the set.
    pub fn weight_of(&self, key: &PublicKey) -> u64 {
        self.get(key).map_or(0, |v| v.weight)
    }

    /// True when `weight` is a quorum: `3 × weight ≥ 2 × total`.
    pub fn is_quorum(&self, weight: u64) -> bool {
        3 * weight as u128 >= 2 * self.total_weight as u128
    }

    /// True when `weight` is more than a third of the total, so it includes at least one
    /// honest validator while the faulty weight stays below a third.
    pub fn exceeds_one_third(&self, weight: u64) -> bool {
        3 * weight as u128 > self.total_weight as u128
    }

    /// The proposer of `(height, round)`. Round 0's proposer is drawn with probability
    /// proportional to weight from a hash of the height; later rounds rotate through the set
    /// from there, so every member proposes within `len()` rounds.
    pub fn proposer(&self, height: u64, round: u32) -> &Validator {
        let seed = Hash256::digest_parts(&[b"timecoin/proposer/v1", &height.to_be_bytes()]);
        let mut draw = [0u8; 16];
        draw.copy_from_slice(&seed.0[..16]);
        let ticket = (u128::from_be_bytes(draw) % self.total_weight as u128) as u64;
        let mut acc = 0u64;
        let first = self
            .validators
            .iter()
            .position(|v| {
                acc += v.weight;
                ticket < acc
            })
            .expect("ticket is below the total weight");
        &self.validators[(first + round as usize) % self.validators.len()]
    }

    /// A hash that commits to every member, weight and reward address, over a fixed layout
    /// that another implementation can rebuild without a CBOR encoder: BLAKE3 of
    /// `"TIMECOIN/VSET/01"`, the member count (u32 BE), then per member in key order the public
    /// key (32 bytes), the weight (u64 BE) and the reward address (20 bytes).
    pub fn hash(&self) -> Hash256 {
        let mut bytes = Vec::with_capacity(16 + 4 + self.validators.len() * (32 + 8 + 20));
        bytes.extend_from_slice(b"TIMECOIN/VSET/01");
        bytes.extend_from_slice(&(self.validators.len() as u32).to_be_bytes());
        for v in &self.validators {
            bytes.extend_from_slice(v.public_key.as_bytes());
            bytes.extend_from_slice(&v.weight.to_be_bytes());
            bytes.extend_from_slice(&v.reward_address.0);
        }
        Hash256::digest(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec, Keypair};

    pub(crate) fn set_of(weights: &[u64]) -> ValidatorSet {
        let key = |i: usize| Keypair::from_seed([i as u8 + 1; 32]).public();
        let members = weights.iter().enumerate();
        ValidatorSet::new(
            members
                .map(|(i, &w)| Validator::with_own_reward_address(key(i), w))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn quorum_is_two_thirds_inclusive() {
        let set = set_of(&[1, 1, 1]);
        assert!(set.is_quorum(2));
        assert!(!set.is_quorum(1));
        let set = set_of(&[1, 1, 1, 1]);
        assert!(set.is_quorum(3));
        assert!(!set.is_quorum(2));
        assert!(set.exceeds_one_third(2));
        assert!(!set.exceeds_one_third(1));
        let big = set_of(&[u64::MAX / 2, u64::MAX / 2]);
        assert!(big.is_quorum(u64::MAX / 2 * 2));
        assert!(!big.is_quorum(u64::MAX / 2));
    }

    #[test]
    fn rejects_bad_sets() {
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
        let one = set_of(&[5]).validators()[0].clone();
        assert!(matches!(
            ValidatorSet::new(vec![one.clone(), one.clone()]),
            Err(ValidatorSetError::Duplicate(_))
        ));
        let zero = Validator { weight: 0, ..one };
        assert!(matches!(
            ValidatorSet::new(vec![zero]),
            Err(ValidatorSetError::ZeroWeight(_))
        ));
    }

    #[test]
    fn proposer_rotates_through_every_member_and_follows_weight() {
        let set = set_of(&[1, 1, 1, 1, 1]);
        let mut seen: Vec<_> = (0..5).map(|r| set.proposer(9, r).public_key).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5);

        let skewed = set_of(&[1, 9]);
        let heavy = skewed
            .validators()
            .iter()
            .find(|v| v.weight == 9)
            .unwrap()
            .public_key;
        let heavy_turns = (0..1000)
            .filter(|&h| skewed.proposer(h, 0).public_key == heavy)
            .count();
        assert!((850..950).contains(&heavy_turns), "{heavy_turns}");
    }

    #[test]
    fn serde_keeps_the_checks() {
        let set = set_of(&[3, 4]);
        let bytes = codec::encode(&set);
        assert_eq!(codec::decode::<ValidatorSet>(&bytes, 1 << 16).unwrap(), set);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<ValidatorSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<ValidatorSet>("[]").is_err());
    }

    #[test]
    fn set_hash_binds_members_weights_and_reward_addresses() {
        let set = set_of(&[5, 7, 9]);
        let mut hashes = vec![set.hash()];
        let mut heavier = set.validators().to_vec();
        heavier[0].weight += 1;
        hashes.push(ValidatorSet::new(heavier).unwrap().hash());
        let mut paid_elsewhere = set.validators().to_vec();
        paid_elsewhere[1].reward_address = Address([0xee; 20]);
        hashes.push(ValidatorSet::new(paid_elsewhere).unwrap().hash());
        hashes.push(
            ValidatorSet::new(set.validators()[..2].to_vec())
                .unwrap()
                .hash(),
        );
        let mut unique = hashes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), hashes.len());
        // The order members were given in does not matter: the set sorts them.
        let mut reversed = set.validators().to_vec();
        reversed.reverse();
        assert_eq!(ValidatorSet::new(reversed).unwrap().hash(), set.hash());
    }
}
