//! Lying state-sync peers: they offer snapshots and serve light blocks and chunks, each
//! with one kind of lie, passing everything else through to an honest node (the oracle).

use super::{event_loop, LIFETIME};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timecoin_ledger::snapshot::{chunk_hash, Record, SnapshotManifest, SNAPSHOT_FORMAT};
use timecoin_ledger::{OutPoint, TxOutput};
use timecoin_net::{Acceptance, NetEvents, NetHandle, PeerId};
use timecoin_types::{codec, Address, Hash256};
use timed::wire::{SyncRequest, SyncResponse, MAX_SYNC_RESPONSE_BYTES};
use tokio::time::{sleep, timeout, Instant};

/// What a [`spawn_snapshot_liar`] lies about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotLie {
    /// Offers a snapshot of the oracle's tip, naming its certified block and state root,
    /// whose one chunk (consistent with the manifest) holds a made-up output.
    ForgedState,
    /// Offers the oracle's snapshot and serves its chunks with one byte flipped.
    BadChunks,
    /// Offers the oracle's snapshot and never answers a chunk request.
    Stall,
}

/// The chunk requests a liar received.
pub type ChunkLog = Arc<Mutex<Vec<(Instant, u32)>>>;

/// Sends `request` to `peer` and decodes the answer.
async fn ask(net: &NetHandle, peer: PeerId, request: &SyncRequest) -> Option<SyncResponse> {
    let bytes = timeout(
        Duration::from_secs(2),
        net.request(peer, codec::encode(request)),
    )
    .await
    .ok()?
    .ok()?;
    codec::decode(&bytes, MAX_SYNC_RESPONSE_BYTES).ok()
}

/// The light blocks `oracle` serves for `request`, waiting (within the asker's timeout) for
/// a height it has not finalized yet: a forged snapshot is of the oracle's tip, so the
/// asker's next step, to the tip + 1, is a few hundred milliseconds early.
async fn walk_from_oracle(net: &NetHandle, oracle: PeerId, request: &SyncRequest) -> SyncResponse {
    let deadline = Instant::now() + Duration::from_millis(2500);
    loop {
        match ask(net, oracle, request).await {
            Some(answer @ SyncResponse::LightBlocks(_)) => return answer,
            _ if Instant::now() < deadline => sleep(Duration::from_millis(50)).await,
            _ => return SyncResponse::Error("not yet".into()),
        }
    }
}

/// A snapshot of the oracle's tip that names its real block and state root but holds one
/// made-up output: every chunk matches the manifest, only the state root check can catch it.
async fn forged_snapshot(
    net: &NetHandle,
    oracle: PeerId,
    chain_id: &str,
) -> Option<(SnapshotManifest, Vec<u8>)> {
    let SyncResponse::Status { tip, .. } = ask(net, oracle, &SyncRequest::Status).await? else {
        return None;
    };
    let request = SyncRequest::LightBlocks {
        after: tip - 1,
        to: tip,
    };
    let SyncResponse::LightBlocks(blocks) = ask(net, oracle, &request).await? else {
        return None;
    };
    let header = &blocks.last()?.header;
    let record = Record::Output(
        OutPoint {
            txid: Hash256::digest(b"made up"),
            index: 0,
        },
        TxOutput {
            address: Address([7; 20]),
            amount: 1_000_000 * timecoin_types::COIN,
        },
    );
    let mut chunk = Vec::new();
    record.encode_into(&mut chunk);
    let manifest = SnapshotManifest {
        format: SNAPSHOT_FORMAT,
        chain_id: chain_id.to_string(),
        height: tip,
        block_hash: header.hash(),
        state_root: header.state_root,
        chunk_records: 4096,
        records: 1,
        chunks: vec![chunk_hash(&chunk)],
    };
    Some((manifest, chunk))
}

/// Runs a lying state-sync peer on `net`, passing status and walk requests through to
/// `oracle`; returns the log of chunk requests it received.
pub fn spawn_snapshot_liar(
    net: &NetHandle,
    events: NetEvents,
    chain_id: String,
    oracle: PeerId,
    lie: SnapshotLie,
) -> ChunkLog {
    let log: ChunkLog = Arc::default();
    let record = log.clone();
    let gossip_net = net.clone();
    let net = net.clone();
    let mut forged: Option<(SnapshotManifest, Vec<u8>)> = None;
    let mut held = Vec::new();
    let task = event_loop(
        events,
        async move |_, _, id, source| gossip_net.report(id, source, Acceptance::Ignore),
        async move |_, request, channel| {
            let request: SyncRequest = match codec::decode(&request, 256) {
                Ok(request) => request,
                Err(_) => return,
            };
            if let SyncRequest::SnapshotChunk { index, .. } = &request {
                record
                    .lock()
                    .expect("chunk log")
                    .push((Instant::now(), *index));
            }
            let answer = match (&request, lie) {
                (SyncRequest::Snapshot, SnapshotLie::ForgedState) => {
                    forged = forged_snapshot(&net, oracle, &chain_id).await;
                    SyncResponse::Snapshot(forged.as_ref().map(|(m, _)| m.clone()))
                }
                (SyncRequest::SnapshotChunk { .. }, SnapshotLie::ForgedState) => match &forged {
                    Some((_, chunk)) => SyncResponse::Chunk(chunk.clone()),
                    None => SyncResponse::Error("no snapshot".into()),
                },
                (SyncRequest::SnapshotChunk { .. }, _) => {
                    if lie == SnapshotLie::Stall {
                        held.push(channel);
                        return;
                    }
                    match ask(&net, oracle, &request).await {
                        Some(SyncResponse::Chunk(mut bytes)) => {
                            if let Some(byte) = bytes.get_mut(3) {
                                *byte ^= 0x40;
                            }
                            SyncResponse::Chunk(bytes)
                        }
                        _ => SyncResponse::Error("no chunk".into()),
                    }
                }
                (SyncRequest::LightBlocks { .. }, _) => {
                    walk_from_oracle(&net, oracle, &request).await
                }
                (SyncRequest::Blocks { .. }, _) => {
                    SyncResponse::Error("this peer serves no blocks".into())
                }
                _ => ask(&net, oracle, &request)
                    .await
                    .unwrap_or_else(|| SyncResponse::Error("oracle silent".into())),
            };
            net.respond(channel, codec::encode(&answer));
        },
    );
    tokio::spawn(timeout(LIFETIME, task));
    log
}
