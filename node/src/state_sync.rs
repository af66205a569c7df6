//! Joining by state sync (`timed start --state-sync`): instead of replaying every block since
//! the genesis, a fresh node installs the state of a recent height from peers' snapshots and
//! follows the chain from there.
//!
//! No single peer is trusted:
//! 1. Every connected peer is asked for its newest snapshot; manifests are grouped by
//!    [`SnapshotManifest::id`], and the highest snapshot offered by the most peers is tried
//!    first.
//! 2. The snapshot's header is verified as a light client would: from the genesis through
//!    every validator-set change to the snapshot's height H, then one height further (the
//!    certified header of H + 1 names H's hash and the sets of H + 1 and H + 2). The
//!    manifest must name that block and its state root.
//! 3. Chunks are fetched from every peer offering the same snapshot, several at a time, each
//!    checked against the manifest's hash and record count before it is written to
//!    `DATA_DIR/state-sync/<snapshot id>/`. A peer that serves a chunk not matching the
//!    manifest it offered is penalised; one that fails or stalls is backed off, and the
//!    chunk goes to another.
//! 4. The store installs the chunks in one write transaction, only if the records hash to
//!    the certified state root; otherwise the offerers are penalised, the files deleted,
//!    and the next snapshot tried.
//!
//! An interrupted restore leaves only chunk files, each written whole under a temporary name:
//! the next start takes the chunks it has (checked again) when the same snapshot is still
//! offered, and otherwise starts over.

use crate::shared::Shared;
use crate::sync::{self, ask, AskError, Backoff};
use crate::wire::{SyncRequest, SyncResponse, MAX_LIGHT_BLOCKS};
use crate::NODE_LOG_TARGET;
use anyhow::bail;
use libp2p::PeerId;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timecoin_ledger::snapshot::{decode_chunk, SnapshotManifest};
use timecoin_ledger::{Restore, StoreError};
use timecoin_light::{verify, Bundle, LightBlock, Trust, BUNDLE_FORMAT};
use timecoin_net::{Acceptance, NetEvent, NetEvents};
use timecoin_types::Hash256;
use tokio::sync::Notify;
use tracing::{info, warn};

/// How long a peer may take to offer its snapshot or a walk.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a peer may take to serve one chunk (at most about 1 MB).
const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk requests in flight at once (spread over the offering peers).
const PARALLEL_CHUNKS: usize = 4;
/// Consecutive failures after which a peer is no longer asked for this snapshot's chunks.
const GIVE_UP_AFTER: u32 = 5;
/// Peers to wait for before the first round of offers.
const GATHER_PEERS: usize = 3;
/// The longest wait for [`GATHER_PEERS`] before the first round (with at least one peer).
const GATHER_TIME: Duration = Duration::from_secs(5);
/// How long to wait for peers before asking again when none offers a usable snapshot.
const RETRY: Duration = Duration::from_secs(2);

/// Restores the state from peers' snapshots into a store that holds only the genesis, while
/// answering peers' sync requests (with this node's genesis tip) and ignoring gossip; returns
/// the height restored. Runs until it succeeds: a network without snapshots yet is waited
/// for, with a log line.
pub async fn join(
    shared: Arc<Shared>,
    data_dir: &Path,
    events: &mut NetEvents,
) -> anyhow::Result<u64> {
    let peer_joined = Arc::new(Notify::new());
    let restore = restore(&shared, data_dir.join("state-sync"), &peer_joined);
    tokio::pin!(restore);
    loop {
        tokio::select! {
            result = &mut restore => return result,
            event = events.recv() => match event {
                None => bail!("the network stopped during state sync"),
                Some(NetEvent::SyncRequest { peer, request, channel }) => {
                    sync::serve(shared.clone(), peer, request, channel);
                }
                Some(NetEvent::Gossip { id, source, .. }) => {
                    shared.net.report(id, source, Acceptance::Ignore);
                }
                Some(NetEvent::PeerConnected(_)) => peer_joined.notify_one(),
                Some(NetEvent::PeerDisconnected(_) | NetEvent::PeerSubscribed { .. }) => {}
            }
        }
    }
}

