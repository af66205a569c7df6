//! `timed testnet`: everything a local multi-validator network needs, in one directory.

use crate::config::{Config, ConsensusConfig, MempoolConfig, P2pConfig, RpcConfig};
use crate::keys::{read_node_identity, write_key};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use timecoin_ledger::{Genesis, GenesisValidator, TxOutput};
use timecoin_types::{Address, Keypair, PublicKey, COIN, MAX_CHAIN_ID_LEN};

/// Collateral of each generated validator: the Bronze level.
const VALIDATOR_COLLATERAL: u64 = 1_000 * COIN;
/// What the faucet key holds at genesis.
const FAUCET_FUNDS: u64 = 1_000_000 * COIN;
/// Smallest fee rate, in base units per byte of the encoded transaction: a one-input,
/// two-output transfer (about 250 bytes) pays at least 0.000025 TIME.
const MIN_FEE_PER_BYTE: u64 = 10;
/// Ports inside the docker-compose containers.
const CONTAINER_P2P_PORT: u16 = 26656;
const CONTAINER_RPC_PORT: u16 = 8545;

/// Options of `timed testnet`.
#[derive(Args, Debug)]
pub struct TestnetArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Output directory (created; must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Node i listens for peers on P+i and serves RPC on P+100+i (loopback).
    #[arg(long, default_value_t = 26600)]
    pub base_port: u16,
    /// Slot length: height h is proposed no earlier than genesis time + h × this.
    #[arg(long, default_value_t = 1000)]
    pub block_interval_ms: u64,
    /// Chain id, part of every signature and topic name.
    #[arg(long, default_value = "timecoin-devnet")]
    pub chain_id: String,
    /// Also write this many non-validator (full node) homes after the validators.
    #[arg(long, default_value_t = 0)]
    pub full_nodes: usize,
}

/// A generated validator named `name` with consensus key `key`: the Bronze collateral, its
/// rewards paid to its key's own address.
pub(crate) fn genesis_validator(name: String, key: PublicKey) -> GenesisValidator {
    GenesisValidator::new(name, key, VALIDATOR_COLLATERAL)
}

/// The genesis of a generated testnet of `validators`: the faucet address `faucet` holds every
/// coin, with the testnet's minimum fee rate and the default minimum output and unbonding
/// period.
pub(crate) fn genesis(
    chain_id: String,
    genesis_time_ms: u64,
    block_interval_ms: u64,
    validators: Vec<GenesisValidator>,
    faucet: Address,
) -> Genesis {
    let funds = TxOutput {
        address: faucet,
        amount: FAUCET_FUNDS,
    };
    Genesis {
        min_fee_per_byte: MIN_FEE_PER_BYTE,
        ..Genesis::new(
            chain_id,
            genesis_time_ms,
            block_interval_ms,
            validators,
            vec![funds],
        )
    }
}

struct Home {
    name: String,
    dir: PathBuf,
    peer_id: String,
    p2p_port: u16,
}

