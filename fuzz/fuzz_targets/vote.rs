//! A gossiped prepare or precommit vote: decoding and signature checking never panic, and
//! only the canonical encoding decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_types::{codec, Vote};

fuzz_target!(|data: &[u8]| {
    if let Ok(vote) = codec::decode::<Vote>(data, 1024) {
        assert_eq!(codec::encode(&vote), data);
        let _ = vote.verify("fuzz");
    }
});
