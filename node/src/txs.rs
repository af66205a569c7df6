//! Transaction admission. RPC submissions and gossiped transactions are checked against the
//! ledger and enter the mempool on blocking threads, away from the consensus loop, so a flood
//! of transactions can delay other transactions but never votes or proposals.

use crate::shared::{report_gossip, Shared};
use std::sync::Arc;
use timecoin_consensus::Verdict;
use timecoin_ledger::Transaction;
use timecoin_net::{MessageId, PeerId, Topic};
use timecoin_types::{codec, Hash256};
use tokio::sync::mpsc;

/// Gossiped transactions waiting for a check; more are ignored (not forwarded, nobody
/// penalised) until the node catches up.
const QUEUE: usize = 20_000;
/// Transactions checked per blocking task.
const BATCH: usize = 512;

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Already pending or finalized.
    #[error("transaction {0} is already known")]
    Known(Hash256),
    /// Invalid against the ledger.
    #[error("{0}")]
    Invalid(#[from] timecoin_ledger::TxError),
    /// Valid, but the mempool refused it (conflict with a pending one, or full).
    #[error("{0}")]
    Mempool(#[from] timecoin_ledger::MempoolError),
    /// The node could not read its own state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Shared {
    /// Checks `tx` against the ledger and admits it to the mempool. Blocking (redb reads).
    pub fn admit(&self, tx: Transaction) -> Result<Hash256, SubmitError> {
        let txid = tx.txid();
        let finalized = self
            .store
            .transaction_height(&txid)
            .map_err(|e| SubmitError::Internal(e.to_string()))?;
        if finalized.is_some() || self.mempool.lock().expect("mempool lock").contains(&txid) {
            return Err(SubmitError::Known(txid));
        }
        let fee = self.store.validate_transaction(&tx, &self.genesis)?;
        let mut pool = self.mempool.lock().expect("mempool lock");
        pool.insert(tx, fee, crate::testnet::now_ms())?;
        self.metrics.mempool_size.set(pool.len() as i64);
        Ok(txid)
    }

    /// Admits a transaction submitted over RPC and gossips it.
    pub async fn submit_transaction(
        self: &Arc<Self>,
        tx: Transaction,
    ) -> Result<Hash256, SubmitError> {
        let bytes = codec::encode(&tx);
        let shared = self.clone();
        let txid = tokio::task::spawn_blocking(move || shared.admit(tx))
            .await
            .map_err(|e| SubmitError::Internal(e.to_string()))??;
        self.net.publish(Topic::Tx, bytes).await;
        Ok(txid)
    }
}

/// A transaction that arrived by gossip, with what gossipsub needs for the verdict.
pub struct GossipedTx {
    /// The encoded transaction.
    pub data: Vec<u8>,
    /// Gossipsub's id for it.
    pub id: MessageId,
    /// The peer that forwarded it.
    pub source: PeerId,
}

/// Checks gossiped transactions in batches on blocking threads.
pub struct TxWorker(mpsc::Sender<Box<GossipedTx>>);

impl TxWorker {
    /// Starts the worker.
    pub fn spawn(shared: Arc<Shared>) -> TxWorker {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(shared, rx));
        TxWorker(tx)
    }

    /// Queues a gossiped transaction; hands it back when the queue is full.
    pub fn offer(&self, item: Box<GossipedTx>) -> Result<(), Box<GossipedTx>> {
        self.0.try_send(item).map_err(|e| e.into_inner())
    }
}

fn verdict(shared: &Shared, data: &[u8]) -> Verdict {
    let tx: Transaction = match codec::decode(data, timecoin_ledger::MAX_TX_BYTES) {
        Ok(tx) => tx,
        Err(err) => return Verdict::Rejected(format!("transaction: {err}")),
    };
    match shared.admit(tx) {
        Ok(_) => Verdict::Accepted,
        // An unknown or spent input, a pool conflict, a node one block behind: possibly valid
        // elsewhere, so nobody is penalised for it.
        Err(SubmitError::Invalid(err)) if !err.is_local() => Verdict::Rejected(err.to_string()),
        Err(err) => Verdict::Ignored(err.to_string()),
    }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Box<GossipedTx>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let checker = shared.clone();
        let Ok(results) = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|item| {
                    let verdict = verdict(&checker, &item.data);
                    (item.id, item.source, verdict)
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        for (id, source, verdict) in results {
            report_gossip(&shared, "tx", id, source, &verdict);
        }
    }
}
