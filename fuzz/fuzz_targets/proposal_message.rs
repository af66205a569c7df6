//! A gossiped proposal as the node's intake takes it: the envelope first, then the body, then
//! the stateless body checks. Never a panic, and only canonical encodings decode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use timecoin_ledger::check_block_body;
use timecoin_types::codec;
use timecoin_wire::ProposalMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = ProposalMessage::decode(data) else {
        return;
    };
    assert_eq!(codec::encode(&message), data);
    let _ = message.proposal.verify("fuzz");
    if let Ok(block) = message.block() {
        let _ = block.hash() == message.proposal.block_hash;
        let _ = check_block_body(&block);
    }
});
