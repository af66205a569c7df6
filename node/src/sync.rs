//! Catch-up sync: a node that is behind fetches finalized blocks with their certificates from
//! peers over request-response, checks each against the validator set of its height, and
//! hands them to the event loop to apply.
//!
//! A peer may claim any tip and then serve errors, garbage, wrong blocks or nothing at all.
//! Every such failure backs the peer off ([`Backoff`]: exponential, bounded, in memory), so
//! catch-up moves on to other peers; a peer is also penalised (disconnected and refused for a
//! while) only for what is invalid on every node: a response that does not decode or does not
//! answer the request, or a block whose certificate does not verify against the validator set
//! of its height. A peer whose answer may depend on our state or its own (an error, an empty
//! list, a timeout, a block that does not apply here) is only backed off.
//!
//! A node that prunes block bodies (`[storage] retain_blocks`) serves the heights it still
//! has; asked for blocks from below its retained range it answers with none (never with
//! blocks that start elsewhere, which would not answer the request). The requester takes that
//! as "ask another peer": a backoff, no penalty, since the peer is honest, it just does not
//! keep those blocks. When every peer ahead answers so, the requester says in its log that no
//! peer has the blocks it needs, and keeps asking at the backoff's pace.

use crate::shared::{Internal, Shared};
use crate::wire::{
    SyncRequest, SyncResponse, SyncedBlock, MAX_SYNC_BATCH, MAX_SYNC_RESPONSE_BYTES,
};
use libp2p::PeerId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timecoin_ledger::{Block, Genesis, Store};
use timecoin_types::codec;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};

/// How often peers are asked for their tip when nothing else prompts it.
const POLL_INTERVAL: Duration = Duration::from_secs(3);
/// How long a peer may take to tell its tip; a silent peer must not hold up every round.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a peer may take to serve a batch of blocks (at most
/// [`MAX_SYNC_RESPONSE_BYTES`]).
const BLOCKS_TIMEOUT: Duration = Duration::from_secs(10);
/// The first backoff of a peer that failed a request; each further failure doubles it.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Most peers whose backoff is remembered; beyond it the one whose backoff ends first is
/// forgotten.
const BACKOFF_PEERS: usize = 1024;

/// Why a synced block was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncRefusal {
    /// Its certificate does not verify against the validator set of its height: invalid on
    /// every node, so the peer that served it is penalised.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Anything else (a block that does not apply on our state, our own store failing): not
    /// provably the peer's fault.
    #[error("{0}")]
    Local(String),
}

impl SyncRefusal {
    /// Whether the peer that served the block is at fault on every node.
    pub fn is_invalid_everywhere(&self) -> bool {
        matches!(self, SyncRefusal::Certificate(_))
    }
}

/// Per-peer exponential backoff of the sync client: a peer that failed a request is not asked
/// again until its backoff has passed, and each consecutive failure doubles it up to
/// [`BACKOFF_MAX`]; a success forgets the peer. Bounded to [`BACKOFF_PEERS`] peers.
#[derive(Debug, Default)]
pub struct Backoff {
    peers: HashMap<PeerId, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Consecutive failures.
    count: u32,
    /// Not asked before this.
    until: Instant,
}

impl Backoff {
    /// Notes that `peer` failed at `now`; returns how long it is backed off.
    pub fn failed(&mut self, peer: PeerId, now: Instant) -> Duration {
        let count = self
            .peers
            .get(&peer)
            .map_or(0, |f| f.count)
            .saturating_add(1);
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << (count - 1).min(16))
            .min(BACKOFF_MAX);
        if !self.peers.contains_key(&peer) && self.peers.len() >= BACKOFF_PEERS {
            let first = self
                .peers
                .iter()
                .min_by_key(|(_, f)| f.until)
                .map(|(p, _)| *p);
            if let Some(first) = first {
                self.peers.remove(&first);
            }
        }
        self.peers.insert(
            peer,
            Failures {
                count,
                until: now + delay,
            },
        );
        delay
    }

    /// Notes that `peer` served a request: its failures are forgotten.
    pub fn succeeded(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Whether `peer` is still backed off at `now`.
    pub fn is_waiting(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers.get(peer).is_some_and(|f| f.until > now)
    }

    /// The consecutive failures of `peer`.
    pub fn failures(&self, peer: &PeerId) -> u32 {
        self.peers.get(peer).map_or(0, |f| f.count)
    }
}

