//! The event loop of `timed start`: one task drives the consensus engine from timers, work
//! finished off the loop, TSDC slots and the network.
//!
//! The loop is the only writer of the ledger. Slow work (redb transactions, block
//! validation) runs on blocking threads and comes back as [`Internal`] events, so the loop
//! never stalls the async executor. What the engine asks for is carried out in [`effects`];
//! what peers gossip is checked in [`intake`] before the engine sees it; opening the node and
//! closing it down again is [`crate::start`]'s job.

mod effects;
mod intake;
mod resend;

use crate::shared::{report_gossip, Internal, Shared, Status};
use crate::sync::{self, SyncHandle, SyncRefusal};
use crate::txs::TxWorker;
use crate::wire::{ProposalMessage, SyncedBlock};
use crate::NODE_LOG_TARGET;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use timecoin_consensus::{
    Engine, Input, Signer, Timeout, FUTURE_HEIGHTS, STEP_PRECOMMIT, STEP_PREPARE,
};
use timecoin_ledger::{Block, Genesis, Upgrade, PROTOCOL_VERSION};
use timecoin_net::NetEvents;
use timecoin_types::{Hash256, Vote, VoteKind};
use tokio::signal::unix::Signal;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tracing::{error, info};

/// Most proposals remembered per height (the engine caches no more blocks either).
const MAX_PROPOSALS_PER_HEIGHT: usize = 16;
/// Most gossiped proposals whose signature and body are being checked at once; each holds
/// up to a full block, so this bounds that memory too.
const MAX_PROPOSALS_IN_CHECK: usize = 8;

/// Heights a validator watches after a start before it signs, unless the watch's time runs
/// out first (`[consensus] doppelganger_watch_ms`).
pub const DOPPELGANGER_HEIGHTS: u64 = 2;

/// A validator's signer held back after a start while the node looks for votes of its key
/// that it did not sign: another process running the same key (a copied home, a failover
/// that did not stop the old machine). Signing beside it would double-sign.
struct DoppelgangerWatch {
    signer: Signer,
    /// Heights still to watch.
    heights_left: u64,
    /// When the watch ends anyway (a network waiting for this validator makes no heights).
    until: Instant,
}

impl DoppelgangerWatch {
    /// True if `vote`, of this signer's key, is one this process did not sign: correctly
    /// signed and later than the last message the persisted signer state records (earlier
    /// ones may be its own, from before the restart, relayed late).
    fn signed_elsewhere(&self, vote: &Vote, chain_id: &str) -> bool {
        let state = self.signer.state();
        let step = match vote.kind {
            VoteKind::Prepare => STEP_PREPARE,
            VoteKind::Precommit => STEP_PRECOMMIT,
        };
        vote.validator == self.signer.public_key()
            && (vote.height, vote.round, step) > (state.height, state.round, state.step)
            && vote.verify(chain_id).is_ok()
    }
}

/// Why the loop stopped on its own: going on could break safety, so the node stops instead.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The signer state could not be made durable, so no further vote may leave the node.
    #[error("cannot persist the signer state: {0}")]
    SignerState(String),
    /// Another process signs with this validator's key.
    #[error("another process signs with this validator's key: its {kind:?} for height {height} round {round} was not signed here; stopped without signing anything. Stop the other node (or, if this is the only one, start with --skip-doppelganger-check)")]
    Doppelganger {
        /// The vote's height.
        height: u64,
        /// Its round.
        round: u32,
        /// Its kind.
        kind: VoteKind,
    },
    /// The chain's upgrade schedule reaches a protocol version this binary does not
    /// implement; the node stops before that height rather than fork off.
    #[error("height {} follows protocol version {} under the genesis upgrade schedule, but this binary implements only up to version {}: stopped before that height; install a timed that implements it and start again", .0.height, .0.version, PROTOCOL_VERSION)]
    UnsupportedVersion(Upgrade),
    /// A finalized block could not be stored.
    #[error("cannot store the finalized block at height {height}: {reason}")]
    FinalizedBlock {
        /// Its height.
        height: u64,
        /// What failed.
        reason: String,
    },
}

