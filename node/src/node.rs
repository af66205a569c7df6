//! `timed start`: one event loop wires the network, the consensus engine and the ledger.
//!
//! The loop is the only writer of the ledger. Slow work (redb transactions, block
//! validation) runs on blocking threads and comes back as [`Internal`] events, so the loop
//! never stalls the async executor.

use crate::config::{resolve, Config};
use crate::metrics::{Metrics, PhaseLabels};
use crate::sync::{self, SyncHandle, SyncedBlock};
use crate::txs::{GossipedTx, TxWorker};
use crate::{keys, rpc};
use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timecoin_consensus::{
    Engine, Evidence, Input, Output, Signer, SignerState, Step, Timeout, Verdict,
};
use timecoin_ledger::{Block, Genesis, Mempool, Store};
use timecoin_net::{Acceptance, MessageId, NetConfig, NetEvent, NetHandle, PeerId, Topic};
use timecoin_types::{codec, Certificate, Hash256, Proposal, Vote, VoteKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tracing::{debug, error, info, warn};

/// Largest vote message.
const MAX_VOTE_BYTES: usize = 1024;
/// Largest proposal message: a full block plus the signed proposal.
pub const MAX_PROPOSAL_BYTES: usize = timecoin_ledger::MAX_BLOCK_BYTES + 4096;

/// Options of `timed start`; flags override `config.toml`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// The node's home directory (holds config.toml).
    #[arg(long)]
    pub home: PathBuf,
    /// Listen for peers on this multiaddress instead of the configured ones (repeatable).
    #[arg(long = "p2p-listen")]
    pub p2p_listen: Vec<String>,
    /// Bootstrap from this multiaddress instead of the configured ones (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Serve JSON-RPC on this HOST:PORT instead of the configured one.
    #[arg(long)]
    pub rpc_listen: Option<SocketAddr>,
    /// Keep the database here instead of the configured data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// A block proposal on the wire: the signed proposal and the block it names.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProposalMessage {
    /// The proposer's signed statement.
    pub proposal: Proposal,
    /// The block.
    pub block: Block,
}

/// What a validator persists before any vote leaves it: the signer's state, and the
/// proposals of the blocks it is locked on or holds as its valid value. Without the blocks, a
/// restart of every validator locked on a block would lose its only copies, and the locked
/// validators could then never prepare anything else.
#[derive(Serialize, Deserialize)]
struct ConsensusRecord {
    signer: SignerState,
    proposals: Vec<ProposalMessage>,
}

/// Most proposals remembered per height (the engine caches no more blocks either).
const MAX_PROPOSALS_PER_HEIGHT: usize = 16;

/// A vote on the wire. The engine re-sends votes when a round stalls (gossipsub never
/// retransmits what a partition or a restart lost); gossipsub drops a message whose bytes it
/// has seen before, so every send carries a fresh `nonce` and the engine drops duplicates.
#[derive(Serialize, Deserialize)]
pub struct VoteMessage {
    /// The signed vote.
    pub vote: Vote,
    /// Distinguishes re-sends of one vote; not signed, not interpreted.
    pub nonce: u64,
}

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
}

/// The local finalization time of the most recent heights.
#[derive(Default)]
pub struct FinalizedAt(std::collections::BTreeMap<u64, u64>);

impl FinalizedAt {
    /// How many heights are remembered.
    const KEEP: usize = 100_000;

