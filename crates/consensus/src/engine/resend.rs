//! Sending again what gossip may have lost. The paper assumes that gossip eventually
//! delivers every message; gossipsub does not retransmit what a partition or a restart
//! lost, so without this a validator that waits for 2/3 of any prepares or precommits (the
//! condition that starts the prepare and precommit timers), or for the proof of lock of a
//! re-proposal, could wait forever after the network heals.

use super::{HeightState, Outbox};
use crate::messages::Output;
use timecoin_types::Hash256;

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    /// Sends our votes of the current round again, with the precommits that took us
    /// past the previous round and the prepares that justify our valid value. Two things
    /// drive it: a peer joining (what it missed while away, see [`crate::Input::PeerJoined`]),
    /// and the round's propose timer, which repeats while the round lasts, so that a round
    /// that goes well is decided before it ever fires.
    pub(super) fn rebroadcast(&self, out: &mut Outbox<'_, B>) {
        let Some(key) = out.signer.as_ref().map(|s| s.public_key()) else {
            return;
        };
        let Some(rs) = self.rounds.get(&self.round) else {
            return;
        };
        for set in [&rs.prepares, &rs.precommits] {
            if let Some(vote) = set.get(&key) {
                out.outputs.push(Output::BroadcastVote(vote.clone()));
            }
        }
        let pol = rs
            .proposal
            .as_ref()
            .and_then(|p| Some((p.valid_round?, p.block_hash)));
        // The precommits of the latest earlier round, which are what moved us on:
        // validators still in that round need 2/3 of them to time out and follow, and
        // some may be lost for good (a restarted validator cannot re-send what it signed
        // before its last message).
        let earlier = self
            .latest_earlier_precommits()
            .and_then(|r| self.rounds.get(&r));
        if let Some(rs) = earlier {
            for vote in rs.precommits.all() {
                out.outputs.push(Output::BroadcastVote(vote.clone()));
            }
        }
        if let Some((vr, hash)) = pol {
            self.resend_prepare(out, vr, hash);
        }
        // Everyone's valid value reaches everyone: the next honest proposer then holds
        // the most recent one and re-proposes it, which every honest lock accepts.
        if let Some((vr, hash)) = self.valid {
            self.send_pol(out, vr, hash);
        }
    }

    /// Relays the prepares that form the quorum for `hash` in `round` (they are signed,
    /// so anyone can forward them).
    pub(super) fn send_pol(&self, out: &mut Outbox<'_, B>, round: u32, hash: Hash256) {
        if let Some(rs) = self.rounds.get(&round) {
            for vote in rs.prepares.votes_for(Some(hash)) {
                out.outputs.push(Output::BroadcastVote(vote.clone()));
            }
        }
    }

    /// Sends our prepare for `hash` in `round` again: a re-proposal names that round as
    /// its proof of lock, and validators that lost some of its prepares (they are not
    /// retransmitted by gossip) need them to unlock.
    pub(super) fn resend_prepare(&self, out: &mut Outbox<'_, B>, round: u32, hash: Hash256) {
        let Some(key) = out.signer.as_ref().map(|s| s.public_key()) else {
            return;
        };
        let vote = self.rounds.get(&round).and_then(|rs| rs.prepares.get(&key));
        if let Some(vote) = vote.filter(|v| v.block_hash == Some(hash)) {
            out.outputs.push(Output::BroadcastVote(vote.clone()));
        }
    }
}