/// A height this node must not reach, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopBefore {
    /// The operator's `--halt-height`: finalize up to the height before, then stop cleanly.
    Halt(u64),
    /// The first scheduled upgrade to a version this binary does not implement.
    Upgrade(Upgrade),
}

impl StopBefore {
    /// The earlier of the operator's `halt` height and the first upgrade of `genesis` to a
    /// version above [`PROTOCOL_VERSION`].
    pub fn of(genesis: &Genesis, halt: Option<u64>) -> Option<StopBefore> {
        let upgrade = genesis.first_unsupported(PROTOCOL_VERSION);
        match (halt, upgrade) {
            (Some(h), Some(u)) if u.height <= h => Some(StopBefore::Upgrade(u)),
            (Some(h), _) => Some(StopBefore::Halt(h)),
            (None, u) => u.map(StopBefore::Upgrade),
        }
    }

    /// The first height not to reach.
    pub fn height(&self) -> u64 {
        match self {
            StopBefore::Halt(height) => *height,
            StopBefore::Upgrade(upgrade) => upgrade.height,
        }
    }
}

/// The consensus engine and everything the loop keeps around it.
pub struct Node {
    shared: Arc<Shared>,
    engine: Engine<Block>,
    /// Our consensus key, when we are a validator.
    validator_key: Option<timecoin_types::PublicKey>,
    status: watch::Sender<Status>,
    timers: DelayQueue<Timeout>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    sync: SyncHandle,
    txs: TxWorker,
    /// The next height to start and when its TSDC slot begins.
    next_start: Option<(u64, Instant)>,
    height_started: Instant,
    proposal_seen: Option<Instant>,
    /// Proposals of the heights the engine works on or buffers, by (height, block hash).
    proposals: BTreeMap<(u64, Hash256), ProposalMessage>,
    /// Makes every vote send distinct on the wire (see [`crate::wire::VoteMessage`]); starts
    /// random so that a restarted node does not repeat its earlier sends.
    vote_nonce: u64,
    /// Gossiped proposals out for their signature and body check.
    proposals_in_check: usize,
    /// The height the loop stops before.
    stop_before: Option<StopBefore>,
    /// The signer, while the node watches for another process using its key.
    watch: Option<DoppelgangerWatch>,
    /// When to send our votes again for peers that joined.
    resend: resend::ResendPacer,
}

impl Node {
    /// Builds the engine around `signer` (none for a full node), held back for the
    /// doppelganger watch of `watch_ms` (0: none), starts the sync task and the transaction
    /// worker, and takes back the `restored` proposals a validator persisted.
    pub fn new(
        shared: Arc<Shared>,
        status: watch::Sender<Status>,
        engine_config: timecoin_consensus::Config,
        signer: Option<Signer>,
        restored: Vec<ProposalMessage>,
        stop_before: Option<StopBefore>,
        watch_ms: u64,
    ) -> Node {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let sync = sync::spawn(shared.clone(), internal_tx.clone());
        let validator_key = signer.as_ref().map(Signer::public_key);
        let (signer, watch) = match signer {
            Some(signer) if watch_ms > 0 => (
                None,
                Some(DoppelgangerWatch {
                    signer,
                    heights_left: DOPPELGANGER_HEIGHTS,
                    until: Instant::now() + Duration::from_millis(watch_ms),
                }),
            ),
            signer => (signer, None),
        };
        Node {
            engine: Engine::new(shared.genesis.chain_id.clone(), engine_config, signer),
            validator_key,
            txs: TxWorker::spawn(shared.clone()),
            shared,
            status,
            timers: DelayQueue::new(),
            internal_tx,
            internal_rx,
            sync,
            next_start: None,
            height_started: Instant::now(),
            proposal_seen: None,
            vote_nonce: rand::random(),
            proposals_in_check: 0,
            stop_before,
            watch,
            resend: resend::ResendPacer::default(),
            proposals: restored
                .into_iter()
                .map(|m| ((m.proposal.height, m.proposal.block_hash), m))
                .collect(),
        }
    }

