//! The wire codec: CBOR (serde_cbor) behind one pair of functions, with a hard size limit
//! checked before any byte is decoded, and only the canonical encoding accepted.
//!
//! Canonical means: exactly the bytes [`encode`] produces for the decoded value. Decoding
//! re-encodes and compares, which refuses every other spelling of one value (longer integer
//! forms, indefinite lengths, unknown or reordered fields, an absent option spelled `null`).
//! One value, one encoding: content-hash message ids and duplicate caches then see a re-encoded
//! copy as the duplicate it is, and no relayer can make one message look like two.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input is larger than the limit for its kind.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Actual size.
        len: usize,
        /// Allowed size.
        limit: usize,
    },
    /// Not valid CBOR for the expected type.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_cbor::Error),
    /// Valid CBOR for the type, but not its canonical encoding.
    #[error("non-canonical encoding")]
    NonCanonical,
}

/// Encodes `value` as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our types have no maps with non-string keys and no custom failing serializers, so
    // encoding into memory cannot fail.
    serde_cbor::to_vec(value).expect("CBOR encoding of a plain data type")
}

/// Decodes CBOR bytes into `T`, refusing inputs over `limit` bytes, trailing bytes and any
/// encoding but the canonical one.
pub fn decode<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let value: T = serde_cbor::from_slice(bytes)?;
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let v = vec![1u64, 2, 3];
        let bytes = encode(&v);
        assert_eq!(decode::<Vec<u64>>(&bytes, 100).unwrap(), v);
        assert!(matches!(
            decode::<Vec<u64>>(&bytes, 2),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<Vec<u64>>(&[0xff, 0x00, 0x13], 100),
            Err(CodecError::Malformed(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<Vec<u64>>(&trailing, 100).is_err());
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Message {
        n: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extra: Option<u8>,
    }

    #[test]
    fn only_the_canonical_encoding_decodes() {
        let canonical = encode(&Message { n: 1, extra: None });
        assert_eq!(
            decode::<Message>(&canonical, 100).unwrap(),
            Message { n: 1, extra: None }
        );
        // The same value spelled differently: a two-byte integer, an explicit null, an
        // unknown field, an indefinite-length map.
        let spellings: [&[u8]; 4] = [
            &[0xa1, 0x61, b'n', 0x18, 0x01],
            &[
                0xa2, 0x61, b'n', 0x01, 0x65, b'e', b'x', b't', b'r', b'a', 0xf6,
            ],
            &[0xa2, 0x61, b'n', 0x01, 0x61, b'z', 0x00],
            &[0xbf, 0x61, b'n', 0x01, 0xff],
        ];
        for bytes in spellings {
            assert!(
                matches!(decode::<Message>(bytes, 100), Err(CodecError::NonCanonical)),
                "{bytes:02x?} accepted"
            );
        }
    }
}
