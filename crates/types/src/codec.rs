//! The wire codec: CBOR (serde_cbor) behind one pair of functions, with a hard size limit
//! checked before any byte is decoded.

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
}

/// Encodes `value` as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our types have no maps with non-string keys and no custom failing serializers, so
    // encoding into memory cannot fail.
    serde_cbor::to_vec(value).expect("CBOR encoding of a plain data type")
}

/// Decodes CBOR bytes into `T`, refusing inputs over `limit` bytes and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    Ok(serde_cbor::from_slice(bytes)?)
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
}
