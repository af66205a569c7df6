//! The operator's view of the node on its RPC port: `GET /dashboard` (one self-contained HTML
//! page, no external assets), `GET /dashboard/state` (a JSON snapshot) and `GET /events` (the
//! same snapshots as server-sent events, one per change of consensus state and at least one a
//! second).
//!
//! The event loop notes here what the ledger and the metrics do not keep: each validator's
//! latest accepted prepare and precommit, the finality latency of the last blocks and the
//! latest evidence. Everything is bounded: a fixed number of blocks and evidence items, votes
//! only of validators (accepted votes come from set members only) up to a cap, a cap on
//! concurrent event streams and a small buffer per stream; a client that does not read its
//! stream is dropped instead of buffered for.

use crate::shared::Shared;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use timecoin_types::{PublicKey, VoteKind};
use tokio::sync::{mpsc, watch};

/// The dashboard page, with `/*STATE*/null` where [`page`] puts the current snapshot.
const PAGE: &str = include_str!("dashboard.html");
/// Where the page takes its first snapshot.
const STATE_SLOT: &str = "/*STATE*/null";
/// Most event streams served at once; more are answered `503`.
pub const MAX_EVENT_CLIENTS: usize = 16;
/// Snapshots queued for one event stream; a client this far behind is dropped.
const EVENT_BUFFER: usize = 4;
/// A snapshot goes out at least this often.
const EVENT_TICK: Duration = Duration::from_secs(1);
/// ... and at most this often.
const EVENT_MIN_GAP: Duration = Duration::from_millis(200);
/// Finalized blocks remembered for the latency chart.
pub const RECENT_BLOCKS: usize = 64;
/// Evidence items remembered.
const RECENT_EVIDENCE: usize = 16;
/// Validators whose votes are tracked (a cap far above any real set: accepted votes only come
/// from members); beyond it, the validator whose latest vote is oldest is forgotten.
const MAX_TRACKED_VOTERS: usize = 1024;

/// A validator's latest accepted votes, as `(height, round)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatestVotes {
    /// Latest prepare.
    pub prepare: Option<(u64, u32)>,
    /// Latest precommit.
    pub precommit: Option<(u64, u32)>,
}

impl LatestVotes {
    /// The height of the latest vote of either kind.
    pub fn last_height(&self) -> Option<u64> {
        self.prepare.max(self.precommit).map(|(h, _)| h)
    }
}

/// One finalized block as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    /// Height.
    pub height: u64,
    /// Round it was decided in.
    pub round: u32,
    /// Transactions in it.
    pub txs: usize,
    /// Height start to finalization here, ms.
    pub latency_ms: u64,
    /// Wall clock of its finalization here, ms.
    pub finalized_at_ms: u64,
}

#[derive(Default)]
struct Inner {
    votes: BTreeMap<PublicKey, LatestVotes>,
    blocks: VecDeque<BlockSummary>,
    evidence: VecDeque<Value>,
}

/// What the event loop notes for the dashboard.
pub struct Observed {
    inner: Mutex<Inner>,
    event_clients: Arc<AtomicUsize>,
    /// Set when the node shuts down: event streams end, so the RPC server can stop.
    closing: watch::Sender<bool>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            inner: Mutex::default(),
            event_clients: Arc::default(),
            closing: watch::channel(false).0,
        }
    }
}

impl Observed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data is plain values; a panic elsewhere cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes an accepted (or our own) vote; keeps the highest `(height, round)` per kind.
    pub fn vote(&self, validator: PublicKey, kind: VoteKind, height: u64, round: u32) {
        let mut inner = self.lock();
        if !inner.votes.contains_key(&validator) && inner.votes.len() >= MAX_TRACKED_VOTERS {
            // Validators that left the set stop voting: forget the longest silent one.
            let oldest = inner
                .votes
                .iter()
                .min_by_key(|(_, v)| v.last_height())
                .map(|(k, _)| *k);
            if let Some(key) = oldest {
                inner.votes.remove(&key);
            }
        }
        let entry = inner.votes.entry(validator).or_default();
        let slot = match kind {
            VoteKind::Prepare => &mut entry.prepare,
            VoteKind::Precommit => &mut entry.precommit,
        };
        if slot.is_none_or(|seen| seen < (height, round)) {
            *slot = Some((height, round));
        }
    }

    /// Notes a block finalized here, forgetting the oldest beyond [`RECENT_BLOCKS`].
    pub fn block(&self, summary: BlockSummary) {
        let mut inner = self.lock();
        inner.blocks.push_back(summary);
        while inner.blocks.len() > RECENT_BLOCKS {
            inner.blocks.pop_front();
        }
    }

    /// Notes evidence (as [`crate::rpc::evidence_json`] shows it).
    pub fn evidence(&self, evidence: Value) {
        let mut inner = self.lock();
        inner.evidence.push_back(evidence);
        while inner.evidence.len() > RECENT_EVIDENCE {
            inner.evidence.pop_front();
        }
    }

    /// Ends every event stream and refuses new ones (at shutdown: an open stream would keep
    /// the RPC server from stopping).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// The latest votes of `validator`.
    pub fn votes_of(&self, validator: &PublicKey) -> LatestVotes {
        self.lock()
            .votes
            .get(validator)
            .copied()
            .unwrap_or_default()
    }
}

