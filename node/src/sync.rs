//! Catch-up sync: a node that is behind fetches finalized blocks with their certificates from
//! peers over request-response, checks each against the validator set of its height, and
//! hands them to the event loop to apply.

use crate::shared::{Internal, Shared};
use crate::wire::{
    SyncRequest, SyncResponse, SyncedBlock, MAX_SYNC_BATCH, MAX_SYNC_REQUEST_BYTES,
    MAX_SYNC_RESPONSE_BYTES,
};
use libp2p::PeerId;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timecoin_ledger::{Genesis, Store};
use timecoin_net::ResponseToken;
use timecoin_types::codec;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};

/// How often peers are asked for their tip when nothing else prompts it.
const POLL_INTERVAL: Duration = Duration::from_secs(3);

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
pub fn check_and_apply(store: &Store, genesis: &Genesis, item: &SyncedBlock) -> Result<(), String> {
    let height = item.block.header.height;
    let set = store.validator_set(height).map_err(|e| e.to_string())?;
    item.certificate
        .verify_for(&genesis.chain_id, &set, height, &item.block.hash())
        .map_err(|e| format!("certificate: {e}"))?;
    store
        .apply_block(&item.block, &item.certificate, genesis)
        .map_err(|e| e.to_string())
}

/// Answers one sync request from `peer`.
pub fn serve(shared: Arc<Shared>, peer: PeerId, request: Vec<u8>, channel: ResponseToken) {
    tokio::task::spawn_blocking(move || {
        let response = match codec::decode::<SyncRequest>(&request, MAX_SYNC_REQUEST_BYTES) {
            Err(err) => {
                shared.net.penalize(peer, "malformed sync request");
                SyncResponse::Error(format!("malformed request: {err}"))
            }
            Ok(SyncRequest::Status) => match shared.store.tip() {
                Ok((tip, tip_hash)) => SyncResponse::Status { tip, tip_hash },
                Err(err) => SyncResponse::Error(err.to_string()),
            },
            Ok(SyncRequest::Blocks { count, .. }) if count > MAX_SYNC_BATCH => {
                SyncResponse::Error(format!("at most {MAX_SYNC_BATCH} blocks per request"))
            }
            Ok(SyncRequest::Blocks { from, count }) => read_blocks(&shared, from, count),
        };
        shared.net.respond(channel, codec::encode(&response));
    });
}