/// Wakes the sync task early.
#[derive(Clone)]
pub struct SyncHandle(Arc<Notify>);

impl SyncHandle {
    /// Asks the sync task to compare tips with peers now.
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// Checks a synced block fully (certificate against its height's set, then the block against
/// the ledger, which `apply_block` does before it writes) and applies it; a block that fails
/// any check leaves the store untouched. The receiver's clock plays no part: the block is
/// final already. Runs on a blocking thread.
pub fn check_and_apply(
    store: &Store,
    genesis: &Genesis,
    item: &SyncedBlock,
) -> Result<(), SyncRefusal> {
    let local = |e: timecoin_ledger::StoreError| SyncRefusal::Local(e.to_string());
    let height = item.block.header.height;
    let set = store.validator_set(height).map_err(local)?;
    item.certificate
        .verify_for(&genesis.chain_id, &set, height, &item.block.hash())
        .map_err(|e| SyncRefusal::Certificate(e.to_string()))?;
    store
        .apply_block(&item.block, &item.certificate, genesis)
        .map_err(local)
}

/// Applies synced blocks (consecutive, as the sync client checked) from the tip + 1 up to
/// `stop_at` (exclusive): in runs of one write transaction each, a run ending at every
/// snapshot height so that the snapshot sees that height's state. A run the store refuses is
/// applied again one block at a time, which keeps its valid blocks and names the one at
/// fault. Returns the blocks applied. Runs on a blocking thread.
pub fn apply_synced(
    shared: &Shared,
    blocks: Vec<SyncedBlock>,
    stop_at: u64,
) -> (Vec<Block>, Result<(), SyncRefusal>) {
    let tip = match shared.store.tip() {
        Ok((tip, _)) => tip,
        Err(e) => return (Vec::new(), Err(SyncRefusal::Local(e.to_string()))),
    };
    let store = &shared.store;
    let mut applied = Vec::new();
    let mut run: Vec<SyncedBlock> = Vec::new();
    let mut items = blocks
        .into_iter()
        .filter(|item| item.block.header.height > tip)
        .take_while(|item| item.block.header.height < stop_at)
        .peekable();
    while let Some(item) = items.next() {
        let height = item.block.header.height;
        run.push(item);
        if items.peek().is_some() && !store.is_snapshot_height(height) {
            continue;
        }
        let pairs: Vec<_> = run.iter().map(|i| (&i.block, &i.certificate)).collect();
        let whole = store.apply_blocks(&pairs, &shared.genesis).is_ok();
        for item in run.drain(..) {
            let height = item.block.header.height;
            if !whole {
                if let Err(refusal) = check_and_apply(store, &shared.genesis, &item) {
                    let refusal = match refusal {
                        SyncRefusal::Certificate(e) => {
                            SyncRefusal::Certificate(format!("block {height}: {e}"))
                        }
                        SyncRefusal::Local(e) => SyncRefusal::Local(format!("block {height}: {e}")),
                    };
                    return (applied, Err(refusal));
                }
            }
            shared.announce_block(&item.block);
            applied.push(item.block);
        }
        shared.snapshot_if_due(height);
    }
    (applied, Ok(()))
}

/// Starts the sync task.
pub fn spawn(shared: Arc<Shared>, internal: mpsc::UnboundedSender<Internal>) -> SyncHandle {
    let notify = Arc::new(Notify::new());
    let handle = SyncHandle(notify.clone());
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            if let Err(err) = catch_up(&shared, &internal, &mut backoff).await {
                debug!(%err, "sync round ended");
            }
        }
    });
    handle
}

/// How a request to a peer failed.
pub(crate) enum AskError {
    /// No answer (timeout, closed connection, refused dial): no misbehaviour on its own.
    Failed(String),
    /// An answer that is no sync response: invalid on every node.
    Malformed(String),
}