/// Whether a validator counts as present at consensus height `height`: it voted for this
/// height or one of the two before it (a vote for a decided height may arrive after the
/// decision and be ignored, so one height of slack is not enough).
pub fn present(votes: &LatestVotes, height: u64) -> bool {
    votes.last_height().is_some_and(|h| h + 2 >= height)
}

/// The dashboard's snapshot of the node: tip and time since the last block, consensus
/// height/round/step, validators with weights and votes, peers with gossip scores, recent
/// blocks with their finality latency, mempool and recent evidence.
pub async fn snapshot(shared: &Arc<Shared>) -> Result<Value, String> {
    let status = shared.status.borrow().clone();
    let store_part = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            let (tip, hash) = shared.store.tip()?;
            let set = shared.store.validator_set(tip + 1)?;
            let block_time = shared.store.block(tip)?.map(|b| b.header.time_ms);
            Ok::<_, timecoin_ledger::StoreError>((tip, hash, set, block_time))
        })
    };
    let (tip, hash, set, block_time) = store_part
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let peers = shared.net.peers().await;
    let (mempool_size, mempool_bytes) = {
        let pool = shared.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (pool.len(), pool.bytes())
    };
    let finalized_at = shared
        .finalized_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(tip);
    let height = status.height.max(tip + 1);
    let inner = shared.observed.lock();
    let kind_json = |seen: Option<(u64, u32)>| {
        seen.map(|(h, r)| json!({ "height": h, "round": r, "current": h == height }))
    };
    let validators: Vec<Value> = set
        .validators()
        .iter()
        .map(|v| {
            let votes = inner.votes.get(&v.public_key).copied().unwrap_or_default();
            json!({
                "id": hex::encode(&v.public_key.as_bytes()[..8]),
                "public_key": v.public_key.to_string(),
                "weight": v.weight,
                "prepare": kind_json(votes.prepare),
                "precommit": kind_json(votes.precommit),
                "present": present(&votes, height),
            })
        })
        .collect();
    let blocks: Vec<Value> = inner
        .blocks
        .iter()
        .map(|b| {
            json!({
                "height": b.height, "round": b.round, "txs": b.txs,
                "latency_ms": b.latency_ms, "finalized_at_ms": b.finalized_at_ms,
            })
        })
        .collect();
    let evidence: Vec<Value> = inner.evidence.iter().rev().cloned().collect();
    drop(inner);
    Ok(json!({
        "chain_id": shared.genesis.chain_id,
        "now_ms": crate::testnet::now_ms(),
        "height": tip,
        "hash": hash.to_string(),
        "last_block_ms": finalized_at.or(block_time),
        "consensus": {
            "height": status.height, "round": status.round, "step": status.step,
            "validator": status.validator,
        },
        "total_weight": set.total_weight(),
        "validators": validators,
        "peers": peers.iter().map(|p| json!({
            "peer_id": p.peer_id, "gossip_score": p.gossip_score, "agent": p.agent,
        })).collect::<Vec<_>>(),
        "blocks": blocks,
        "mempool": { "size": mempool_size, "bytes": mempool_bytes },
        "evidence": evidence,
    }))
}

/// The dashboard page with the current snapshot embedded (so it shows the node's state as
/// soon as it loads, before its event stream opens); without one if the snapshot fails (the
/// page then asks `/dashboard/state`).
pub async fn page(shared: &Arc<Shared>) -> String {
    match snapshot(shared).await {
        Ok(state) => embed(&state),
        Err(_) => PAGE.to_string(),
    }
}

/// The page with `state` as its first snapshot. JSON has `<` only inside strings, where
/// `\u003c` means the same; escaping it keeps a peer's agent string from closing the script
/// element.
fn embed(state: &Value) -> String {
    PAGE.replacen(STATE_SLOT, &state.to_string().replace('<', "\\u003c"), 1)
}

/// Holds one of the [`MAX_EVENT_CLIENTS`] places while its stream lives.
struct ClientSlot(Arc<AtomicUsize>);