    fn record(&mut self, height: u64, at_ms: u64) {
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

/// Results of work done off the loop.
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
    /// Finalized blocks fetched from a peer, to apply in order.
    Synced {
        /// Consecutive blocks with their certificates.
        blocks: Vec<SyncedBlock>,
        /// Answered with the new tip, or why the batch was refused.
        done: oneshot::Sender<Result<u64, String>>,
    },
}

struct Node {
    shared: Arc<Shared>,
    engine: Engine<Block>,
    /// Our consensus key, when we are a validator.
    validator_key: Option<timecoin_types::PublicKey>,
    status: watch::Sender<Status>,
    timers: DelayQueue<Timeout>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    sync: SyncHandle,
    txs: TxWorker,
    /// The next height to start and when its TSDC slot begins.
    next_start: Option<(u64, Instant)>,
    height_started: Instant,
    proposal_seen: Option<Instant>,
    /// Proposals of the heights the engine works on or buffers, by (height, block hash).
    proposals: std::collections::BTreeMap<(u64, Hash256), ProposalMessage>,
    /// Makes every vote send distinct on the wire (see [`VoteMessage`]); starts random so
    /// that a restarted node does not repeat its earlier sends.
    vote_nonce: u64,
}

/// Runs `timed start` until SIGINT or SIGTERM.
pub fn run(args: StartArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,libp2p_gossipsub=warn,libp2p_kad=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(start(args))
}

async fn start(args: StartArgs) -> Result<()> {
    let home = &args.home;
    let mut config = Config::load(home)?;
    if !args.p2p_listen.is_empty() {
        config.p2p.listen = args.p2p_listen.clone();
    }
    if !args.bootstrap.is_empty() {
        config.p2p.bootstrap = args.bootstrap.clone();
    }
    if let Some(addr) = args.rpc_listen {
        config.rpc.listen = addr;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }

    let genesis = Genesis::load(&resolve(home, &config.genesis))?;
    let data_dir = resolve(home, &config.data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let store = Arc::new(Store::open(&data_dir.join("timed.redb"))?);
    store.init_genesis(&genesis)?;
    let (tip, tip_hash) = store.tip()?;

    let mut restored_proposals = Vec::new();
    let signer = match &config.validator_key {
        Some(path) => {
            let key = keys::read_key(&resolve(home, path))?;
            let record = match store.load_signer_state()? {
                Some(bytes) => Some(
                    codec::decode::<ConsensusRecord>(&bytes, 8 * MAX_PROPOSAL_BYTES)
                        .context("stored signer state is unreadable")?,
                ),
                None => None,
            };
            info!(public_key = %key.public(), "validator key loaded");
            let (state, proposals) =
                record.map_or((None, Vec::new()), |r| (Some(r.signer), r.proposals));
            restored_proposals = proposals;
            Some(Signer::new(key, state))
        }
        None => None,
    };
    let validator_key = signer.as_ref().map(Signer::public_key);
    let is_validator = validator_key.is_some();

    let parse_addrs = |list: &[String]| -> Result<Vec<libp2p::Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("invalid multiaddress {a}"))
            })
            .collect()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (net, mut net_events) = timecoin_net::start(
        NetConfig {
            chain_id: genesis.chain_id.clone(),
            keypair: keys::read_node_identity(&resolve(home, &config.node_key))?,
            listen: parse_addrs(&config.p2p.listen)?,
            bootstrap: parse_addrs(&config.p2p.bootstrap)?,
            max_peers: config.p2p.max_peers,
            max_message_bytes: MAX_PROPOSAL_BYTES,
            max_sync_response_bytes: sync::MAX_RESPONSE_BYTES,
        },
        &mut registry,
    )
    .await?;
    let metrics = Metrics::new(registry);
    metrics.height.set(tip as i64);

    let (status_tx, status_rx) = watch::channel(Status {
        validator: is_validator,
        ..Status::default()
    });
    let shared = Arc::new(Shared {
        genesis,
        store,
        mempool: Mutex::new(Mempool::new(
            config.mempool.max_transactions,
            config.mempool.max_bytes,
        )),
        net,
        status: status_rx,
        metrics,
        finalized_at: Mutex::default(),
    });
    let (rpc_addr, rpc_handle) = rpc::serve(config.rpc.listen, shared.clone()).await?;
    info!(
        chain_id = %shared.genesis.chain_id,
        height = tip,
        hash = %tip_hash,
        peer_id = %shared.net.local_peer_id(),
        rpc = %format!("http://{rpc_addr}/"),
        validator = is_validator,
        "node started"
    );

    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
    let sync = sync::spawn(shared.clone(), internal_tx.clone());
    let mut node = Node {
        engine: Engine::new(
            shared.genesis.chain_id.clone(),
            config.consensus.engine(),
            signer,
        ),
        validator_key,
        shared: shared.clone(),
        status: status_tx,
        timers: DelayQueue::new(),
        internal_tx,
        sync,
        txs: TxWorker::spawn(shared.clone()),
        next_start: None,
        height_started: Instant::now(),
        proposal_seen: None,
        vote_nonce: rand::random(),
        proposals: restored_proposals
            .into_iter()
            .map(|m| ((m.proposal.height, m.proposal.block_hash), m))
            .collect(),
    };
    node.schedule_height(tip + 1);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let next_start = node.next_start;
        tokio::select! {
            // Timers and finished background work first: they move consensus forward, and
            // a busy network must not starve them.
            biased;
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            Some(expired) = node.timers.next() => {
                node.feed(Input::Timeout(expired.into_inner())).await;
            }
            Some(event) = internal_rx.recv() => node.on_internal(event).await,
            _ = tokio::time::sleep_until(next_start.map_or_else(Instant::now, |(_, at)| at)), if next_start.is_some() => {
                node.start_height().await;
            }
            Some(event) = net_events.recv() => node.on_net_event(event).await,
        }
    }
    info!("shutting down");
    let _ = rpc_handle.stop();
    shared.net.shutdown().await;
    rpc_handle.stopped().await;
    Ok(())
}

