//! Gossip intake: every network event enters here. Proposals and votes are decoded and
//! checked (size, chain, heights, topic) before the engine sees them, cheapest checks first;
//! a proposal's signature and body are checked off the loop. Transactions go to the
//! transaction worker, sync requests to the sync server. Each gossip message ends in a
//! verdict for gossipsub: `Reject` (the forwarder is penalised) only for what is invalid on
//! every node, `Ignore` for what depends on this node's state.
//!
//! Kept apart from the effects so that what a peer can make this node do starts in one place.

use super::MAX_PROPOSALS_IN_CHECK;
use super::{Fatal, Node};
use crate::metrics::PhaseLabels;
use crate::shared::{report_gossip, Internal};
use crate::sync;
use crate::txs::GossipedTx;
use crate::wire::{ProposalMessage, VoteMessage, MAX_VOTE_BYTES};
use crate::NODE_LOG_TARGET;
use timecoin_consensus::{Input, Verdict};
use timecoin_ledger::{check_block_body, Block};
use timecoin_net::{MessageId, NetEvent, PeerId, Topic};
use timecoin_types::{codec, Vote, VoteKind};
use tokio::time::Instant;
use tracing::debug;

impl Node {
    /// Handles one network event.
    pub(super) async fn on_net_event(&mut self, event: NetEvent) -> Result<(), Fatal> {
        match event {
            NetEvent::Gossip {
                topic,
                data,
                id,
                source,
            } => {
                let (kind, verdict) = match topic {
                    Topic::Tx => {
                        if let Err(item) = self.txs.offer(Box::new(GossipedTx { data, id, source }))
                        {
                            let busy = Verdict::Ignored("transaction queue full".into());
                            report_gossip(&self.shared, "tx", item.id, item.source, &busy);
                        }
                        return Ok(());
                    }
                    Topic::Proposal => match self.on_proposal(&data, id.clone(), source) {
                        Some(verdict) => ("proposal", verdict),
                        // Reported when the check comes back.
                        None => return Ok(()),
                    },
                    Topic::Prepare => ("prepare", self.on_vote(&data, VoteKind::Prepare).await?),
                    Topic::Precommit => {
                        ("precommit", self.on_vote(&data, VoteKind::Precommit).await?)
                    }
                };
                report_gossip(&self.shared, kind, id, source, &verdict);
            }
            NetEvent::SyncRequest {
                peer,
                request,
                channel,
            } => sync::serve(self.shared.clone(), peer, request, channel),
            NetEvent::PeerConnected(peer) => {
                debug!(target: NODE_LOG_TARGET, %peer, "peer connected");
                self.shared.metrics.peers.inc();
                self.sync.trigger();
            }
            NetEvent::PeerSubscribed {
                topic: Topic::Prepare | Topic::Precommit,
                ..
            } => self.resend.peer_joined(Instant::now()),
            NetEvent::PeerSubscribed { .. } => {}
            NetEvent::PeerDisconnected(peer) => {
                debug!(target: NODE_LOG_TARGET, %peer, "peer disconnected");
                self.shared.metrics.peers.dec();
            }
        }
        Ok(())
    }

    /// A gossiped proposal: decoded, prechecked by the engine (height, proposer, duplicate)
    /// here, then its signature and body checked on a blocking thread; the engine sees it
    /// when [`Internal::ProposalChecked`] comes back. Returns the verdict when it is already
    /// known.
    fn on_proposal(&mut self, data: &[u8], id: MessageId, source: PeerId) -> Option<Verdict> {
        let message = match ProposalMessage::decode(data) {
            Ok(m) => m,
            Err(err) => return Some(Verdict::Rejected(format!("proposal: {err}"))),
        };
        self.note_height(message.proposal.height);
        if let Some(verdict) = self.engine.precheck_proposal(&message.proposal) {
            return Some(verdict);
        }
        if self.proposals_in_check >= MAX_PROPOSALS_IN_CHECK {
            return Some(Verdict::Ignored("too many proposals being checked".into()));
        }
        self.proposals_in_check += 1;
        let chain_id = self.shared.genesis.chain_id.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let checked = check_proposal(&message, &chain_id).map(Box::new);
            let _ = tx.send(Internal::ProposalChecked {
                message: Box::new(message),
                checked,
                id,
                source,
            });
        });
        None
    }

    /// Feeds a proposal whose signature and body passed [`check_proposal`] to the engine.
    pub(super) async fn on_checked_proposal(
        &mut self,
        message: ProposalMessage,
        block: Block,
    ) -> Result<Verdict, Fatal> {
        if message.proposal.height == self.engine.height() && self.proposal_seen.is_none() {
            self.proposal_seen = Some(Instant::now());
            self.shared
                .metrics
                .phases
                .get_or_create(&PhaseLabels { phase: "propose" })
                .observe(self.height_started.elapsed().as_secs_f64());
        }
        let block_hash = message.proposal.block_hash;
        let verdict = self
            .feed(Input::Proposal {
                proposal: message.proposal.clone(),
                block,
                block_hash,
            })
            .await?;
        // Only what the engine accepted (right proposer, good signature) may take one of
        // the few places kept for a restart. A lock on it comes later than this (the block
        // is validated first), so it is remembered in time.
        if matches!(verdict, Verdict::Accepted) {
            self.remember_proposal(&message);
        }
        Ok(verdict)
    }

    async fn on_vote(&mut self, data: &[u8], kind: VoteKind) -> Result<Verdict, Fatal> {
        let vote = match decode_vote(data, kind) {
            Ok(v) => v,
            Err(refused) => return Ok(refused),
        };
        self.note_height(vote.height);
        self.check_doppelganger(&vote)?;
        let seen = (
            vote.validator,
            vote.height,
            vote.round,
            vote.kind,
            vote.block_hash,
        );
        let verdict = self.feed(Input::Vote(vote)).await?;
        if matches!(verdict, Verdict::Accepted) {
            self.shared.observed.vote(seen.0, seen.3, seen.1, seen.2);
            // One line per accepted vote, for audits (e.g. proving a validator never signed
            // two different votes for one slot); off unless RUST_LOG enables it.
            debug!(target: "timed::votes", validator = %seen.0, height = seen.1, round = seen.2, kind = ?seen.3, block = ?seen.4.map(|h| h.to_string()), "vote");
        }
        Ok(verdict)
    }

    /// Messages from well ahead of us mean we fell behind: catch up by sync.
    fn note_height(&self, height: u64) {
        if height > self.engine.height() + 1 {
            self.sync.trigger();
        }
    }
}

