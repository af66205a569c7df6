//! `timed start`: opens the node's home (config, genesis, database, keys), starts the
//! network and the RPC server, runs the event loop, and closes it all down again, whether the
//! loop ends on a signal or on a fatal error.

use crate::config::{resolve, Config};
use crate::metrics::Metrics;
use crate::node::{Node, StopBefore};
use crate::shared::{Shared, Status};
use crate::wire::{
    ConsensusRecord, GOSSIP_LIMITS, MAX_CONSENSUS_RECORD_BYTES, MAX_SYNC_RESPONSE_BYTES,
};
use crate::{keys, rpc, state_sync, NODE_LOG_TARGET};
use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timecoin_consensus::Signer;
use timecoin_ledger::snapshot::SnapshotConfig;
use timecoin_ledger::{Genesis, Mempool, Store, PROTOCOL_VERSION};
use timecoin_net::{Discovery, Latency, NetConfig};
use timecoin_types::codec;
use tokio::sync::watch;
use tracing::info;

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
    /// Announce this multiaddress to peers instead of the configured external addresses
    /// (repeatable), e.g. `/ip4/203.0.113.7/tcp/26656`; the listen addresses are then not
    /// advertised.
    #[arg(long = "external-address", value_name = "MULTIADDR")]
    pub external_address: Vec<String>,
    /// Serve JSON-RPC on this HOST:PORT instead of the configured one.
    #[arg(long)]
    pub rpc_listen: Option<SocketAddr>,
    /// Keep the database here instead of the configured data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Sign from the first height, without first watching the network for another process
    /// using this validator's key: only when this is certainly the only one.
    #[arg(long)]
    pub skip_doppelganger_check: bool,
    /// Finalize up to the height before this one, then stop cleanly (exit 0) without signing
    /// anything at it: for coordinated upgrades and maintenance.
    #[arg(long)]
    pub halt_height: Option<u64>,
    /// Join from a verified state snapshot of peers instead of replaying every block (only
    /// when the database holds nothing but the genesis; otherwise the flag is ignored).
    #[arg(long)]
    pub state_sync: bool,
    /// How log lines are written: `text` for people, `json` for one JSON object per line
    /// (the event's fields, its message and the fields of the spans it is in).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Benchmarks only: delay every byte received from a peer by this many milliseconds, to
    /// emulate a network slower than loopback (`timed bench --latency-ms` sets it on every
    /// node). Never on a real network: it only slows the node down.
    #[arg(long, value_name = "MS", help_heading = "Benchmarks only")]
    pub latency_ms: Option<u64>,
    /// Benchmarks only: add a uniform random 0..=MS milliseconds to `--latency-ms` (the byte
    /// order of each connection is kept).
    #[arg(
        long,
        value_name = "MS",
        requires = "latency_ms",
        help_heading = "Benchmarks only"
    )]
    pub jitter_ms: Option<u64>,
}

impl StartArgs {
    /// The latency to inject on the node's connections, if `--latency-ms` asks for one.
    fn latency(&self) -> Option<Latency> {
        self.latency_ms.map(|ms| Latency {
            one_way: Duration::from_millis(ms),
            jitter: Duration::from_millis(self.jitter_ms.unwrap_or(0)),
        })
    }
}

/// The format of the node's log lines (`--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours on a terminal).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// `span` and `spans`.
    Json,
}

