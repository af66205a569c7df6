//! The node's message formats: those of [`timecoin_wire`], and their gossip size limits in
//! the network layer's terms.

pub use timecoin_wire::*;

use timecoin_net::MessageLimits;

/// The size limit of each gossip topic. These are protocol limits: a peer that forwards a
/// larger message is penalised by every node.
pub const GOSSIP_LIMITS: MessageLimits = MessageLimits {
    proposal: MAX_PROPOSAL_BYTES,
    vote: MAX_VOTE_BYTES,
    tx: MAX_TX_MESSAGE_BYTES,
};
