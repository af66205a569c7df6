//! Ed25519 keys and signatures with strict verification.

use crate::bytes::fixed_bytes_type;
use crate::Hash256;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// An Ed25519 public key (32 bytes). It is also a validator's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

fixed_bytes_type!(PublicKey, 32);

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

fixed_bytes_type!(Signature, 64);

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is not a valid curve point.
    #[error("public key is not a valid Ed25519 point")]
    BadKey,
    /// The signature does not verify under strict rules.
    #[error("signature does not verify")]
    Invalid,
}

impl PublicKey {
    /// Verifies `signature` over the 32-byte digest `msg` with strict Ed25519 rules (no
    /// small-order keys, canonical encodings only).
    pub fn verify(&self, msg: &Hash256, signature: &Signature) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(msg.as_bytes(), &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_hex(s)
    }
}

/// An Ed25519 signing key with its public key.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Keypair {
        Keypair::from_seed(rand::random())
    }

    /// The key whose 32-byte secret seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        let signing = SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    /// The 32-byte secret seed (what key files store).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs the 32-byte digest `msg`.
    pub fn sign(&self, msg: &Hash256) -> Signature {
        Signature(self.signing.sign(msg.as_bytes()).to_bytes())
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({:?})", self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let key = Keypair::from_seed([7; 32]);
        let msg = Hash256::digest(b"hello");
        let sig = key.sign(&msg);
        assert_eq!(key.public().verify(&msg, &sig), Ok(()));
        assert_eq!(
            key.public().verify(&Hash256::digest(b"other"), &sig),
            Err(SignatureError::Invalid)
        );
        let mut bad = sig;
        bad.0[0] ^= 1;
        assert_eq!(
            key.public().verify(&msg, &bad),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn seed_round_trips() {
        let key = Keypair::generate();
        assert_eq!(Keypair::from_seed(key.seed()).public(), key.public());
    }
}
