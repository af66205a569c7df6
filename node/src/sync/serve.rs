//! The serving side of the sync protocol: tips, blocks, the light blocks a joiner walks
//! through, and state snapshots. Every answer is read from one node's own store and files; a
//! request this node cannot answer gets an error (the asker goes to another peer), never a
//! partial answer that looks whole.

use crate::shared::Shared;
use crate::wire::{
    SyncRequest, SyncResponse, SyncedBlock, MAX_LIGHT_BLOCKS, MAX_SYNC_BATCH,
    MAX_SYNC_REQUEST_BYTES, MAX_SYNC_RESPONSE_BYTES,
};
use libp2p::PeerId;
use std::sync::Arc;
use timecoin_ledger::snapshot::SnapshotManifest;
use timecoin_ledger::{Store, StoreError};
use timecoin_light::LightBlock;
use timecoin_net::ResponseToken;
use timecoin_types::codec;
use tracing::{debug, warn};

/// Most heights one light-block answer scans for set changes; a longer walk is answered in
/// steps (a light block need not be a change to be on the walk).
const MAX_WALK_SCAN: u64 = 1_000_000;

/// Answers one sync request from `peer`.
pub fn serve(shared: Arc<Shared>, peer: PeerId, request: Vec<u8>, channel: ResponseToken) {
    tokio::task::spawn_blocking(move || {
        let store = &shared.store;
        let refused = |e: StoreError| SyncResponse::Error(e.to_string());
        let response = match codec::decode::<SyncRequest>(&request, MAX_SYNC_REQUEST_BYTES) {
            Err(err) => {
                shared.net.penalize(peer, "malformed sync request");
                SyncResponse::Error(format!("malformed request: {err}"))
            }
            Ok(SyncRequest::Status) => match store.tip() {
                Ok((tip, tip_hash)) => SyncResponse::Status { tip, tip_hash },
                Err(err) => refused(err),
            },
            Ok(SyncRequest::Blocks { count, .. }) if count > MAX_SYNC_BATCH => {
                SyncResponse::Error(format!("at most {MAX_SYNC_BATCH} blocks per request"))
            }
            Ok(SyncRequest::Blocks { from, count }) => read_blocks(store, from, count),
            Ok(SyncRequest::LightBlocks { after, to }) => {
                light_walk(store, after, to).unwrap_or_else(SyncResponse::Error)
            }
            Ok(SyncRequest::Snapshot) => newest_snapshot(store)
                .map(SyncResponse::Snapshot)
                .unwrap_or_else(refused),
            Ok(SyncRequest::SnapshotChunk { height, index }) => {
                snapshot_chunk(store, height, index).unwrap_or_else(SyncResponse::Error)
            }
        };
        shared.net.respond(channel, codec::encode(&response));
    });
}

/// The stored blocks from `from` on, at most `count` and within the response limit; it stops
/// at the first height it does not have: beyond the tip, or, on a pruning node, below its
/// retained range (then it serves none, and the requester asks another peer).
pub(super) fn read_blocks(store: &Store, from: u64, count: u32) -> SyncResponse {
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for height in from.max(1)..from.max(1).saturating_add(u64::from(count)) {
        let block = match store.block(height) {
            Ok(Some(block)) => block,
            Ok(None) => break,
            Err(StoreError::Pruned { retained_from, .. }) => {
                debug!(
                    height,
                    retained_from, "sync request for a pruned block: serving none"
                );
                break;
            }
            Err(err) => {
                warn!(height, %err, "cannot read a block to serve");
                break;
            }
        };
        let certificate = match store.certificate(height) {
            Ok(Some(certificate)) => certificate,
            _ => break,
        };
        let item = SyncedBlock { block, certificate };
        bytes += codec::encode(&item).len();
        // Stay under the response limit with room for the envelope.
        if bytes > MAX_SYNC_RESPONSE_BYTES - 4096 && !blocks.is_empty() {
            break;
        }
        blocks.push(item);
    }
    SyncResponse::Blocks(blocks)
}

/// The light block of finalized `height` (header, certificate, its set and the next), kept
/// for every height even where the body is pruned; `None` for the genesis and for heights
/// not finalized here.
pub fn light_block(store: &Store, height: u64) -> Result<Option<LightBlock>, StoreError> {
    if height == 0 {
        return Ok(None);
    }
    let (Some(header), Some(certificate)) = (store.header(height)?, store.certificate(height)?)
    else {
        return Ok(None);
    };
    Ok(Some(LightBlock {
        header,
        certificate,
        validators: store.validator_set(height)?,
        next_validators: store.validator_set(height + 1)?,
    }))
}

/// The answer to [`SyncRequest::LightBlocks`]: the set changes after `after`, then `to` (or
/// the last height scanned, when the walk is longer than one answer).
fn light_walk(store: &Store, after: u64, to: u64) -> Result<SyncResponse, String> {
    let (tip, _) = store.tip().map_err(|e| e.to_string())?;
    if after >= to || to > tip {
        return Err(format!(
            "a walk needs after < to ≤ the tip ({tip}); asked {after} to {to}"
        ));
    }
    // A node restored from a snapshot has no sets (and so no changes) before it: it must not
    // answer a walk from there as if nothing had changed.
    store
        .validator_set(after + 1)
        .map_err(|e| format!("cannot walk from height {after}: {e}"))?;
    let end = to.min(after.saturating_add(MAX_WALK_SCAN));
    let mut heights = store
        .set_changes(after + 1, end)
        .map_err(|e| e.to_string())?;
    heights.retain(|&h| h > after && h < end);
    heights.truncate(MAX_LIGHT_BLOCKS);
    if heights.len() < MAX_LIGHT_BLOCKS {
        heights.push(end);
    }
    let mut blocks = Vec::with_capacity(heights.len());
    for height in heights {
        match light_block(store, height) {
            Ok(Some(block)) => blocks.push(block),
            Ok(None) => return Err(format!("no light block at height {height}")),
            Err(e) => return Err(format!("light block {height}: {e}")),
        }
    }
    Ok(SyncResponse::LightBlocks(blocks))
}

/// The manifest of the newest snapshot whose next height is final here too (a joiner needs
/// that height's light block to learn the sets that follow the snapshot).
fn newest_snapshot(store: &Store) -> Result<Option<SnapshotManifest>, StoreError> {
    let Some(dir) = store.snapshot_dir() else {
        return Ok(None);
    };
    let (tip, _) = store.tip()?;
    let Some(height) = dir.heights()?.into_iter().rev().find(|&h| h < tip) else {
        return Ok(None);
    };
    Ok(Some(dir.manifest(height)?))
}

/// Chunk `index` of the snapshot of `height`, if this node holds it.
fn snapshot_chunk(store: &Store, height: u64, index: u32) -> Result<SyncResponse, String> {
    let dir = store
        .snapshot_dir()
        .ok_or("this node writes no snapshots")?;
    let manifest = dir.manifest(height).map_err(|_| {
        format!("no snapshot of height {height} here (it may have been replaced by a newer one)")
    })?;
    if index as usize >= manifest.chunks.len() {
        return Err(format!(
            "the snapshot of {height} has {} chunks",
            manifest.chunks.len()
        ));
    }
    dir.chunk(height, index)
        .map(SyncResponse::Chunk)
        .map_err(|e| e.to_string())
}
