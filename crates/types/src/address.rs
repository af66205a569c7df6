//! Addresses: `tc` followed by 48 hex digits, the first 40 the BLAKE3 hash (truncated to 20
//! bytes) of the owner's Ed25519 public key, the last 8 a checksum over those 20 bytes.

use crate::{Hash256, PublicKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

const PREFIX: &str = "tc";
const DOMAIN: &[u8] = b"timecoin/address/v1";

/// Where coins can be sent: the hash of an Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Wrong prefix or length.
    #[error("an address is 'tc' followed by 48 hex digits")]
    Format,
    /// Not hex.
    #[error("address is not hex")]
    Hex,
    /// The checksum does not match (a typo).
    #[error("address checksum does not match")]
    Checksum,
}

impl Address {
    /// The address owned by `key`.
    pub fn of(key: &PublicKey) -> Address {
        let digest = Hash256::digest_parts(&[DOMAIN, key.as_bytes()]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest.0[..20]);
        Address(out)
    }

    fn checksum(&self) -> [u8; 4] {
        let digest = Hash256::digest_parts(&[b"timecoin/address-checksum/v1", &self.0]);
        [digest.0[0], digest.0[1], digest.0[2], digest.0[3]]
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}{}",
            hex::encode(self.0),
            hex::encode(self.checksum())
        )
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.trim().strip_prefix(PREFIX).ok_or(AddressError::Format)?;
        if body.len() != 48 {
            return Err(AddressError::Format);
        }
        let mut raw = [0u8; 24];
        hex::decode_to_slice(body, &mut raw).map_err(|_| AddressError::Hex)?;
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&raw[..20]);
        let address = Address(bytes);
        if raw[20..] != address.checksum() {
            return Err(AddressError::Checksum);
        }
        Ok(address)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            crate::bytes::deserialize::<D, 20>(d).map(Address)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    #[test]
    fn display_parse_round_trip_and_checksum() {
        let address = Address::of(&Keypair::from_seed([1; 32]).public());
        let text = address.to_string();
        assert_eq!(text.len(), 50);
        assert_eq!(text.parse::<Address>(), Ok(address));
        let mut typo = text.into_bytes();
        typo[10] = if typo[10] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(typo.parse::<Address>(), Err(AddressError::Checksum));
        assert_eq!("tc00".parse::<Address>(), Err(AddressError::Format));
    }

    #[test]
    fn json_is_text_and_cbor_is_bytes() {
        let address = Address::of(&Keypair::from_seed([2; 32]).public());
        let json = serde_json::to_string(&address).unwrap();
        assert_eq!(json, format!("\"{address}\""));
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), address);
        let cbor = serde_cbor::to_vec(&address).unwrap();
        assert_eq!(cbor.len(), 21);
        assert_eq!(serde_cbor::from_slice::<Address>(&cbor).unwrap(), address);
    }
}
