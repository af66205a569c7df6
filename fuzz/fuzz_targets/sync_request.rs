//! A sync request from a peer: decoding never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_types::codec;
use timecoin_wire::{SyncRequest, MAX_SYNC_REQUEST_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = codec::decode::<SyncRequest>(data, MAX_SYNC_REQUEST_BYTES) {
        assert_eq!(codec::encode(&request), data);
    }
});