/// Sends `request` to `peer` and decodes the answer, waiting at most `within`.
pub(crate) async fn ask(
    shared: &Shared,
    peer: PeerId,
    request: &SyncRequest,
    within: Duration,
) -> Result<SyncResponse, AskError> {
    let bytes = tokio::time::timeout(within, shared.net.request(peer, codec::encode(request)))
        .await
        .map_err(|_| AskError::Failed(format!("no answer within {within:?}")))?
        .map_err(|e| AskError::Failed(e.to_string()))?;
    codec::decode(&bytes, MAX_SYNC_RESPONSE_BYTES).map_err(|e| AskError::Malformed(e.to_string()))
}

/// Backs `peer` off, and penalises it too when `invalid_everywhere`.
pub(crate) fn fail(
    shared: &Shared,
    backoff: &mut Backoff,
    peer: PeerId,
    invalid_everywhere: bool,
    why: &str,
) {
    let delay = backoff.failed(peer, Instant::now());
    if invalid_everywhere {
        shared.net.penalize(peer, why);
    }
    warn!(%peer, reason = why, penalized = invalid_everywhere, backoff = ?delay, "sync peer failed");
}

/// Sends `request` to every connected peer that is not backed off, all at once, each
/// answering within `within`.
pub(crate) async fn ask_all(
    shared: &Shared,
    backoff: &Backoff,
    request: &SyncRequest,
    within: Duration,
) -> Vec<(PeerId, Result<SyncResponse, AskError>)> {
    let now = Instant::now();
    let peers: Vec<PeerId> = shared
        .net
        .peers()
        .await
        .into_iter()
        .filter_map(|p| p.peer_id.parse().ok())
        .filter(|p| !backoff.is_waiting(p, now))
        .collect();
    futures::future::join_all(
        peers
            .into_iter()
            .map(|peer| async move { (peer, ask(shared, peer, request, within).await) }),
    )
    .await
}

/// Asks every connected peer that is not backed off for its tip.
async fn peer_tips(shared: &Shared, backoff: &mut Backoff) -> Vec<(PeerId, u64)> {
    let answers = ask_all(shared, backoff, &SyncRequest::Status, STATUS_TIMEOUT).await;
    let mut tips = Vec::new();
    for (peer, answer) in answers {
        match answer {
            Ok(SyncResponse::Status { tip, .. }) => tips.push((peer, tip)),
            // A node that cannot read its own tip says so; not a fault on every node.
            Ok(SyncResponse::Error(err)) => fail(shared, backoff, peer, false, &err),
            Ok(_) => fail(
                shared,
                backoff,
                peer,
                true,
                "an answer of another kind to a status request",
            ),
            Err(AskError::Malformed(err)) => fail(shared, backoff, peer, true, &err),
            Err(AskError::Failed(err)) => fail(shared, backoff, peer, false, &err),
        }
    }
    tips
}

/// The peer to ask next among those `ahead`: the fewest consecutive failures first (a peer
/// that failed before is asked only when no better one is ahead), rotating among equals by
/// `turn` so that one slow peer cannot stall us.
fn pick(ahead: &mut [(PeerId, u64)], backoff: &Backoff, turn: usize) -> Option<PeerId> {
    ahead.sort_by_key(|&(peer, _)| (backoff.failures(&peer), peer));
    let best = backoff.failures(&ahead.first()?.0);
    let equals = ahead
        .iter()
        .take_while(|(p, _)| backoff.failures(p) == best)
        .count();
    Some(ahead[turn % equals].0)
}