/// Why one snapshot could not be installed.
#[derive(Debug)]
enum Failed {
    /// The snapshot is wrong, as any node can tell: its offerers are penalised.
    Invalid(String),
    /// Not provably anyone's fault (peers gone, timeouts): try again later.
    Unavailable(String),
}

async fn restore(shared: &Shared, dir: PathBuf, peer_joined: &Notify) -> anyhow::Result<u64> {
    gather_peers(shared, peer_joined).await;
    let mut backoff = Backoff::default();
    // Snapshots found wrong: never tried again in this run.
    let mut refused: HashSet<Hash256> = HashSet::new();
    let mut last_wait_log: Option<Instant> = None;
    loop {
        let offers = offers(shared, &mut backoff).await;
        let mut candidates: Vec<(SnapshotManifest, Vec<PeerId>)> = offers
            .into_values()
            .filter(|(m, _)| !refused.contains(&m.id()))
            .collect();
        candidates.sort_by_key(|(m, peers)| {
            (std::cmp::Reverse(m.height), std::cmp::Reverse(peers.len()))
        });
        let Some((manifest, peers)) = candidates.into_iter().next() else {
            if last_wait_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                info!(target: NODE_LOG_TARGET, peers = shared.net.peers().await.len(), "state sync: waiting for a peer that offers a snapshot");
                last_wait_log = Some(Instant::now());
            }
            let _ = tokio::time::timeout(RETRY, peer_joined.notified()).await;
            continue;
        };
        let id = manifest.id();
        info!(target: NODE_LOG_TARGET, height = manifest.height, id = %id, records = manifest.records, chunks = manifest.chunks.len(), offered_by = peers.len(), "state sync: trying snapshot");
        match try_snapshot(shared, &dir, &manifest, &peers, &mut backoff).await {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&dir);
                info!(target: NODE_LOG_TARGET, height = manifest.height, hash = %manifest.block_hash, "state sync: state restored; following the chain from here");
                return Ok(manifest.height);
            }
            Err(Failed::Invalid(why)) => {
                warn!(target: NODE_LOG_TARGET, height = manifest.height, id = %id, reason = %why, offered_by = peers.len(), "state sync: snapshot refused; penalising the peers that offered it");
                for peer in &peers {
                    shared
                        .net
                        .penalize(*peer, "offered an invalid state snapshot");
                }
                refused.insert(id);
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(Failed::Unavailable(why)) => {
                warn!(target: NODE_LOG_TARGET, height = manifest.height, reason = %why, "state sync: snapshot not fetched; asking peers again");
                let _ = tokio::time::timeout(RETRY, peer_joined.notified()).await;
            }
        }
    }
}

/// Waits until [`GATHER_PEERS`] peers are connected, or for [`GATHER_TIME`] and at least
/// one: the first peer to connect must not be the only one whose offer counts.
async fn gather_peers(shared: &Shared, peer_joined: &Notify) {
    let started = Instant::now();
    loop {
        let peers = shared.net.peers().await.len();
        if peers >= GATHER_PEERS || (peers > 0 && started.elapsed() >= GATHER_TIME) {
            return;
        }
        let _ = tokio::time::timeout(RETRY, peer_joined.notified()).await;
    }
}

