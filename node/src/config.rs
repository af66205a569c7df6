//! A node's home: `config.toml`, key files, the genesis and the data directory.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use timecoin_ledger::snapshot::MAX_CHUNK_RECORDS;

/// Name of the configuration file inside a home.
pub const CONFIG_FILE: &str = "config.toml";

/// The contents of `config.toml`. Relative paths are relative to the home.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The chain's genesis file.
    pub genesis: PathBuf,
    /// Where the redb database lives.
    pub data_dir: PathBuf,
    /// The validator's consensus key; absent on a full node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_key: Option<PathBuf>,
    /// The libp2p identity key.
    pub node_key: PathBuf,
    /// Peer-to-peer settings.
    pub p2p: P2pConfig,
    /// JSON-RPC settings.
    pub rpc: RpcConfig,
    /// Consensus timeouts.
    #[serde(default)]
    pub consensus: ConsensusConfig,
    /// Mempool bounds.
    #[serde(default)]
    pub mempool: MempoolConfig,
    /// What the database keeps.
    #[serde(default)]
    pub storage: StorageConfig,
}

/// `[p2p]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pConfig {
    /// Multiaddresses to listen on, e.g. `/ip4/0.0.0.0/tcp/26600`.
    pub listen: Vec<String>,
    /// Multiaddresses of peers to start from, each ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Most peers to keep connected.
    #[serde(default = "default_max_peers")]
    pub max_peers: u32,
    /// Most inbound connections of peers that are not bootstrap peers; two thirds of
    /// `max_peers` when absent, so that strangers dialling in never take the slots this node
    /// needs to dial out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inbound: Option<u32>,
    /// Most inbound connections from one IP address, bootstrap peers excepted.
    #[serde(default = "default_max_inbound_per_ip")]
    pub max_inbound_per_ip: u32,
    /// Peer ids never refused by the connection limits, besides the bootstrap peers named by
    /// id: the operator's other validators or sentries, peers it must always reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved_peers: Vec<String>,
    /// Multiaddresses at which other nodes reach this one (a public IP, a forwarded port),
    /// e.g. `/ip4/203.0.113.7/tcp/26656`. When set, they are announced (identify, and through
    /// it Kademlia) instead of the listen addresses, which are then not advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_addresses: Vec<String>,
    /// Peers to stay connected to, each `/ip4/…/tcp/…/p2p/<peer id>`: dialled at start and
    /// redialled with backoff (1 s doubling to 60 s) whenever not connected; never refused by
    /// the connection limits. Bootstrap peers, by contrast, only get the node started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persistent_peers: Vec<String>,
}

fn default_max_peers() -> u32 {
    50
}

fn default_max_inbound_per_ip() -> u32 {
    8
}

impl P2pConfig {
    /// Settings for these addresses with the default limits.
    pub fn new(listen: Vec<String>, bootstrap: Vec<String>) -> P2pConfig {
        P2pConfig {
            listen,
            bootstrap,
            max_peers: default_max_peers(),
            max_inbound: None,
            max_inbound_per_ip: default_max_inbound_per_ip(),
            reserved_peers: Vec::new(),
            external_addresses: Vec::new(),
            persistent_peers: Vec::new(),
        }
    }

    /// The inbound limit in force (`max_inbound`, or its default, never above `max_peers`).
    pub fn inbound_limit(&self) -> u32 {
        self.max_inbound
            .unwrap_or(self.max_peers * 2 / 3)
            .min(self.max_peers)
    }
}

/// `[rpc]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// `HOST:PORT` of the JSON-RPC and metrics server.
    pub listen: SocketAddr,
}