    /// Runs consensus from `first_height` on until SIGINT, `sigterm`, the height it must stop
    /// before (see [`StopBefore`]) or a [`Fatal`] error.
    pub async fn run(
        &mut self,
        first_height: u64,
        mut net_events: NetEvents,
        mut sigterm: Signal,
    ) -> Result<(), Fatal> {
        self.schedule_height(first_height);
        loop {
            let next_start = self.next_start;
            let watch_until = self.watch.as_ref().map(|w| w.until);
            let resend_at = self.resend.due();
            if let (Some(stop), Some((height, _))) = (self.stop_before, next_start) {
                if height >= stop.height() {
                    return match stop {
                        StopBefore::Halt(at) => {
                            info!(target: NODE_LOG_TARGET, height = at, tip = height - 1, "reached the halt height: stopping before it");
                            Ok(())
                        }
                        StopBefore::Upgrade(upgrade) => Err(Fatal::UnsupportedVersion(upgrade)),
                    };
                }
            }
            tokio::select! {
                // Timers and finished background work first: they move consensus forward, and
                // a busy network must not starve them.
                biased;
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = sigterm.recv() => return Ok(()),
                Some(expired) = self.timers.next() => {
                    self.feed(Input::Timeout(expired.into_inner())).await?;
                }
                Some(event) = self.internal_rx.recv() => self.on_internal(event).await?,
                _ = tokio::time::sleep_until(next_start.map_or_else(Instant::now, |(_, at)| at)), if next_start.is_some() => {
                    self.start_height().await?;
                }
                // A watch that outlives its time within one height ends by starting the height
                // again, which hands the engine the signer with its persisted lock.
                _ = tokio::time::sleep_until(watch_until.unwrap_or_else(Instant::now)), if watch_until.is_some() && next_start.is_none() => {
                    self.schedule_height(self.engine.height());
                }
                _ = tokio::time::sleep_until(resend_at.unwrap_or_else(Instant::now)), if resend_at.is_some() => {
                    self.resend.sent(Instant::now());
                    self.feed(Input::PeerJoined).await?;
                }
                Some(event) = net_events.recv() => self.on_net_event(event).await?,
            }
        }
    }

    /// Plans the start of `height` at its TSDC slot (now, if the slot has passed).
    fn schedule_height(&mut self, height: u64) {
        let slot = self.shared.genesis.slot_time_ms(height);
        let now = crate::testnet::now_ms();
        let at = Instant::now() + Duration::from_millis(slot.saturating_sub(now));
        self.next_start = Some((height, at));
    }

    async fn start_height(&mut self) -> Result<(), Fatal> {
        let Some((height, _)) = self.next_start.take() else {
            return Ok(());
        };
        let store = self.shared.store.clone();
        let sets = tokio::task::spawn_blocking(move || {
            Ok::<_, timecoin_ledger::StoreError>((
                store.validator_set(height)?,
                store.validator_set(height + 1)?,
            ))
        });
        let (set, next_set) = match sets.await {
            Ok(Ok(sets)) => sets,
            other => {
                error!(height, ?other, "cannot read the validator set; retrying");
                self.next_start = Some((height, Instant::now() + Duration::from_secs(1)));
                return Ok(());
            }
        };
        self.end_watch_if_due(height);
        self.timers.clear();
        self.height_started = Instant::now();
        self.proposal_seen = None;
        self.proposals = self.proposals.split_off(&(height, Hash256::ZERO));
        let outputs = self.engine.start_height(height, set, next_set);
        self.process(outputs).await?;
        // After a restart: offer the blocks we were locked on again (the engine drops
        // duplicates of proposals it already has).
        let ours: Vec<ProposalMessage> = self
            .proposals
            .range((height, Hash256::ZERO)..(height + 1, Hash256::ZERO))
            .map(|(_, m)| m.clone())
            .collect();
        for message in ours {
            let Ok(block) = message.block() else {
                error!(target: NODE_LOG_TARGET, height, "a persisted proposal does not decode; skipped");
                continue;
            };
            let block_hash = message.proposal.block_hash;
            self.feed(Input::Proposal {
                proposal: message.proposal,
                block,
                block_hash,
            })
            .await?;
        }
        Ok(())
    }