/// The checks of a proposal that need no chain state, each one failing only for what is
/// invalid on every node (so its forwarder may be penalised): the proposer's signature, then
/// the body decoded and matched to the signed hash, this chain and the proposal's height, and
/// the body matched to every root of its header (so a relayer cannot swap a signature inside
/// a transaction). Returns the block. Runs on a blocking thread.
fn check_proposal(message: &ProposalMessage, chain_id: &str) -> Result<Block, Verdict> {
    let proposal = &message.proposal;
    if proposal.verify(chain_id).is_err() {
        return Err(Verdict::Rejected("bad signature".into()));
    }
    let block = message
        .block()
        .map_err(|err| Verdict::Rejected(format!("proposal body: {err}")))?;
    if block.hash() != proposal.block_hash {
        return Err(Verdict::Rejected(
            "block does not match the proposal".into(),
        ));
    }
    if block.header.chain_id != chain_id {
        return Err(Verdict::Rejected(format!(
            "proposal for chain {:?}",
            block.header.chain_id
        )));
    }
    if block.header.height != proposal.height {
        return Err(Verdict::Rejected(
            "proposal and block heights differ".into(),
        ));
    }
    // A fresh proposal carries a block built for its own round, a re-proposal (with a valid
    // round) one built earlier. Anything else would credit the block, and the proposer's share
    // of its reward, to another round's proposer.
    let built = block.header.round;
    if built > proposal.round || (proposal.valid_round.is_none() && built != proposal.round) {
        return Err(Verdict::Rejected(format!(
            "block built for round {built} proposed in round {} (valid round {:?})",
            proposal.round, proposal.valid_round
        )));
    }
    check_block_body(&block).map_err(|err| Verdict::Rejected(format!("proposal body: {err}")))?;
    Ok(block)
}

/// A gossiped vote, if it decodes and was sent on its own kind's topic.
fn decode_vote(data: &[u8], kind: VoteKind) -> Result<Vote, Verdict> {
    let vote = codec::decode::<VoteMessage>(data, MAX_VOTE_BYTES)
        .map_err(|err| Verdict::Rejected(format!("vote: {err}")))?
        .vote;
    if vote.kind != kind {
        return Err(Verdict::Rejected(format!(
            "{:?} vote on the {kind:?} topic",
            vote.kind
        )));
    }
    Ok(vote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use timecoin_ledger::Genesis;
    use timecoin_types::{Keypair, Proposal};

    /// A proposal of round `round` (re-proposing from `valid_round`) whose block was built
    /// for round `built`.
    fn proposed(built: u32, round: u32, valid_round: Option<u32>) -> Result<Block, Verdict> {
        let key = Keypair::from_seed([3; 32]);
        let validator = timecoin_ledger::GenesisValidator::new("v", key.public(), 1);
        let mut block = Genesis::new("c", 0, 0, vec![validator], Vec::new()).genesis_block();
        block.header.height = 1;
        block.header.round = built;
        let proposal = Proposal::sign("c", &key, 1, round, valid_round, block.hash());
        check_proposal(&ProposalMessage::new(proposal, &block), "c")
    }

    #[test]
    fn a_block_is_proposed_in_its_own_round_or_re_proposed_later() {
        assert!(proposed(2, 2, None).is_ok());
        assert!(proposed(1, 3, Some(2)).is_ok());
        for (built, round, valid_round) in [(1, 2, None), (3, 2, None), (4, 3, Some(1))] {
            assert!(
                matches!(
                    proposed(built, round, valid_round),
                    Err(Verdict::Rejected(_))
                ),
                "built {built}, round {round}, valid round {valid_round:?}"
            );
        }
    }
}