/// Fetches and applies blocks until no peer that is not backed off claims a higher tip.
async fn catch_up(
    shared: &Shared,
    internal: &mpsc::UnboundedSender<Internal>,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let started = Instant::now();
    let (start_tip, _) = shared.store.tip().map_err(|e| e.to_string())?;
    let mut last_log = Instant::now();
    let mut turn = 0usize;
    // Peers that claimed a higher tip but served no block from tip + 1 since the tip last
    // moved: pruned nodes, mostly.
    let mut without_blocks: HashSet<PeerId> = HashSet::new();
    loop {
        let (tip, _) = shared.store.tip().map_err(|e| e.to_string())?;
        let mut ahead: Vec<(PeerId, u64)> = peer_tips(shared, backoff)
            .await
            .into_iter()
            .filter(|&(_, t)| t > tip)
            .collect();
        let Some(peer) = pick(&mut ahead, backoff, turn) else {
            if !without_blocks.is_empty() {
                warn!(
                    height = tip + 1,
                    peers = without_blocks.len(),
                    "no peer has the blocks this node needs: every peer ahead served none from \
                     this height (pruned nodes keep only their last [storage] retain_blocks \
                     bodies); still asking, at each peer's backoff, until a node that keeps them \
                     is reachable"
                );
            }
            if tip > start_tip {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                info!(
                    height = tip,
                    blocks = tip - start_tip,
                    blocks_per_sec = format!("{:.0}", (tip - start_tip) as f64 / secs),
                    "caught up"
                );
            }
            return Ok(());
        };
        turn += 1;
        let claimed = ahead
            .iter()
            .find(|(p, _)| *p == peer)
            .map_or(tip, |&(_, t)| t);
        let count = (claimed - tip).min(u64::from(MAX_SYNC_BATCH)) as u32;
        let request = SyncRequest::Blocks {
            from: tip + 1,
            count,
        };
        let blocks = match ask(shared, peer, &request, BLOCKS_TIMEOUT).await {
            Ok(SyncResponse::Blocks(blocks)) => blocks,
            Ok(SyncResponse::Error(err)) => {
                fail(shared, backoff, peer, false, &format!("refused: {err}"));
                continue;
            }
            Ok(_) => {
                fail(
                    shared,
                    backoff,
                    peer,
                    true,
                    "an answer of another kind to a blocks request",
                );
                continue;
            }
            Err(AskError::Malformed(err)) => {
                fail(
                    shared,
                    backoff,
                    peer,
                    true,
                    &format!("malformed response: {err}"),
                );
                continue;
            }
            // A timeout or a closed connection is no misbehaviour on its own (the peer may
            // just have restarted): back off, penalise nobody.
            Err(AskError::Failed(err)) => {
                fail(shared, backoff, peer, false, &err);
                continue;
            }
        };
        if blocks.is_empty() {
            // It pruned them (it keeps only its last bodies), or claimed more than it has, or
            // lost its data: not provably a fault, so ask another peer.
            without_blocks.insert(peer);
            let why = format!(
                "served no blocks from height {} although it claims tip {claimed} \
                 (it may have pruned them)",
                tip + 1
            );
            fail(shared, backoff, peer, false, &why);
            continue;
        }
        let consecutive = blocks.iter().enumerate().all(|(i, b)| {
            b.block.header.height == tip + 1 + i as u64
                && b.certificate.height == b.block.header.height
        });
        if blocks.len() > count as usize || !consecutive {
            fail(
                shared,
                backoff,
                peer,
                true,
                "blocks that do not answer the request",
            );
            continue;
        }
        let (done_tx, done_rx) = oneshot::channel();
        internal
            .send(Internal::Synced {
                blocks,
                done: done_tx,
            })
            .map_err(|_| "node stopped".to_string())?;
        match done_rx.await.map_err(|_| "node stopped".to_string())? {
            Ok(new_tip) => {
                backoff.succeeded(&peer);
                without_blocks.clear();
                if last_log.elapsed() > Duration::from_secs(2) {
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    info!(
                        height = new_tip,
                        target = claimed,
                        blocks_per_sec = format!("{:.0}", (new_tip - start_tip) as f64 / secs),
                        "catching up"
                    );
                    last_log = Instant::now();
                }
            }
            Err(refusal) => {
                let why = format!("served a block that was not applied: {refusal}");
                fail(shared, backoff, peer, refusal.is_invalid_everywhere(), &why);
            }
        }
    }
}

mod serve;
#[cfg(test)]
mod tests;

pub use serve::{light_block, serve};
