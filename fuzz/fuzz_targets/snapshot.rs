//! A state snapshot as a joiner receives it from peers: a manifest (CBOR) and a chunk's
//! bytes. Never a panic; a manifest that passes its checks describes chunks consistently, and
//! a chunk that decodes holds its records in strictly ascending order and re-encodes to the
//! same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_ledger::snapshot::{
    chunk_hash, decode_chunk, decode_records, SnapshotManifest, MAX_MANIFEST_BYTES,
};
use timecoin_types::codec;

fuzz_target!(|data: &[u8]| {
    // A big-endian u16 length, that many bytes of manifest, then the chunk.
    let Some((&[high, low], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (manifest_bytes, chunk) =
        rest.split_at((usize::from(high) << 8 | usize::from(low)).min(rest.len()));
    if let Ok(records) = decode_records(chunk) {
        let mut again = Vec::new();
        records.iter().for_each(|r| r.encode_into(&mut again));
        assert_eq!(again, chunk, "a decoded chunk re-encodes to its bytes");
        assert!(records
            .windows(2)
            .all(|w| w[0].order_key() < w[1].order_key()));
    }
    if let Ok(manifest) = codec::decode::<SnapshotManifest>(manifest_bytes, MAX_MANIFEST_BYTES) {
        if manifest.check(&manifest.chain_id.clone()).is_ok() {
            let total: u64 = (0..manifest.chunks.len() as u32)
                .map(|i| manifest.records_in(i))
                .sum();
            assert_eq!(total, manifest.records);
            let mut with_chunk = manifest.clone();
            if let Some(first) = with_chunk.chunks.first_mut() {
                *first = chunk_hash(chunk);
                if let Ok(records) = decode_chunk(&with_chunk, 0, chunk) {
                    assert_eq!(records.len() as u64, with_chunk.records_in(0));
                }
            }
        }
    }
});
