//! What the event loop shares with the tasks around it (RPC server, catch-up sync,
//! transaction admission), and the one channel by which those tasks hand results back.
//!
//! It lives apart from the event loop so that those tasks depend on this state only, never on
//! the loop that drives consensus.

use crate::metrics::Metrics;
use crate::wire::SyncedBlock;
use crate::NODE_LOG_TARGET;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timecoin_consensus::Verdict;
use timecoin_ledger::{Block, Genesis, Mempool, Store};
use timecoin_net::{Acceptance, MessageId, NetHandle, PeerId};
use timecoin_types::Hash256;
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{debug, info, warn};

/// What RPC callers see of consensus.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Height being decided.
    pub height: u64,
    /// Its current round.
    pub round: u32,
    /// Its current step.
    pub step: &'static str,
    /// Whether this node signs votes.
    pub validator: bool,
}

/// State shared by the event loop, the RPC server and the sync task.
pub struct Shared {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// The ledger database.
    pub store: Arc<Store>,
    /// Pending transactions.
    pub mempool: Mutex<Mempool>,
    /// The network.
    pub net: NetHandle,
    /// Consensus progress.
    pub status: watch::Receiver<Status>,
    /// Metrics.
    pub metrics: Metrics,
    /// When this node finalized recent heights (wall clock, ms), for latency measurements.
    pub finalized_at: Mutex<FinalizedAt>,
    /// Votes, recent blocks and evidence as the dashboard shows them.
    pub observed: crate::dashboard::Observed,
    /// Every block finalized here (decided or synced), for `subscribe ["newBlocks"]`; a
    /// ring of [`NEW_BLOCKS_BUFFER`] entries, so a subscriber that falls further behind is
    /// dropped.
    pub new_blocks: broadcast::Sender<serde_json::Value>,
}

/// Blocks a `newBlocks` subscriber may fall behind before it is dropped.
pub const NEW_BLOCKS_BUFFER: usize = 64;

impl Shared {
    /// Takes the transactions of newly finalized `blocks` (and whatever conflicts with them)
    /// out of the mempool, with the entries that waited too long; for blocks decided here and
    /// blocks applied by catch-up sync alike.
    pub fn clean_mempool(&self, blocks: &[Block]) {
        let mut pool = self.mempool.lock().expect("mempool lock");
        for block in blocks {
            pool.remove_for_block(block);
        }
        pool.expire(crate::testnet::now_ms());
        self.metrics.mempool_size.set(pool.len() as i64);
    }

    /// Starts writing the state snapshot of `height` in the background when it is a snapshot
    /// height; call it right after applying that block, on the thread that applied it.
    pub fn snapshot_if_due(&self, height: u64) {
        let job = match self.store.begin_snapshot(height, &self.genesis.chain_id) {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(err) => {
                warn!(target: NODE_LOG_TARGET, height, %err, "cannot start a state snapshot");
                return;
            }
        };
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match job.write() {
                Ok(manifest) => info!(
                    target: NODE_LOG_TARGET,
                    height,
                    records = manifest.records,
                    chunks = manifest.chunks.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "state snapshot written"
                ),
                Err(err) => {
                    warn!(target: NODE_LOG_TARGET, height, %err, "cannot write the state snapshot")
                }
            }
        });
    }

    /// Tells `newBlocks` subscribers about a block finalized here (none listening is fine).
    pub fn announce_block(&self, block: &Block) {
        if self.new_blocks.receiver_count() == 0 {
            return;
        }
        let h = &block.header;
        let _ = self.new_blocks.send(serde_json::json!({
            "height": h.height,
            "hash": block.hash().to_string(),
            "prev_hash": h.prev_hash.to_string(),
            "round": h.round,
            "proposer": h.proposer.to_string(),
            "time_ms": h.time_ms,
            "txs": block.transactions.len(),
        }));
    }
}

/// The local finalization time of the most recent heights.
#[derive(Default)]
pub struct FinalizedAt(BTreeMap<u64, u64>);

impl FinalizedAt {
    /// How many heights are remembered.
    const KEEP: usize = 100_000;

    /// Notes that `height` was finalized here at `at_ms`, forgetting the oldest beyond
    /// [`Self::KEEP`].
    pub fn record(&mut self, height: u64, at_ms: u64) {
        self.0.insert(height, at_ms);
        if self.0.len() > Self::KEEP {
            self.0.pop_first();
        }
    }

    /// When `height` was finalized here, if it was recently.
    pub fn get(&self, height: u64) -> Option<u64> {
        self.0.get(&height).copied()
    }
}

/// Results of work done off the loop, sent back to it (the loop is the only ledger writer).
pub enum Internal {
    /// A proposed block was checked against the ledger.
    Validated {
        /// Height of the block.
        height: u64,
        /// Its hash.
        block_hash: Hash256,
        /// Whether it may be finalized.
        valid: bool,
    },
    /// Our block for `(height, round)` is built.
    Built {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
        /// The block.
        block: Box<Block>,
    },
    /// A gossiped proposal came back from its signature and body check.
    ProposalChecked {
        /// The message as received.
        message: Box<crate::wire::ProposalMessage>,
        /// Its block, or the verdict that refuses it.
        checked: Result<Box<Block>, Verdict>,
        /// Gossipsub's id of the message.
        id: MessageId,
        /// The peer that forwarded it.
        source: PeerId,
    },
    /// Finalized blocks fetched from a peer, to apply in order.
    Synced {
        /// Consecutive blocks with their certificates.
        blocks: Vec<SyncedBlock>,
        /// Answered with the new tip, or why the batch was refused.
        done: oneshot::Sender<Result<u64, crate::sync::SyncRefusal>>,
    },
}

/// Tells gossipsub what became of a message (Accept forwards it, Reject also lowers the
/// sender's score) and counts it.
pub fn report_gossip(
    shared: &Shared,
    kind: &'static str,
    id: MessageId,
    source: PeerId,
    verdict: &Verdict,
) {
    let (label, acceptance) = match verdict {
        Verdict::Accepted => ("accepted", Acceptance::Accept),
        Verdict::Ignored(reason) => {
            debug!(target: NODE_LOG_TARGET, kind, %source, reason, "ignored gossip");
            ("ignored", Acceptance::Ignore)
        }
        Verdict::Rejected(reason) => {
            warn!(target: NODE_LOG_TARGET, kind, %source, reason, "rejected gossip");
            ("rejected", Acceptance::Reject)
        }
    };
    shared.metrics.message(kind, label);
    shared.net.report(id, source, acceptance);
}