/// Runs `timed testnet`.
pub fn run(args: TestnetArgs) -> Result<()> {
    let total = args.validators + args.full_nodes;
    if args.validators == 0 || total > 100 {
        bail!("--validators must be at least 1, and validators + full nodes at most 100");
    }
    if args.chain_id.is_empty() || args.chain_id.len() > MAX_CHAIN_ID_LEN {
        bail!("--chain-id must be 1 to {MAX_CHAIN_ID_LEN} bytes");
    }
    if usize::from(args.base_port) + 100 + total > usize::from(u16::MAX) {
        bail!("--base-port leaves no room for {total} nodes");
    }
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!("{} exists and is not empty", args.out.display());
    }
    std::fs::create_dir_all(&args.out)?;

    let mut validators = Vec::new();
    let mut homes = Vec::new();
    for i in 0..total {
        let name = format!("node{i}");
        let dir = args.out.join(&name);
        std::fs::create_dir_all(dir.join("data"))?;
        let node_key = Keypair::generate();
        write_key(&dir.join("node.key"), &node_key)?;
        share_key_with_group(&dir.join("node.key"))?;
        if i < args.validators {
            let key = Keypair::generate();
            write_key(&dir.join("validator.key"), &key)?;
            share_key_with_group(&dir.join("validator.key"))?;
            validators.push(genesis_validator(name.clone(), key.public()));
        }
        let peer_id = read_node_identity(&dir.join("node.key"))?
            .public()
            .to_peer_id()
            .to_string();
        homes.push(Home {
            name,
            dir,
            peer_id,
            p2p_port: args.base_port + i as u16,
        });
    }

    let faucet = Keypair::generate();
    write_key(&args.out.join("faucet.key"), &faucet)?;
    let genesis = genesis(
        args.chain_id.clone(),
        now_ms() / 1000 * 1000,
        args.block_interval_ms,
        validators,
        Address::of(&faucet.public()),
    );
    genesis.validate().context("generated genesis is invalid")?;
    genesis.save(&args.out.join("genesis.json"))?;

    for (i, home) in homes.iter().enumerate() {
        genesis.save(&home.dir.join("genesis.json"))?;
        let bootstrap = homes
            .iter()
            .filter(|other| other.name != home.name)
            .map(|other| {
                format!(
                    "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                    other.p2p_port, other.peer_id
                )
            })
            .collect();
        let config = Config {
            genesis: "genesis.json".into(),
            data_dir: "data".into(),
            validator_key: (i < args.validators).then(|| "validator.key".into()),
            node_key: "node.key".into(),
            p2p: P2pConfig::new(
                vec![format!("/ip4/127.0.0.1/tcp/{}", home.p2p_port)],
                bootstrap,
            ),
            rpc: RpcConfig {
                listen: ([127, 0, 0, 1], args.base_port + 100 + i as u16).into(),
            },
            consensus: ConsensusConfig::default(),
            mempool: MempoolConfig::default(),
            storage: Default::default(),
        };
        config.save(&home.dir)?;
    }

    std::fs::write(
        args.out.join("docker-compose.yml"),
        docker_compose(&homes, args.base_port, group_of(&args.out)?),
    )?;
    std::fs::write(
        args.out.join("network.html"),
        network_page(&homes, args.validators, args.base_port, &args.chain_id),
    )?;
    println!(
        "wrote a {}-validator testnet (chain id {}) to {}",
        args.validators,
        args.chain_id,
        args.out.display()
    );
    println!("faucet address: {}", Address::of(&faucet.public()));
    for (i, home) in homes.iter().enumerate() {
        println!(
            "{}: p2p 127.0.0.1:{}  rpc http://127.0.0.1:{}/",
            home.name,
            home.p2p_port,
            args.base_port + 100 + i as u16
        );
    }
    Ok(())
}

/// Mode of the key files in generated homes: owner and group may read them, others not. The
/// compose file runs each container as `10001:<group of the output directory>`, so the node can
/// read the keys through a read-only bind mount without them being world-readable.
#[cfg(unix)]
fn share_key_with_group(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

#[cfg(not(unix))]
fn share_key_with_group(_path: &std::path::Path) -> Result<()> {
    Ok(())
}

/// The numeric group the compose containers run with: the group owning the output directory.
#[cfg(unix)]
fn group_of(path: &std::path::Path) -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.gid())
}

#[cfg(not(unix))]
fn group_of(_path: &std::path::Path) -> Result<u32> {
    Ok(0)
}

