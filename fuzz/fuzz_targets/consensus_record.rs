//! The consensus record a validator reads back at start (its own file, but a damaged disk
//! may hand it anything): decoding it and the proposals inside never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_types::codec;
use timecoin_wire::{ConsensusRecord, MAX_CONSENSUS_RECORD_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = codec::decode::<ConsensusRecord>(data, MAX_CONSENSUS_RECORD_BYTES) {
        for message in &record.proposals {
            let _ = message.block();
        }
    }
});