fn read_blocks(shared: &Shared, from: u64, count: u32) -> SyncResponse {
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for height in from.max(1)..from.max(1).saturating_add(u64::from(count)) {
        let (block, certificate) =
            match (shared.store.block(height), shared.store.certificate(height)) {
                (Ok(Some(b)), Ok(Some(c))) => (b, c),
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

/// Starts the sync task.
pub fn spawn(shared: Arc<Shared>, internal: mpsc::UnboundedSender<Internal>) -> SyncHandle {
    let notify = Arc::new(Notify::new());
    let handle = SyncHandle(notify.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            if let Err(err) = catch_up(&shared, &internal).await {
                debug!(%err, "sync round ended");
            }
        }
    });
    handle
}

async fn ask(shared: &Shared, peer: PeerId, request: &SyncRequest) -> Result<SyncResponse, String> {
    let bytes = shared
        .net
        .request(peer, codec::encode(request))
        .await
        .map_err(|e| e.to_string())?;
    codec::decode(&bytes, MAX_SYNC_RESPONSE_BYTES).map_err(|e| e.to_string())
}

/// Asks every connected peer for its tip.
async fn peer_tips(shared: &Shared) -> Vec<(PeerId, u64)> {
    let peers: Vec<PeerId> = shared
        .net
        .peers()
        .await
        .into_iter()
        .filter_map(|p| p.peer_id.parse().ok())
        .collect();
    let answers = futures::future::join_all(peers.into_iter().map(|peer| async move {
        match ask(shared, peer, &SyncRequest::Status).await {
            Ok(SyncResponse::Status { tip, .. }) => Some((peer, tip)),
            _ => None,
        }
    }))
    .await;
    answers.into_iter().flatten().collect()
}

/// Fetches and applies blocks until no peer claims a higher tip.
async fn catch_up(
    shared: &Shared,
    internal: &mpsc::UnboundedSender<Internal>,
) -> Result<(), String> {
    let started = Instant::now();
    let (start_tip, _) = shared.store.tip().map_err(|e| e.to_string())?;
    let mut last_log = Instant::now();
    let mut turn = 0usize;
    loop {
        let (tip, _) = shared.store.tip().map_err(|e| e.to_string())?;
        let mut ahead: Vec<(PeerId, u64)> = peer_tips(shared)
            .await
            .into_iter()
            .filter(|&(_, t)| t > tip)
            .collect();
        let Some(target) = ahead.iter().map(|&(_, t)| t).max() else {
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
        ahead.sort_by_key(|&(peer, _)| peer);
        // Rotate through the peers that are ahead, so one slow or bad peer cannot stall us.
        let (peer, _) = ahead[turn % ahead.len()];
        turn += 1;
        let count = (target - tip).min(u64::from(MAX_SYNC_BATCH)) as u32;
        let blocks = match ask(
            shared,
            peer,
            &SyncRequest::Blocks {
                from: tip + 1,
                count,
            },
        )
        .await
        {
            Ok(SyncResponse::Blocks(blocks)) => blocks,
            Ok(SyncResponse::Error(err)) => {
                warn!(%peer, %err, "peer refused a sync request");
                continue;
            }
            Ok(other) => {
                shared.net.penalize(peer, "wrong sync response");
                warn!(%peer, ?other, "wrong sync response");
                continue;
            }
            Err(err) => {
                // A timeout or a closed connection is no misbehaviour (the peer may just have
                // restarted): try the next peer, penalise nobody.
                debug!(%peer, %err, "sync request failed");
                continue;
            }
        };
        let consecutive = blocks.iter().enumerate().all(|(i, b)| {
            b.block.header.height == tip + 1 + i as u64
                && b.certificate.height == b.block.header.height
        });
        if blocks.is_empty() || blocks.len() > count as usize || !consecutive {
            shared
                .net
                .penalize(peer, "sync response with the wrong blocks");
            warn!(%peer, "sync response with missing or out-of-order blocks");
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
                if last_log.elapsed() > Duration::from_secs(2) {
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    info!(
                        height = new_tip,
                        target,
                        blocks_per_sec = format!("{:.0}", (new_tip - start_tip) as f64 / secs),
                        "catching up"
                    );
                    last_log = Instant::now();
                }
            }
            Err(err) => {
                shared.net.penalize(peer, "served an invalid block");
                warn!(%peer, %err, "peer served an invalid block");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timecoin_ledger::{Block, GenesisValidator, TxOutput, DEFAULT_UNBONDING_BLOCKS};
    use timecoin_types::{Address, Certificate, Keypair, Vote, VoteKind, COIN};

    struct Chain {
        _dir: tempfile::TempDir,
        store: Store,
        genesis: Genesis,
        keys: Vec<Keypair>,
    }

    fn chain() -> Chain {
        let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let genesis = Genesis {
            chain_id: "sync-test".into(),
            genesis_time_ms: 1_700_000_000_000,
            block_interval_ms: 1000,
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisValidator {
                    name: format!("v{i}"),
                    public_key: k.public(),
                    collateral: 1000 * COIN,
                    reward_address: Address::of(&k.public()),
                })
                .collect(),
            allocations: vec![TxOutput {
                address: Address::of(&keys[0].public()),
                amount: 10 * COIN,
            }],
            min_fee_per_byte: 1,
            min_output: timecoin_ledger::DEFAULT_MIN_OUTPUT,
            unbonding_blocks: DEFAULT_UNBONDING_BLOCKS,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        store.init_genesis(&genesis).unwrap();
        Chain {
            _dir: dir,
            store,
            genesis,
            keys,
        }
    }

    impl Chain {
        fn next_block(&self) -> Block {
            let (tip, _) = self.store.tip().unwrap();
            let set = self.store.validator_set(tip + 1).unwrap();
            let proposer = set.proposer(tip + 1, 0).public_key;
            let time = self.genesis.slot_time_ms(tip + 1);
            self.store
                .build_block(&self.genesis, 0, proposer, time, Vec::new())
                .unwrap()
        }

        fn certify(&self, block: &Block, signers: usize) -> Certificate {
            let votes: Vec<Vote> = self.keys[..signers]
                .iter()
                .map(|k| {
                    let hash = Some(block.hash());
                    Vote::sign(
                        "sync-test",
                        k,
                        VoteKind::Precommit,
                        block.header.height,
                        0,
                        hash,
                    )
                })
                .collect();
            Certificate::from_votes(block.header.height, 0, block.hash(), &votes)
        }
    }

    #[test]
    fn only_a_fully_verified_next_block_is_applied() {
        let c = chain();
        let apply = |block: &Block, certificate: Certificate| {
            let item = SyncedBlock {
                block: block.clone(),
                certificate,
            };
            check_and_apply(&c.store, &c.genesis, &item)
        };
        let first = c.next_block();

        let weak = apply(&first, c.certify(&first, 2)).unwrap_err();
        assert!(weak.contains("below two thirds"), "{weak}");
        let mut other = first.clone();
        other.header.time_ms += 1;
        let misdirected = apply(&first, c.certify(&other, 3)).unwrap_err();
        assert!(misdirected.contains("certificate"), "{misdirected}");
        let mut forged = first.clone();
        forged.rewards[0].amount += 1;
        let bad_rewards = apply(&forged, c.certify(&forged, 3)).unwrap_err();
        assert!(!bad_rewards.is_empty());
        assert_eq!(c.store.tip().unwrap().0, 0, "nothing applied");

        apply(&first, c.certify(&first, 3)).unwrap();
        assert_eq!(c.store.tip().unwrap(), (1, first.hash()));
        let again = apply(&first, c.certify(&first, 4)).unwrap_err();
        assert!(!again.is_empty(), "a block is applied once");
        assert_eq!(c.store.tip().unwrap().0, 1);
    }
}