impl Node {
    /// Plans the start of `height` at its TSDC slot (now, if the slot has passed).
    fn schedule_height(&mut self, height: u64) {
        let slot = self.shared.genesis.slot_time_ms(height);
        let now = crate::testnet::now_ms();
        let at = Instant::now() + Duration::from_millis(slot.saturating_sub(now));
        self.next_start = Some((height, at));
    }

    async fn start_height(&mut self) {
        let Some((height, _)) = self.next_start.take() else {
            return;
        };
        let store = self.shared.store.clone();
        let set = match tokio::task::spawn_blocking(move || store.validator_set(height)).await {
            Ok(Ok(set)) => set,
            other => {
                error!(height, ?other, "cannot read the validator set; retrying");
                self.next_start = Some((height, Instant::now() + Duration::from_secs(1)));
                return;
            }
        };
        self.timers.clear();
        self.height_started = Instant::now();
        self.proposal_seen = None;
        self.proposals = self.proposals.split_off(&(height, Hash256::ZERO));
        let outputs = self.engine.start_height(height, set);
        self.process(outputs).await;
        // After a restart: offer the blocks we were locked on again (the engine drops
        // duplicates of proposals it already has).
        let ours: Vec<ProposalMessage> = self
            .proposals
            .range((height, Hash256::ZERO)..(height + 1, Hash256::ZERO))
            .map(|(_, m)| m.clone())
            .collect();
        for message in ours {
            let block_hash = message.block.hash();
            self.feed(Input::Proposal {
                proposal: message.proposal,
                block: message.block,
                block_hash,
            })
            .await;
        }
    }

