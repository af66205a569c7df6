//! A signed proposal header: decoding and signature checking never panic, and only the
//! canonical encoding decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_types::{codec, Proposal};

fuzz_target!(|data: &[u8]| {
    if let Ok(proposal) = codec::decode::<Proposal>(data, 1024) {
        assert_eq!(codec::encode(&proposal), data);
        let _ = proposal.verify("fuzz");
    }
});
