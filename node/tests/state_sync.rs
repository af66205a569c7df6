//! `timed start --state-sync`: a new node joins four validators (writing a snapshot every 20
//! heights, 8 records per chunk) from a snapshot instead of replaying the chain, past lying
//! peers, the only ones it knows at first (it finds the validators through them): two offer a forged state for a higher height (caught by the state root check, the
//! liars penalised), one serves corrupted chunks (penalised, its chunks fetched elsewhere),
//! one never answers a chunk request (backed off). A second new node finds chunks of an
//! interrupted restore in its data directory, one of them damaged, and a leftover of another
//! snapshot: it keeps the good chunks, fetches the rest, and drops the leftover.

mod adversary;
mod common;

use adversary::snapshot::{spawn_snapshot_liar, ChunkLog, SnapshotLie};
use adversary::{connected, node_addr, node_peer, swarm, Swarm};
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use timecoin_ledger::snapshot::{chunk_file, SnapshotDir};
use timed::config::Config;
use timed::wire::GOSSIP_LIMITS;

const CHAIN_ID: &str = "timecoin-test";
const SNAPSHOT_INTERVAL: u64 = 20;
const CHUNK_RECORDS: u32 = 8;

/// Makes the node of `home` write a snapshot every [`SNAPSHOT_INTERVAL`] heights.
fn write_snapshots(home: &Path) {
    let mut config = Config::load(home).expect("config");
    config.storage.snapshot_interval = SNAPSHOT_INTERVAL;
    config.storage.snapshot_chunk_records = CHUNK_RECORDS;
    config.save(home).expect("config saved");
}