/// Every connected peer's newest snapshot, by snapshot id, with the peers offering it.
async fn offers(
    shared: &Shared,
    backoff: &mut Backoff,
) -> BTreeMap<Hash256, (SnapshotManifest, Vec<PeerId>)> {
    let answers = sync::ask_all(shared, backoff, &SyncRequest::Snapshot, ASK_TIMEOUT).await;
    let mut offers: BTreeMap<Hash256, (SnapshotManifest, Vec<PeerId>)> = BTreeMap::new();
    for (peer, answer) in answers {
        match answer {
            Ok(SyncResponse::Snapshot(Some(manifest))) => {
                match manifest.check(&shared.genesis.chain_id) {
                    Ok(()) => offers
                        .entry(manifest.id())
                        .or_insert((manifest, Vec::new()))
                        .1
                        .push(peer),
                    Err(err) => sync::fail(
                        shared,
                        backoff,
                        peer,
                        true,
                        &format!("offered a malformed snapshot: {err}"),
                    ),
                }
            }
            Ok(SyncResponse::Snapshot(None)) => {}
            Ok(SyncResponse::Error(err)) => sync::fail(shared, backoff, peer, false, &err),
            Ok(_) => sync::fail(
                shared,
                backoff,
                peer,
                true,
                "an answer of another kind to a snapshot request",
            ),
            Err(AskError::Malformed(err)) => sync::fail(shared, backoff, peer, true, &err),
            Err(AskError::Failed(err)) => sync::fail(shared, backoff, peer, false, &err),
        }
    }
    offers
}

/// Certifies, fetches and installs one snapshot.
async fn try_snapshot(
    shared: &Shared,
    dir: &Path,
    manifest: &SnapshotManifest,
    peers: &[PeerId],
    backoff: &mut Backoff,
) -> Result<(), Failed> {
    let (at, after) = certified_blocks(shared, manifest.height, peers, backoff).await?;
    if at.header.hash() != manifest.block_hash || at.header.state_root != manifest.state_root {
        return Err(Failed::Invalid(format!(
            "the manifest names block {} with state root {}, but the certified block of height {} is {} with state root {}",
            manifest.block_hash, manifest.state_root, manifest.height, at.header.hash(), at.header.state_root
        )));
    }
    let chunks_dir = dir.join(manifest.id().to_string());
    keep_only(dir, &chunks_dir)
        .map_err(|e| Failed::Unavailable(format!("{}: {e}", dir.display())))?;
    fetch_chunks(shared, &chunks_dir, manifest, peers, backoff).await?;
    let restore = Restore {
        manifest: manifest.clone(),
        header: at.header,
        certificate: at.certificate,
        sets: [at.validators, at.next_validators, after.next_validators],
    };
    let store = shared.store.clone();
    let genesis = shared.genesis.clone();
    let started = Instant::now();
    let installed = tokio::task::spawn_blocking(move || {
        store.install_snapshot(&genesis, &restore, |index| {
            Ok(std::fs::read(
                chunks_dir.join(timecoin_ledger::snapshot::chunk_file(index)),
            )?)
        })
    })
    .await
    .map_err(|e| Failed::Unavailable(e.to_string()))?;
    match installed {
        Ok(()) => {
            info!(target: NODE_LOG_TARGET, height = manifest.height, records = manifest.records, ms = started.elapsed().as_millis() as u64, "state sync: snapshot installed");
            Ok(())
        }
        Err(StoreError::Snapshot(err)) if err.is_invalid_snapshot() => {
            Err(Failed::Invalid(err.to_string()))
        }
        Err(err) => Err(Failed::Unavailable(format!("cannot install: {err}"))),
    }
}

/// The verified light blocks of `height` and `height + 1`, walked from the genesis through
/// every validator-set change with light blocks from `peers`.
async fn certified_blocks(
    shared: &Shared,
    height: u64,
    peers: &[PeerId],
    backoff: &mut Backoff,
) -> Result<(LightBlock, LightBlock), Failed> {
    let at = walk(shared, None, height, peers, backoff).await?;
    let after = walk(shared, Some(at.clone()), height + 1, peers, backoff).await?;
    Ok((at, after))
}