    /// Hands the engine its signer once the doppelganger watch has seen its heights or run
    /// out of time, before `height` starts (the start restores the signer's lock).
    fn end_watch_if_due(&mut self, height: u64) {
        let Some(watch) = &mut self.watch else {
            return;
        };
        if watch.heights_left > 0 && Instant::now() < watch.until {
            watch.heights_left -= 1;
            return;
        }
        if let Some(watch) = self.watch.take() {
            info!(target: NODE_LOG_TARGET, height, "no other process signs with this validator's key: signing from this height on");
            self.engine.enable_signer(watch.signer);
        }
    }

    /// Stops the node if `vote` shows another process signing with this validator's key
    /// while the watch lasts.
    fn check_doppelganger(&self, vote: &Vote) -> Result<(), Fatal> {
        match &self.watch {
            Some(watch) if watch.signed_elsewhere(vote, &self.shared.genesis.chain_id) => {
                Err(Fatal::Doppelganger {
                    height: vote.height,
                    round: vote.round,
                    kind: vote.kind,
                })
            }
            _ => Ok(()),
        }
    }

    /// Remembers a proposal of a height the engine works on or buffers, within bounds.
    fn remember_proposal(&mut self, message: &ProposalMessage) {
        let height = message.proposal.height;
        if height < self.engine.height() || height > self.engine.height() + FUTURE_HEIGHTS {
            return;
        }
        let of_height = self
            .proposals
            .range((height, Hash256::ZERO)..(height + 1, Hash256::ZERO))
            .count();
        if of_height < MAX_PROPOSALS_PER_HEIGHT {
            self.proposals
                .insert((height, message.proposal.block_hash), message.clone());
        }
    }

    async fn on_internal(&mut self, event: Internal) -> Result<(), Fatal> {
        match event {
            Internal::Validated {
                height,
                block_hash,
                valid,
            } => {
                self.feed(Input::BlockValidated {
                    height,
                    block_hash,
                    valid,
                })
                .await?;
            }
            Internal::Built {
                height,
                round,
                block,
            } => {
                let block_hash = block.hash();
                self.feed(Input::BlockBuilt {
                    height,
                    round,
                    block: *block,
                    block_hash,
                })
                .await?;
            }
            Internal::ProposalChecked {
                message,
                checked,
                id,
                source,
            } => {
                self.proposals_in_check -= 1;
                let verdict = match checked {
                    Ok(block) => self.on_checked_proposal(*message, *block).await?,
                    Err(refused) => refused,
                };
                report_gossip(&self.shared, "proposal", id, source, &verdict);
            }
            Internal::Synced { blocks, done } => {
                let result = self.apply_synced(blocks).await;
                let _ = done.send(result);
            }
        }
        Ok(())
    }

    /// Applies finalized blocks from a peer, each checked against its height's validator set,
    /// then restarts consensus at the new tip.
    async fn apply_synced(&mut self, blocks: Vec<SyncedBlock>) -> Result<u64, SyncRefusal> {
        let local = |e: &dyn std::fmt::Display| SyncRefusal::Local(e.to_string());
        let shared = self.shared.clone();
        let stop_at = self.stop_before.map_or(u64::MAX, |s| s.height());
        let (applied, result) = tokio::task::spawn_blocking(move || {
            let (applied, result) = sync::apply_synced(&shared, blocks, stop_at);
            shared.clean_mempool(&applied);
            let (tip, _) = shared.store.tip().map_err(|e| local(&e))?;
            Ok::<_, SyncRefusal>((applied.len() as u64, result.map(|()| tip)))
        })
        .await
        .map_err(|e| local(&e))??;
        if applied > 0 {
            let (tip, _) = self.shared.store.tip().map_err(|e| local(&e))?;
            self.shared.metrics.synced_blocks.inc_by(applied);
            self.shared.metrics.height.set(tip as i64);
            if self.engine.height() <= tip {
                self.timers.clear();
                self.schedule_height(tip + 1);
            }
        }
        result
    }
}