impl ClientSlot {
    fn take(count: &Arc<AtomicUsize>) -> Option<ClientSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_EVENT_CLIENTS).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientSlot(count.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An event stream's response body: the snapshots its task queues, as they come; it ends
/// after the last one once the task stops.
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Opens an event stream, or `None` when [`MAX_EVENT_CLIENTS`] are already served or the
/// node is shutting down. A task sends a snapshot on every change of consensus state (at
/// most one per [`EVENT_MIN_GAP`]) and at least every [`EVENT_TICK`]; it ends when the client
/// goes away, falls [`EVENT_BUFFER`] snapshots behind or the node shuts down, and gives its
/// place back then (a client that stopped reading holds no place, only its connection and
/// the snapshots already queued for it).
pub fn open_events(shared: Arc<Shared>) -> Option<EventBody> {
    let mut closing = shared.observed.closing.subscribe();
    if *closing.borrow() {
        return None;
    }
    let slot = ClientSlot::take(&shared.observed.event_clients)?;
    let (tx, rx) = mpsc::channel::<Bytes>(EVENT_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        let mut status = shared.status.clone();
        // Ask the browser to reconnect after 2 s if the stream breaks.
        if tx.try_send(Bytes::from_static(b"retry: 2000\n\n")).is_err() {
            return;
        }
        loop {
            let event = match snapshot(&shared).await {
                Ok(state) => format!("event: state\ndata: {state}\n\n"),
                Err(err) => format!("event: error\ndata: {}\n\n", json!(err)),
            };
            if tx.try_send(Bytes::from(event)).is_err() {
                // Full: the client does not keep up; closed: it went away.
                return;
            }
            tokio::select! {
                _ = closing.changed() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(EVENT_MIN_GAP) => {}
            }
            tokio::select! {
                _ = closing.changed() => return,
                _ = tx.closed() => return,
                changed = status.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(EVENT_TICK) => {}
            }
        }
    });
    Some(EventBody { rx })
}

#[cfg(test)]
mod tests {
    use super::*;
    use timecoin_types::Keypair;

    #[test]
    fn keeps_the_highest_vote_of_each_kind() {
        let observed = Observed::default();
        let key = Keypair::from_seed([1; 32]).public();
        observed.vote(key, VoteKind::Prepare, 5, 1);
        observed.vote(key, VoteKind::Prepare, 5, 0);
        observed.vote(key, VoteKind::Precommit, 4, 3);
        let votes = observed.votes_of(&key);
        assert_eq!(votes.prepare, Some((5, 1)));
        assert_eq!(votes.precommit, Some((4, 3)));
        assert!(present(&votes, 7));
        assert!(!present(&votes, 8));
        assert!(!present(&LatestVotes::default(), 1));
    }

    #[test]
    fn remembers_a_bounded_number_of_things() {
        let observed = Observed::default();
        let key = |seed: usize| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(seed as u64).to_le_bytes());
            PublicKey(bytes)
        };
        for seed in 0..(MAX_TRACKED_VOTERS + 10) {
            observed.vote(key(seed), VoteKind::Prepare, seed as u64, 0);
        }
        // The newest voters are tracked, the longest silent forgotten.
        assert_eq!(
            observed.votes_of(&key(MAX_TRACKED_VOTERS + 9)).prepare,
            Some((MAX_TRACKED_VOTERS as u64 + 9, 0))
        );
        assert_eq!(observed.votes_of(&key(9)), LatestVotes::default());
        assert!(observed.votes_of(&key(10)).prepare.is_some());
        for height in 0..(RECENT_BLOCKS as u64 + 10) {
            observed.block(BlockSummary {
                height,
                round: 0,
                txs: 0,
                latency_ms: 1,
                finalized_at_ms: 1,
            });
            observed.evidence(json!(height));
        }
        let inner = observed.lock();
        assert_eq!(inner.votes.len(), MAX_TRACKED_VOTERS);
        assert_eq!(inner.blocks.len(), RECENT_BLOCKS);
        assert_eq!(inner.blocks.front().map(|b| b.height), Some(10));
        assert_eq!(inner.evidence.len(), RECENT_EVIDENCE);
    }

    #[test]
    fn an_embedded_snapshot_cannot_close_the_script() {
        let page = embed(&json!({ "agent": "</script><script>alert(1)</script>" }));
        assert!(!page.contains(STATE_SLOT));
        assert!(!page.contains("</script><script>alert"));
        assert!(page.contains(r#"{"agent":"\u003c/script>\u003cscript>alert(1)\u003c/script>"}"#));
    }

    #[test]
    fn event_streams_are_capped() {
        let count = Arc::new(AtomicUsize::new(0));
        let slots: Vec<_> = (0..MAX_EVENT_CLIENTS)
            .map(|_| ClientSlot::take(&count).expect("a free place"))
            .collect();
        assert!(ClientSlot::take(&count).is_none());
        drop(slots);
        assert_eq!(count.load(Ordering::Acquire), 0);
        assert!(ClientSlot::take(&count).is_some());
    }
}