/// Walks from `trusted` (`None`: the genesis) to the light block of `to`, each step from
/// the next peer in turn; a peer whose step does not verify is penalised, one that fails is
/// backed off, and after two failures per peer the walk gives up.
async fn walk(
    shared: &Shared,
    mut trusted: Option<LightBlock>,
    to: u64,
    peers: &[PeerId],
    backoff: &mut Backoff,
) -> Result<LightBlock, Failed> {
    let genesis = &shared.genesis;
    let mut failures = 0usize;
    for turn in 0.. {
        let from = trusted.as_ref().map_or(0, |b| b.header.height);
        if let Some(reached) = trusted.take_if(|b| b.header.height == to) {
            return Ok(reached);
        }
        let Some(&peer) = peers.get(turn % peers.len().max(1)) else {
            break;
        };
        if failures >= 2 * peers.len() {
            break;
        }
        let request = SyncRequest::LightBlocks { after: from, to };
        let fault = match ask(shared, peer, &request, ASK_TIMEOUT).await {
            Ok(SyncResponse::LightBlocks(blocks)) if blocks.len() <= MAX_LIGHT_BLOCKS => {
                let bundle = Bundle {
                    format: BUNDLE_FORMAT,
                    chain_id: genesis.chain_id.clone(),
                    trusted_height: trusted.as_ref().map(|b| b.header.height),
                    blocks: trusted.iter().cloned().chain(blocks).collect(),
                    transaction: None,
                };
                let trust = match &trusted {
                    None => Trust::Genesis(genesis),
                    Some(b) => Trust::Block(genesis, b.header.height, b.header.hash()),
                };
                match (verify(trust, &bundle), bundle.blocks.last()) {
                    (Err(err), _) => Some((true, format!("a walk that does not verify: {err}"))),
                    (Ok(_), Some(last))
                        if last.header.height <= from || last.header.height > to =>
                    {
                        Some((true, "a walk that does not go towards its target".into()))
                    }
                    // Consecutive heights must link, which the set walk alone does not check.
                    (Ok(_), Some(last))
                        if last.header.height == from + 1
                            && trusted
                                .as_ref()
                                .is_some_and(|t| last.header.prev_hash != t.header.hash()) =>
                    {
                        Some((true, "a block that does not follow its parent".into()))
                    }
                    (Ok(_), last) => {
                        trusted = last.cloned();
                        None
                    }
                }
            }
            Ok(SyncResponse::Error(err)) => Some((false, format!("refused a walk: {err}"))),
            Err(AskError::Failed(err)) => Some((false, err)),
            Ok(_) => Some((true, "an answer that is no walk".into())),
            Err(AskError::Malformed(err)) => Some((true, err)),
        };
        if let Some((invalid_everywhere, why)) = fault {
            sync::fail(shared, backoff, peer, invalid_everywhere, &why);
            failures += 1;
        }
    }
    Err(Failed::Unavailable(format!(
        "no peer served a verifiable walk to height {to}"
    )))
}

/// Deletes every restore in progress under `dir` but `keep`, and creates `keep`.
fn keep_only(dir: &Path, keep: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry?.path();
            if path != keep {
                std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path))?;
            }
        }
    }
    std::fs::create_dir_all(keep)
}

