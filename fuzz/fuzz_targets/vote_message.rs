//! A gossiped vote envelope: decoding and the signature check never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_types::codec;
use timecoin_wire::{VoteMessage, MAX_VOTE_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = codec::decode::<VoteMessage>(data, MAX_VOTE_BYTES) {
        assert_eq!(codec::encode(&message), data);
        let _ = message.vote.verify("fuzz");
    }
});