/// `[consensus]`: how long to wait before giving up on a phase (they end early on quorum).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    /// Wait for the round's proposal.
    pub timeout_propose_ms: u64,
    /// Wait for a prepare quorum on one block after 2/3 of prepares arrived.
    pub timeout_prepare_ms: u64,
    /// Wait for a precommit quorum on one block after 2/3 of precommits arrived.
    pub timeout_precommit_ms: u64,
    /// Added to every timeout per round, so that slow networks eventually fit.
    pub timeout_delta_ms: u64,
    /// After a start, a validator signs nothing until it has watched the network for
    /// [`crate::node::DOPPELGANGER_HEIGHTS`] heights or this long, whichever comes first, and
    /// stops if it sees its own key sign meanwhile (another process runs it). 0 skips the
    /// watch, like `timed start --skip-doppelganger-check`.
    pub doppelganger_watch_ms: u64,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        let d = timecoin_consensus::Config::default();
        ConsensusConfig {
            timeout_propose_ms: d.timeout_propose_ms,
            timeout_prepare_ms: d.timeout_prepare_ms,
            timeout_precommit_ms: d.timeout_precommit_ms,
            timeout_delta_ms: d.timeout_delta_ms,
            doppelganger_watch_ms: 3_000,
        }
    }
}

impl ConsensusConfig {
    /// The engine configuration.
    pub fn engine(&self) -> timecoin_consensus::Config {
        timecoin_consensus::Config {
            timeout_propose_ms: self.timeout_propose_ms,
            timeout_prepare_ms: self.timeout_prepare_ms,
            timeout_precommit_ms: self.timeout_precommit_ms,
            timeout_delta_ms: self.timeout_delta_ms,
            ..timecoin_consensus::Config::default()
        }
    }
}

/// `[mempool]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Most pending transactions.
    pub max_transactions: usize,
    /// Most pending bytes.
    pub max_bytes: usize,
    /// How long a transaction may wait before it is dropped (it can be sent again).
    pub ttl_secs: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_transactions: 100_000,
            max_bytes: 64 << 20,
            ttl_secs: 3600,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Keep the block bodies (transactions, rewards) of the last this many heights only; 0
    /// keeps every body. Headers, certificates and validator sets are always kept, so
    /// `getlightblock` and `getfinalityproof` answer for every height; `getblock` and
    /// `gettxproof` only for the retained ones, and peers syncing from further back must
    /// find an unpruned node. At least [`MIN_RETAIN_BLOCKS`] when not 0.
    pub retain_blocks: u64,
    /// Write a state snapshot (`DATA_DIR/snapshots/`, the newest two kept) at every height
    /// divisible by this, and serve it to nodes joining with `timed start --state-sync`;
    /// 0 writes none.
    pub snapshot_interval: u64,
    /// Records (unspent outputs and stake records) per snapshot chunk. A joiner fetches each
    /// chunk from any peer that offers the same snapshot, so every node of a network should
    /// keep the default.
    pub snapshot_chunk_records: u32,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            retain_blocks: 0,
            snapshot_interval: 1_000,
            snapshot_chunk_records: 4_096,
        }
    }
}

/// The fewest block bodies a pruning node may keep: a peer that fell behind (a restart, a
/// slow link) fetches the blocks it lacks from nodes like this one, so each block must stay
/// until every peer had a chance to fetch it.
pub const MIN_RETAIN_BLOCKS: u64 = 10;

impl StorageConfig {
    /// Refuses a window too small to serve peers that fell a little behind.
    pub fn check(&self) -> Result<()> {
        if (1..MIN_RETAIN_BLOCKS).contains(&self.retain_blocks) {
            anyhow::bail!(
                "[storage] retain_blocks = {} is too small: a block body must stay until every \
                 peer that fell behind (a restart, a slow link) has fetched it from nodes like \
                 this one; use 0 (keep everything) or at least {MIN_RETAIN_BLOCKS}",
                self.retain_blocks
            );
        }
        if !(1..=MAX_CHUNK_RECORDS).contains(&self.snapshot_chunk_records) {
            anyhow::bail!(
                "[storage] snapshot_chunk_records = {} must be 1 to {MAX_CHUNK_RECORDS}",
                self.snapshot_chunk_records
            );
        }
        Ok(())
    }
}

impl Config {
    /// Loads `HOME/config.toml`, refusing settings that cannot work.
    pub fn load(home: &Path) -> Result<Config> {
        let path = home.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Parses the text of a `config.toml`, refusing settings that cannot work.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.storage.check()?;
        Ok(config)
    }