/// Fetches the chunks of `manifest` not yet in `dir` from `peers`, [`PARALLEL_CHUNKS`] at a
/// time, checking each against the manifest before writing it (under a temporary name, then
/// renamed). Chunks already there are checked again; a bad one is fetched anew.
async fn fetch_chunks(
    shared: &Shared,
    dir: &Path,
    manifest: &SnapshotManifest,
    peers: &[PeerId],
    backoff: &mut Backoff,
) -> Result<(), Failed> {
    let total = manifest.chunks.len() as u32;
    let mut missing: VecDeque<u32> = VecDeque::new();
    for index in 0..total {
        let path = dir.join(timecoin_ledger::snapshot::chunk_file(index));
        let whole = std::fs::read(&path)
            .ok()
            .is_some_and(|bytes| decode_chunk(manifest, index, &bytes).is_ok());
        if !whole {
            missing.push_back(index);
        }
    }
    let resumed = total - missing.len() as u32;
    if resumed > 0 {
        info!(target: NODE_LOG_TARGET, height = manifest.height, chunks = resumed, of = total, "state sync: resuming with the chunks fetched before");
    }
    let mut serving: Vec<PeerId> = peers.to_vec();
    let mut last_log = Instant::now();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut busy: HashMap<PeerId, usize> = HashMap::new();
    let mut turn = 0usize;
    loop {
        // Hand out chunks to peers that are not backed off, one request per peer at a time
        // (several if there are few peers).
        while in_flight.len() < PARALLEL_CHUNKS && !missing.is_empty() {
            let now = Instant::now();
            let ready: Vec<PeerId> = serving
                .iter()
                .copied()
                .filter(|p| {
                    !backoff.is_waiting(p, now)
                        && busy.get(p).copied().unwrap_or(0)
                            < PARALLEL_CHUNKS.div_ceil(serving.len().max(1))
                })
                .collect();
            let Some(&peer) = ready.get(turn % ready.len().max(1)) else {
                break;
            };
            turn += 1;
            let Some(index) = missing.pop_front() else {
                break;
            };
            *busy.entry(peer).or_default() += 1;
            let request = SyncRequest::SnapshotChunk {
                height: manifest.height,
                index,
            };
            in_flight.push(async move {
                (
                    peer,
                    index,
                    ask(shared, peer, &request, CHUNK_TIMEOUT).await,
                )
            });
        }
        if in_flight.is_empty() {
            if missing.is_empty() {
                return Ok(());
            }
            if serving.is_empty() {
                return Err(Failed::Unavailable(
                    "every peer offering the snapshot failed".into(),
                ));
            }
            // Every peer left is backed off: wait for the first to come back.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let Some((peer, index, answer)) = futures::StreamExt::next(&mut in_flight).await else {
            continue;
        };
        if let Some(count) = busy.get_mut(&peer) {
            *count = count.saturating_sub(1);
        }
        let fault = match answer {
            Ok(SyncResponse::Chunk(bytes)) => match decode_chunk(manifest, index, &bytes) {
                Ok(_) => {
                    write_chunk(dir, index, &bytes).map_err(|e| {
                        Failed::Unavailable(format!("cannot write chunk {index}: {e}"))
                    })?;
                    backoff.succeeded(&peer);
                    None
                }
                Err(err) => Some((
                    true,
                    format!("served a chunk that does not match the snapshot it offered: {err}"),
                )),
            },
            Ok(SyncResponse::Error(err)) => Some((false, format!("refused chunk {index}: {err}"))),
            Err(AskError::Failed(err)) => Some((false, format!("chunk {index}: {err}"))),
            Ok(_) => Some((true, "an answer that is no chunk".into())),
            Err(AskError::Malformed(err)) => Some((true, err)),
        };
        if let Some((invalid_everywhere, why)) = fault {
            missing.push_back(index);
            sync::fail(shared, backoff, peer, invalid_everywhere, &why);
            if invalid_everywhere || backoff.failures(&peer) >= GIVE_UP_AFTER {
                serving.retain(|p| *p != peer);
            }
        }
        if last_log.elapsed() > Duration::from_secs(2) {
            let done = total - missing.len() as u32 - in_flight.len() as u32;
            info!(target: NODE_LOG_TARGET, height = manifest.height, chunks = done, of = total, peers = serving.len(), "state sync: fetching chunks");
            last_log = Instant::now();
        }
    }
}

/// Writes chunk `index` whole: to a temporary name, then renamed.
fn write_chunk(dir: &Path, index: u32, bytes: &[u8]) -> std::io::Result<()> {
    let name = timecoin_ledger::snapshot::chunk_file(index);
    let partial = dir.join(format!("{name}.partial"));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, dir.join(name))
}
