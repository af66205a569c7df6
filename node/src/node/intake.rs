//! Gossip intake: every network event enters here. Proposals and votes are decoded and
//! checked (size, chain, heights, topic) before the engine sees them; transactions go to the
//! transaction worker, sync requests to the sync server. Each gossip message ends in a
//! verdict for gossipsub.
//!
//! Kept apart from the effects so that what a peer can make this node do starts in one place.

use super::{Fatal, Node};
use crate::metrics::PhaseLabels;
use crate::shared::report_gossip;
use crate::sync;
use crate::txs::GossipedTx;
use crate::wire::{ProposalMessage, VoteMessage, MAX_PROPOSAL_BYTES, MAX_VOTE_BYTES};
use crate::NODE_LOG_TARGET;
use timecoin_consensus::{Input, Verdict};
use timecoin_net::{NetEvent, Topic};
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
                    Topic::Proposal => ("proposal", self.on_proposal(&data).await?),
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
            NetEvent::PeerDisconnected(peer) => {
                debug!(target: NODE_LOG_TARGET, %peer, "peer disconnected");
                self.shared.metrics.peers.dec();
            }
        }
        Ok(())
    }

    async fn on_proposal(&mut self, data: &[u8]) -> Result<Verdict, Fatal> {
        let message = match decode_proposal(data, &self.shared.genesis.chain_id) {
            Ok(m) => m,
            Err(refused) => return Ok(refused),
        };
        self.note_height(message.proposal.height);
        if message.proposal.height == self.engine.height() && self.proposal_seen.is_none() {
            self.proposal_seen = Some(Instant::now());
            self.shared
                .metrics
                .phases
                .get_or_create(&PhaseLabels { phase: "propose" })
                .observe(self.height_started.elapsed().as_secs_f64());
        }
        let block_hash = message.block.hash();
        let kept = message.clone();
        let verdict = self
            .feed(Input::Proposal {
                proposal: message.proposal,
                block: message.block,
                block_hash,
            })
            .await?;
        // Only what the engine accepted (right proposer, good signature) may take one of
        // the few places kept for a restart. A lock on it comes later than this (the block
        // is validated first), so it is remembered in time.
        if matches!(verdict, Verdict::Accepted) {
            self.remember_proposal(&kept);
        }
        Ok(verdict)
    }

    async fn on_vote(&mut self, data: &[u8], kind: VoteKind) -> Result<Verdict, Fatal> {
        let vote = match decode_vote(data, kind) {
            Ok(v) => v,
            Err(refused) => return Ok(refused),
        };
        self.note_height(vote.height);
        let seen = (
            vote.validator,
            vote.height,
            vote.round,
            vote.kind,
            vote.block_hash,
        );
        let verdict = self.feed(Input::Vote(vote)).await?;
        if matches!(verdict, Verdict::Accepted) {
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

/// A gossiped proposal, if it decodes and its block is of this chain and of the proposal's
/// height (the engine checks the proposer and the signature).
fn decode_proposal(data: &[u8], chain_id: &str) -> Result<ProposalMessage, Verdict> {
    let message: ProposalMessage = codec::decode(data, MAX_PROPOSAL_BYTES)
        .map_err(|err| Verdict::Rejected(format!("proposal: {err}")))?;
    if message.block.header.chain_id != chain_id {
        return Err(Verdict::Rejected(format!(
            "proposal for chain {:?}",
            message.block.header.chain_id
        )));
    }
    if message.block.header.height != message.proposal.height {
        return Err(Verdict::Rejected(
            "proposal and block heights differ".into(),
        ));
    }
    Ok(message)
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