    /// Writes `HOME/config.toml`.
    pub fn save(&self, home: &Path) -> Result<()> {
        let path = home.join(CONFIG_FILE);
        let text = format!(
            "# timed node configuration; relative paths are relative to this directory\n{}",
            toml::to_string_pretty(self)?
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A path from the config, resolved against the home.
pub fn resolve(home: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        home.join(path)
    }
}

/// `timed show`: prints what other nodes need to reach this one.
pub fn show(home: &Path) -> Result<()> {
    let config = Config::load(home)?;
    let identity = crate::keys::read_node_identity(&resolve(home, &config.node_key))?;
    println!("peer_id: {}", identity.public().to_peer_id());
    if let Some(path) = &config.validator_key {
        let key = crate::keys::read_key(&resolve(home, path))?;
        println!("validator_public_key: {}", key.public());
        println!(
            "reward_address: {}",
            timecoin_types::Address::of(&key.public())
        );
    }
    for addr in &config.p2p.listen {
        println!("listen: {addr}");
    }
    println!("rpc: http://{}/", config.rpc.listen);
    Ok(())
}

/// Options of `timed init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The home directory to create.
    #[arg(long)]
    pub home: PathBuf,
    /// The network's published genesis file (copied into the home).
    #[arg(long)]
    pub genesis: PathBuf,
    /// A peer to start from, `/ip4/…/tcp/…/p2p/<peer id>` or `/dns4/…` (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Where to listen for peers.
    #[arg(long = "p2p-listen", default_value = "/ip4/0.0.0.0/tcp/26656")]
    pub p2p_listen: String,
    /// Where to serve JSON-RPC.
    #[arg(long, default_value = "127.0.0.1:8545")]
    pub rpc_listen: SocketAddr,
    /// Also create a validator key (the node signs once the key is in the validator set).
    #[arg(long)]
    pub validator: bool,
}

/// `timed init`: prepares a home that joins an existing network from its genesis and a
/// bootstrap address.
pub fn init(args: InitArgs) -> Result<()> {
    use timecoin_types::Keypair;
    let genesis = timecoin_ledger::Genesis::load(&args.genesis)?;
    if args.home.join(CONFIG_FILE).exists() {
        anyhow::bail!("{} already has a {CONFIG_FILE}", args.home.display());
    }
    std::fs::create_dir_all(args.home.join("data"))?;
    genesis.save(&args.home.join("genesis.json"))?;
    crate::keys::write_key(&args.home.join("node.key"), &Keypair::generate())?;
    if args.validator {
        crate::keys::write_key(&args.home.join("validator.key"), &Keypair::generate())?;
    }
    let config = Config {
        genesis: "genesis.json".into(),
        data_dir: "data".into(),
        validator_key: args.validator.then(|| "validator.key".into()),
        node_key: "node.key".into(),
        p2p: P2pConfig::new(vec![args.p2p_listen], args.bootstrap),
        rpc: RpcConfig {
            listen: args.rpc_listen,
        },
        consensus: ConsensusConfig::default(),
        mempool: MempoolConfig::default(),
        storage: StorageConfig::default(),
    };
    config.save(&args.home)?;
    println!(
        "initialised {} for chain {}",
        args.home.display(),
        genesis.chain_id
    );
    show(&args.home)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
genesis = "genesis.json"
data_dir = "data"
node_key = "node.key"
[p2p]
listen = ["/ip4/127.0.0.1/tcp/26600"]
[rpc]
listen = "127.0.0.1:26700"
"#;

    #[test]
    fn retain_blocks_defaults_to_keeping_everything_and_refuses_tiny_windows() {
        assert_eq!(Config::parse(MINIMAL).unwrap().storage.retain_blocks, 0);
        let with = |n: u64| Config::parse(&format!("{MINIMAL}[storage]\nretain_blocks = {n}\n"));
        assert_eq!(with(0).unwrap().storage.retain_blocks, 0);
        assert_eq!(with(10).unwrap().storage.retain_blocks, 10);
        assert_eq!(with(100_000).unwrap().storage.retain_blocks, 100_000);
        for n in 1..MIN_RETAIN_BLOCKS {
            let err = format!("{:#}", with(n).unwrap_err());
            assert!(
                err.contains(&format!("retain_blocks = {n} is too small")),
                "{err}"
            );
            assert!(err.contains("until every peer"), "{err}");
        }
        assert!(Config::parse(&format!("{MINIMAL}[storage]\nkeep = 1\n")).is_err());
    }
}