    /// Remembers a proposal of a height the engine works on or buffers, within bounds.
    fn remember_proposal(&mut self, message: &ProposalMessage) {
        let height = message.proposal.height;
        if height < self.engine.height() || height > self.engine.height() + 2 {
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

    /// Feeds one input to the engine, runs everything it asks for, and returns its verdict
    /// on the input.
    async fn feed(&mut self, input: Input<Block>) -> Verdict {
        let handled = self.engine.handle(input);
        self.process(handled.outputs).await;
        handled.verdict
    }

    async fn process(&mut self, outputs: Vec<Output<Block>>) {
        let mut queue: VecDeque<Output<Block>> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::PersistSigner(state) => self.persist_signer(state).await,
                Output::BroadcastProposal { proposal, block } => {
                    let message = ProposalMessage { proposal, block };
                    self.remember_proposal(&message);
                    let bytes = codec::encode(&message);
                    self.shared.net.publish(Topic::Proposal, bytes).await;
                }
                Output::BroadcastVote(vote) => {
                    let topic = match vote.kind {
                        VoteKind::Prepare => Topic::Prepare,
                        VoteKind::Precommit => Topic::Precommit,
                    };
                    self.vote_nonce = self.vote_nonce.wrapping_add(1);
                    let message = VoteMessage {
                        vote,
                        nonce: self.vote_nonce,
                    };
                    self.shared
                        .net
                        .publish(topic, codec::encode(&message))
                        .await;
                }
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.timers.insert(timeout, Duration::from_millis(after_ms));
                }
                Output::ValidateBlock {
                    height,
                    block_hash,
                    block,
                } => self.validate_in_background(height, block_hash, block),
                Output::BuildBlock { height, round } => self.build_in_background(height, round),
                Output::Decide {
                    height,
                    round,
                    block_hash,
                    block,
                    certificate,
                } => {
                    self.commit(height, round, block_hash, block, certificate)
                        .await
                }
                Output::Evidence(evidence) => self.record_evidence(evidence).await,
            }
        }
        self.publish_status();
    }

    /// The signer state must be durable before any vote it covers leaves the node: a crash
    /// after sending but before persisting could let a restarted validator sign again.
    async fn persist_signer(&self, state: SignerState) {
        let store = self.shared.store.clone();
        let kept = [state.locked, state.valid];
        let proposals = kept
            .iter()
            .flatten()
            .filter_map(|(_, hash)| self.proposals.get(&(state.height, *hash)).cloned())
            .collect();
        let bytes = codec::encode(&ConsensusRecord {
            signer: state,
            proposals,
        });
        match tokio::task::spawn_blocking(move || store.save_signer_state(&bytes)).await {
            Ok(Ok(())) => {}
            other => {
                // Without a durable record we must not sign on: stop rather than risk a
                // double sign after a restart.
                error!(?other, "cannot persist the signer state; stopping");
                std::process::exit(1);
            }
        }
    }

    fn validate_in_background(&self, height: u64, block_hash: Hash256, block: Block) {
        let shared = self.shared.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let valid = match shared.store.validate_block(&block, &shared.genesis) {
                Ok(()) => true,
                Err(err) => {
                    warn!(height, hash = %block_hash, %err, "proposed block is invalid");
                    false
                }
            };
            let _ = tx.send(Internal::Validated {
                height,
                block_hash,
                valid,
            });
        });
    }

    fn build_in_background(&self, height: u64, round: u32) {
        let shared = self.shared.clone();
        let tx = self.internal_tx.clone();
        let Some(proposer) = self.validator_key else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let candidates = shared.mempool.lock().expect("mempool lock").select(
                timecoin_ledger::MAX_BLOCK_TRANSACTIONS,
                timecoin_ledger::MAX_BLOCK_BYTES - 64 * 1024,
            );
            let time_ms = crate::testnet::now_ms();
            match shared
                .store
                .build_block(&shared.genesis, round, proposer, time_ms, candidates)
            {
                Ok(block) if block.header.height == height => {
                    let _ = tx.send(Internal::Built {
                        height,
                        round,
                        block: Box::new(block),
                    });
                }
                Ok(block) => warn!(
                    height,
                    built = block.header.height,
                    "ledger moved on while building; dropping the block"
                ),
                Err(err) => error!(height, %err, "cannot build a block"),
            }
        });
    }

    async fn commit(
        &mut self,
        height: u64,
        round: u32,
        block_hash: Hash256,
        block: Option<Block>,
        certificate: Certificate,
    ) {
        let Some(block) = block else {
            info!(height, hash = %block_hash, "decided a block we never received; fetching it");
            self.sync.trigger();
            return;
        };
        let shared = self.shared.clone();
        let applied = block.clone();
        let result = tokio::task::spawn_blocking(move || {
            let (tip, tip_hash) = shared.store.tip()?;
            if tip >= height {
                // Catch-up sync applied it first; it must be the same block.
                let ours = shared.store.block_hash(height)?;
                return Ok::<_, timecoin_ledger::StoreError>(ours == Some(block_hash) || {
                    error!(height, decided = %block_hash, stored = ?ours, tip = %tip_hash, "decided a block other than the stored one");
                    false
                });
            }
            shared
                .store
                .apply_block(&applied, &certificate, &shared.genesis)?;
            Ok(true)
        })
        .await;
        match result {
            Ok(Ok(true)) => self.after_commit(&block, round),
            Ok(Ok(false)) => {}
            other => {
                error!(height, ?other, "cannot store the finalized block; stopping");
                std::process::exit(1);
            }
        }
    }

    fn after_commit(&mut self, block: &Block, round: u32) {
        let height = block.header.height;
        self.shared
            .finalized_at
            .lock()
            .expect("finalized_at lock")
            .record(height, crate::testnet::now_ms());
        let latency = self.height_started.elapsed();
        let m = &self.shared.metrics;
        m.height.set(height as i64);
        m.finalization.observe(latency.as_secs_f64());
        if let Some(seen) = self.proposal_seen {
            m.phases
                .get_or_create(&PhaseLabels { phase: "vote" })
                .observe(seen.elapsed().as_secs_f64());
        }
        {
            let mut pool = self.shared.mempool.lock().expect("mempool lock");
            pool.remove_for_block(block);
            m.mempool_size.set(pool.len() as i64);
        }
        let reward: u64 = block.rewards.iter().map(|o| o.amount).sum();
        info!(
            height,
            hash = %block.hash(),
            round,
            txs = block.transactions.len(),
            reward = %timecoin_types::format_amount(reward),
            latency_ms = latency.as_millis() as u64,
            "finalized block"
        );
        self.schedule_height(height + 1);
    }

    async fn record_evidence(&self, evidence: Evidence) {
        let height = match &evidence {
            Evidence::DoubleVote { first, .. } => first.height,
            Evidence::DoubleProposal { first, .. } => first.height,
        };
        warn!(evidence = %evidence_json(height, &evidence), "equivocation");
        self.shared.metrics.equivocations.inc();
        let store = self.shared.store.clone();
        let bytes = codec::encode(&evidence);
        if let Ok(Err(err)) =
            tokio::task::spawn_blocking(move || store.put_evidence(height, &bytes)).await
        {
            error!(%err, "cannot store evidence");
        }
    }

    fn publish_status(&self) {
        let step = match self.engine.step() {
            Step::Propose => "propose",
            Step::Prepare => "prepare",
            Step::Precommit => "precommit",
        };
        self.shared
            .metrics
            .round
            .set(i64::from(self.engine.round()));
        self.status.send_modify(|s| {
            s.height = self.engine.height();
            s.round = self.engine.round();
            s.step = step;
        });
    }

    async fn on_net_event(&mut self, event: NetEvent) {
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
                        return;
                    }
                    Topic::Proposal => ("proposal", self.on_proposal(&data).await),
                    Topic::Prepare => ("prepare", self.on_vote(&data, VoteKind::Prepare).await),
                    Topic::Precommit => {
                        ("precommit", self.on_vote(&data, VoteKind::Precommit).await)
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
                debug!(%peer, "peer connected");
                self.shared.metrics.peers.inc();
                self.sync.trigger();
            }
            NetEvent::PeerDisconnected(peer) => {
                debug!(%peer, "peer disconnected");
                self.shared.metrics.peers.dec();
            }
        }
    }

    async fn on_proposal(&mut self, data: &[u8]) -> Verdict {
        let message: ProposalMessage = match codec::decode(data, MAX_PROPOSAL_BYTES) {
            Ok(m) => m,
            Err(err) => return Verdict::Rejected(format!("proposal: {err}")),
        };
        if message.block.header.chain_id != self.shared.genesis.chain_id {
            return Verdict::Rejected(format!(
                "proposal for chain {:?}",
                message.block.header.chain_id
            ));
        }
        if message.block.header.height != message.proposal.height {
            return Verdict::Rejected("proposal and block heights differ".into());
        }
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
            .await;
        // Only what the engine accepted (right proposer, good signature) may take one of
        // the few places kept for a restart. A lock on it comes later than this (the block
        // is validated first), so it is remembered in time.
        if matches!(verdict, Verdict::Accepted) {
            self.remember_proposal(&kept);
        }
        verdict
    }

    async fn on_vote(&mut self, data: &[u8], kind: VoteKind) -> Verdict {
        let vote = match codec::decode::<VoteMessage>(data, MAX_VOTE_BYTES) {
            Ok(m) => m.vote,
            Err(err) => return Verdict::Rejected(format!("vote: {err}")),
        };
        if vote.kind != kind {
            return Verdict::Rejected(format!("{:?} vote on the {kind:?} topic", vote.kind));
        }
        self.note_height(vote.height);
        let seen = (
            vote.validator,
            vote.height,
            vote.round,
            vote.kind,
            vote.block_hash,
        );
        let verdict = self.feed(Input::Vote(vote)).await;
        if matches!(verdict, Verdict::Accepted) {
            // One line per accepted vote, for audits (e.g. proving a validator never signed
            // two different votes for one slot); off unless RUST_LOG enables it.
            debug!(target: "timed::votes", validator = %seen.0, height = seen.1, round = seen.2, kind = ?seen.3, block = ?seen.4.map(|h| h.to_string()), "vote");
        }
        verdict
    }

    /// Messages from well ahead of us mean we fell behind: catch up by sync.
    fn note_height(&self, height: u64) {
        if height > self.engine.height() + 1 {
            self.sync.trigger();
        }
    }

    async fn on_internal(&mut self, event: Internal) {
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
                .await;
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
                .await;
            }
            Internal::Synced { blocks, done } => {
                let result = self.apply_synced(blocks).await;
                let _ = done.send(result);
            }
        }
    }

    /// Applies finalized blocks from a peer, each checked against its height's validator set,
    /// then restarts consensus at the new tip.
    async fn apply_synced(&mut self, blocks: Vec<SyncedBlock>) -> Result<u64, String> {
        let shared = self.shared.clone();
        let (applied, result) = tokio::task::spawn_blocking(move || {
            let mut applied = 0u64;
            for item in &blocks {
                let (tip, _) = shared.store.tip().map_err(|e| e.to_string())?;
                let height = item.block.header.height;
                if height <= tip {
                    continue;
                }
                if let Err(err) = sync::check_and_apply(&shared.store, &shared.genesis, item) {
                    return Ok((applied, Err(format!("block {height}: {err}"))));
                }
                applied += 1;
            }
            let (tip, _) = shared.store.tip().map_err(|e| e.to_string())?;
            Ok::<_, String>((applied, Ok(tip)))
        })
        .await
        .map_err(|e| e.to_string())??;
        if applied > 0 {
            let (tip, _) = self.shared.store.tip().map_err(|e| e.to_string())?;
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
            debug!(kind, %source, reason, "ignored gossip");
            ("ignored", Acceptance::Ignore)
        }
        Verdict::Rejected(reason) => {
            warn!(kind, %source, reason, "rejected gossip");
            ("rejected", Acceptance::Reject)
        }
    };
    shared.metrics.message(kind, label);
    shared.net.report(id, source, acceptance);
}

/// Evidence as JSON, for logs and `getevidence`.
pub fn evidence_json(height: u64, evidence: &Evidence) -> serde_json::Value {
    let vote = |v: &Vote| {
        json!({
            "kind": format!("{:?}", v.kind).to_lowercase(),
            "height": v.height, "round": v.round,
            "block_hash": v.block_hash.map(|h| h.to_string()),
            "validator": v.validator.to_string(), "signature": v.signature.to_string(),
        })
    };
    let proposal = |p: &Proposal| {
        json!({
            "height": p.height, "round": p.round, "block_hash": p.block_hash.to_string(),
            "proposer": p.proposer.to_string(), "signature": p.signature.to_string(),
        })
    };
    match evidence {
        Evidence::DoubleVote { first, second } => json!({
            "type": "double_vote", "height": height, "validator": first.validator.to_string(),
            "first": vote(first), "second": vote(second),
        }),
        Evidence::DoubleProposal { first, second } => json!({
            "type": "double_proposal", "height": height, "validator": first.proposer.to_string(),
            "first": proposal(first), "second": proposal(second),
        }),
    }
}