/// The value of the unlabelled metric `name` in a node's `/metrics`.
fn metric(node: &NodeProc, name: &str) -> u64 {
    http_get(node.rpc, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn log_of(node: &NodeProc) -> String {
    std::fs::read_to_string(node.home.join("node.log")).unwrap_or_default()
}

/// Starts `joiner` with `--state-sync`, bootstrapping from `bootstrap` (every validator
/// when empty), and waits until it restored a snapshot and follows the validators' tip; returns the height
/// it restored.
fn join(net: &Testnet, joiner: &mut NodeProc, bootstrap: &[String]) -> u64 {
    let validators: Vec<String> = (0..net.nodes.len())
        .map(|i| node_addr(&net.nodes[i].home, net.base_port + i as u16).to_string())
        .collect();
    joiner.args = vec!["--state-sync".to_string()];
    let bootstrap = if bootstrap.is_empty() {
        &validators[..]
    } else {
        bootstrap
    };
    for addr in bootstrap.iter().cloned() {
        joiner.args.extend(["--bootstrap".to_string(), addr]);
    }
    joiner.start();
    let restored = wait_until(
        "the joiner restores a snapshot",
        Duration::from_secs(90),
        || {
            log_of(joiner)
                .lines()
                .find(|l| l.contains("state sync: state restored"))
                .and_then(|l| {
                    l.split("height=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
        },
        || log_of(joiner),
    );
    let target = net.top(&[0, 1, 2, 3]);
    wait_until(
        "the joiner follows the chain",
        Duration::from_secs(60),
        || (joiner.height()? > target).then_some(()),
        || log_of(joiner),
    );
    restored
}

#[test]
fn new_nodes_join_by_state_sync_past_lying_peers_and_resume_an_interrupted_restore() {
    let mut net = Testnet::generate(4, 0, 35100, 200);
    for node in &net.nodes {
        write_snapshots(&node.home);
    }
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    let dir = net.path();
    let receiver = timed(&["wallet", "new", "--out", &key_path(&dir, "receiver.key")])
        .trim()
        .to_string();
    let txid = wallet_send(
        &key_path(&dir, "faucet.key"),
        &receiver,
        "12.5",
        &format!("http://{}/", net.nodes[1].rpc),
    );
    finalized_height(&net.nodes[1], &txid, || net.logs());
    net.wait_height(
        &[0, 1, 2, 3],
        SNAPSHOT_INTERVAL + 2,
        Duration::from_secs(90),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let oracle = node_peer(&net.nodes[0].home);
    let oracle_addr = node_addr(&net.nodes[0].home, net.base_port);
    let lies = [
        SnapshotLie::ForgedState,
        SnapshotLie::ForgedState,
        SnapshotLie::BadChunks,
        SnapshotLie::Stall,
    ];
    let liars: Vec<(Swarm, ChunkLog)> = rt.block_on(async {
        let mut liars = Vec::new();
        for lie in lies {
            let (s, events) = swarm(CHAIN_ID, 0, vec![oracle_addr.clone()], 8, GOSSIP_LIMITS).await;
            assert!(connected(&s.net, &[oracle], Duration::from_secs(20)).await);
            let log = spawn_snapshot_liar(&s.net, events, CHAIN_ID.into(), oracle, lie);
            liars.push((s, log));
        }
        liars
    });
    let liar_addrs: Vec<String> = liars.iter().map(|(s, _)| s.addr.to_string()).collect();

    let mut joiner = init_follower(&net, "joiner", &[]);
    let restored = join(&net, &mut joiner, &liar_addrs);
    let log = log_of(&joiner);
    assert!(
        restored >= SNAPSHOT_INTERVAL && restored.is_multiple_of(SNAPSHOT_INTERVAL),
        "restored {restored}"
    );
    assert!(
        log.contains("state sync: snapshot refused") && log.contains("not to"),
        "the forged state was refused by its root:\n{log}"
    );
    assert!(
        log.contains("served a chunk that does not match the snapshot it offered"),
        "{log}"
    );
    let chunk_requests = |k: usize| liars[k].1.lock().expect("chunk log").len();
    assert!(
        chunk_requests(2) >= 1,
        "the corrupting liar was asked for a chunk"
    );
    // Penalised: the two forgers (for the state) and the corrupter (for its chunk).
    assert!(
        metric(&joiner, "timecoin_net_penalized_peers_total") >= 3,
        "{log}"
    );
    // It replayed nothing up to the snapshot: it holds no body below it, and its balances
    // are the validators'.
    let err = joiner.rpc("getblock", json!([restored / 2])).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("pruned"), "{err}");
    assert!(
        metric(&joiner, "timed_synced_blocks_total") < joiner.height().unwrap() - restored + 50
    );
    let balance =
        |node: &NodeProc| node.rpc("getbalance", json!([receiver])).unwrap()["balance"].clone();
    assert_eq!(balance(&joiner), balance(&net.nodes[0]));
    assert_eq!(
        joiner.rpc("getblockhash", json!([restored + 1])).unwrap(),
        net.nodes[0]
            .rpc("getblockhash", json!([restored + 1]))
            .unwrap()
    );
    println!(
        "state sync past liars: restored height {restored}; chunk requests to the forgers {} and {}, the corrupter {}, the staller {}; {} peers penalised",
        chunk_requests(0),
        chunk_requests(1),
        chunk_requests(2),
        chunk_requests(3),
        metric(&joiner, "timecoin_net_penalized_peers_total"),
    );
    drop(liars);

    // A second node, whose restore was interrupted: the newest snapshot's chunks, one of them
    // damaged, and a leftover of another snapshot. Started early in a snapshot's interval so
    // that the same snapshot is still the newest when it asks.
    let mut second = init_follower_on(&net, "second", 51, &[]);
    wait_until(
        "early in a snapshot interval",
        Duration::from_secs(60),
        || {
            let tip = net.nodes[0].height()?;
            (tip % SNAPSHOT_INTERVAL >= 2 && tip % SNAPSHOT_INTERVAL < 6).then_some(())
        },
        || net.logs(),
    );
    let snapshots = SnapshotDir::new(&net.nodes[0].home.join("data/snapshots"));
    let newest = *snapshots.heights().unwrap().last().unwrap();
    let manifest = snapshots.manifest(newest).unwrap();
    let interrupted = second
        .home
        .join("data/state-sync")
        .join(manifest.id().to_string());
    std::fs::create_dir_all(&interrupted).unwrap();
    let kept = manifest.chunks.len() as u32 - 2;
    for index in 0..kept {
        std::fs::write(
            interrupted.join(chunk_file(index)),
            snapshots.chunk(newest, index).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(interrupted.join(chunk_file(0)), b"damaged").unwrap();
    let leftover = second.home.join("data/state-sync/leftover");
    std::fs::create_dir_all(&leftover).unwrap();
    assert_eq!(join(&net, &mut second, &[]), newest);
    let log = log_of(&second);
    assert!(
        log.contains(&format!("chunks={} of={}", kept - 1, manifest.chunks.len())),
        "resumed with the good chunks:\n{log}"
    );
    assert!(
        !second.home.join("data/state-sync").exists(),
        "the restore's files are gone"
    );
    assert_eq!(balance(&second), balance(&net.nodes[0]));
}
