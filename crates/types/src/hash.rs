//! BLAKE3-256 hashes.

use crate::bytes::fixed_bytes_type;

/// A BLAKE3-256 digest: block hashes, txids, validator-set hashes and the digests that get
/// signed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash256(pub [u8; 32]);

fixed_bytes_type!(Hash256, 32);

/// A string that is not 64 hex digits.
pub type HashParseError = hex::FromHexError;

impl Hash256 {
    /// The all-zero hash, used as the previous hash of the genesis block.
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// BLAKE3 of `data`.
    pub fn digest(data: &[u8]) -> Hash256 {
        Hash256(*blake3::hash(data).as_bytes())
    }

    /// BLAKE3 of several byte strings, each prefixed by its length so that no two different
    /// sequences of parts hash alike.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash256 {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(&(part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Hash256(*hasher.finalize().as_bytes())
    }
}

impl std::str::FromStr for Hash256 {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash256::from_hex(s)
    }
}