/// `network.html`: one page listing every node of the testnet (role, p2p and RPC ports, a
/// link to its dashboard) with each node's live dashboard beside it. The RPC ports are the
/// same for local processes and for the compose file's containers (published on loopback).
/// The page itself fetches nothing: it embeds each node's own `/dashboard` in a frame.
fn network_page(homes: &[Home], validators: usize, base_port: u16, chain_id: &str) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    let mut frames = String::new();
    for (i, home) in homes.iter().enumerate() {
        let rpc = base_port + 100 + i as u16;
        let role = if i < validators {
            "validator"
        } else {
            "full node"
        };
        let name = escape(&home.name);
        let _ = writeln!(
            rows,
            "<tr><td>{name}</td><td>{role}</td><td>{p2p}</td><td>http://127.0.0.1:{rpc}/</td>\
             <td><a href=\"http://127.0.0.1:{rpc}/dashboard\">dashboard</a></td></tr>",
            p2p = home.p2p_port,
        );
        let _ = writeln!(
            frames,
            "<figure><figcaption>{name} ({role})</figcaption>\
             <iframe src=\"http://127.0.0.1:{rpc}/dashboard\" title=\"{name}\"></iframe></figure>"
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{chain} testnet</title><style>\
         body{{margin:0;padding:12px 20px;font:14px system-ui,sans-serif;background:#0f1419;color:#e6e6e6}}\
         a{{color:#58a6ff}}table{{border-collapse:collapse;margin-bottom:16px}}\
         td,th{{padding:3px 10px;border-bottom:1px solid #2a333d;text-align:left}}\
         main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:12px}}\
         figure{{margin:0}}figcaption{{color:#8a96a3;margin-bottom:4px}}\
         iframe{{width:100%;height:760px;border:1px solid #2a333d;border-radius:8px}}\
         </style></head><body>\n<h1>{chain}: {n} nodes</h1>\n\
         <table><tr><th>node</th><th>role</th><th>p2p port</th><th>RPC</th><th></th></tr>\n{rows}</table>\n\
         <main>\n{frames}</main>\n</body></html>\n",
        chain = escape(chain_id),
        n = homes.len(),
    )
}

/// A compose file running every home in a container of the `timed:local` image (see
/// `testnet/Dockerfile`, built by `scripts/docker-image.sh`) on one private network: each home
/// is bind-mounted read-only at `/home/timed`, the node writes only to its named volume at
/// `/data`, and RPC is published on loopback at the port the home's own config uses. Works with
/// `docker-compose` (v1) and `docker compose` (v2). `testnet/docker-compose.yml` is the same file
/// for 4 validators and 1 full node, with the peer ids and group taken from `testnet/.env`.
fn docker_compose(homes: &[Home], base_port: u16, gid: u32) -> String {
    let mut out = String::from(
        "# Generated by `timed testnet`. Build the image first (scripts/docker-image.sh), then\n\
         # run `docker-compose up -d` (or `docker compose up -d`) in this directory.\n\
         # Homes are mounted read-only (key files are mode 0640, readable by the container's\n\
         # group); chain data lives in the named volumes; RPC is published on 127.0.0.1 only.\n\
         services:\n",
    );
    for (i, home) in homes.iter().enumerate() {
        let _ = write!(
            out,
            "  {name}:\n    image: timed:local\n    hostname: {name}\n    user: \"10001:{gid}\"\n    read_only: true\n    command:\n      - start\n      - --home\n      - /home/timed\n      - --data-dir\n      - /data\n      - --p2p-listen\n      - /ip4/0.0.0.0/tcp/{CONTAINER_P2P_PORT}\n      - --rpc-listen\n      - 0.0.0.0:{CONTAINER_RPC_PORT}\n",
            name = home.name
        );
        for other in homes.iter().filter(|o| o.name != home.name) {
            let _ = write!(
                out,
                "      - --bootstrap\n      - /dns4/{}/tcp/{CONTAINER_P2P_PORT}/p2p/{}\n",
                other.name, other.peer_id
            );
        }
        let _ = write!(
            out,
            "    environment:\n      RUST_LOG: ${{RUST_LOG:-info}}\n    volumes:\n      - ./{name}:/home/timed:ro\n      - {name}-data:/data\n    ports:\n      - \"127.0.0.1:{rpc}:{CONTAINER_RPC_PORT}\"\n    networks:\n      - timednet\n    stop_signal: SIGTERM\n    stop_grace_period: 10s\n",
            name = home.name,
            rpc = base_port + 100 + i as u16
        );
    }
    out.push_str("networks:\n  timednet: {}\nvolumes:\n");
    for home in homes {
        let _ = writeln!(out, "  {}-data: {{}}", home.name);
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