/// Installs the global log subscriber: per-module levels from `RUST_LOG` (default: `info`,
/// with libp2p's gossipsub and Kademlia at `warn`), lines in `format`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,libp2p_gossipsub=warn,libp2p_kad=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// Runs `timed start` until SIGINT or SIGTERM, or until the event loop stops on a fatal
/// error (returned, after the network and RPC are shut down).
pub fn run(args: StartArgs) -> Result<()> {
    init_logging(args.log_format);
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
    if !args.external_address.is_empty() {
        config.p2p.external_addresses = args.external_address.clone();
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
    let store = Store::open(&data_dir.join("timed.redb"))?;
    let store = store.retaining(config.storage.retain_blocks);
    let store = Arc::new(match config.storage.snapshot_interval {
        0 => store,
        interval => store.with_snapshots(SnapshotConfig {
            dir: data_dir.join("snapshots"),
            interval,
            chunk_records: config.storage.snapshot_chunk_records,
        }),
    });
    store.init_genesis(&genesis)?;
    let (mut tip, tip_hash) = store.tip()?;
    let stop_before = StopBefore::of(&genesis, args.halt_height);
    for upgrade in &genesis.upgrades {
        info!(target: NODE_LOG_TARGET, version = upgrade.version, height = upgrade.height, implemented = upgrade.version <= PROTOCOL_VERSION, "protocol upgrade scheduled");
    }

    let mut restored_proposals = Vec::new();
    let signer = match &config.validator_key {
        Some(path) => {
            let key = keys::read_key(&resolve(home, path))?;
            let record = match store.load_signer_state()? {
                Some(bytes) => Some(
                    codec::decode::<ConsensusRecord>(&bytes, MAX_CONSENSUS_RECORD_BYTES)
                        .context("stored signer state is unreadable")?,
                ),
                None => None,
            };
            info!(target: NODE_LOG_TARGET, public_key = %key.public(), "validator key loaded");
            let (state, proposals) =
                record.map_or((None, Vec::new()), |r| (Some(r.signer), r.proposals));
            restored_proposals = proposals;
            Some(Signer::new(key, state))
        }
        None => None,
    };
    let is_validator = signer.is_some();

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
            reserved: config
                .p2p
                .reserved_peers
                .iter()
                .map(|id| {
                    id.parse()
                        .with_context(|| format!("invalid reserved peer id {id}"))
                })
                .collect::<Result<_>>()?,
            max_inbound: config.p2p.inbound_limit(),
            max_inbound_per_ip: config.p2p.max_inbound_per_ip,
            max_message_bytes: GOSSIP_LIMITS,
            max_sync_response_bytes: MAX_SYNC_RESPONSE_BYTES,
            discovery: Discovery {
                external_addresses: parse_addrs(&config.p2p.external_addresses)?,
                persistent_peers: parse_addrs(&config.p2p.persistent_peers)?,
                // The peers reached, so that a restart does not depend on the bootstrap list.
                peer_table: Some(data_dir.join("peers.json")),
            },
            latency: args.latency(),
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
            config.mempool.ttl_secs.saturating_mul(1000),
        )),
        net,
        status: status_rx,
        metrics,
        finalized_at: Mutex::default(),
        observed: Default::default(),
        new_blocks: tokio::sync::broadcast::channel(crate::shared::NEW_BLOCKS_BUFFER).0,
    });
    let (rpc_addr, rpc_handle) = rpc::serve(config.rpc.listen, shared.clone()).await?;
    info!(
        target: NODE_LOG_TARGET,
        chain_id = %shared.genesis.chain_id,
        height = tip,
        hash = %tip_hash,
        peer_id = %shared.net.local_peer_id(),
        rpc = %format!("http://{rpc_addr}/"),
        validator = is_validator,
        "node started"
    );

    if args.state_sync && tip == 0 {
        info!(target: NODE_LOG_TARGET, "joining by state sync");
        state_sync::join(shared.clone(), &data_dir, &mut net_events).await?;
        tip = shared.store.tip()?.0;
        shared.metrics.height.set(tip as i64);
    } else if args.state_sync {
        info!(target: NODE_LOG_TARGET, height = tip, "--state-sync ignored: the database is past the genesis already");
    }
    let mut node = Node::new(
        shared.clone(),
        status_tx,
        config.consensus.engine(),
        signer,
        restored_proposals,
        stop_before,
        if args.skip_doppelganger_check {
            0
        } else {
            config.consensus.doppelganger_watch_ms
        },
    );
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = node.run(tip + 1, net_events, sigterm).await;
    info!(target: NODE_LOG_TARGET, "shutting down");
    shared.observed.close_streams();
    let _ = rpc_handle.stop();
    shared.net.shutdown().await;
    rpc_handle.stopped().await;
    Ok(outcome?)
}
