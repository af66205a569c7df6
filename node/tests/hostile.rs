//! Hostile peers against real `timed` processes. Each test starts a fresh testnet of four
//! validators on loopback, attacks it with the adversary of `adversary/` (real swarms, real
//! wire formats, real signatures) and asserts that the chain keeps finalizing on every honest
//! node, that they agree, that no process exits, that honest peers keep their gossip scores
//! above the graylist threshold, and that memory stays bounded. Each prints its figures.

mod adversary;
mod common;

use adversary::*;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timecoin_ledger::{OutPoint, Transaction, TxOutput};
use timecoin_net::{NetEvents, PeerId};
use timecoin_types::{codec, Address, Hash256, Keypair};
use timed::config::Config;
use timed::wire::GOSSIP_LIMITS;

/// Slot length of every scenario's chain.
const INTERVAL_MS: u64 = 200;
/// The chain id `Testnet::generate` uses.
const CHAIN_ID: &str = "timecoin-test";
/// Gossipsub ignores peers scoring below this; honest peers must never get there.
const GRAYLIST: f64 = -80.0;
/// Resident memory no node may exceed during an attack (nodes idle at about 30 MiB and peak
/// near 70 MiB while four-megabyte proposals arrive).
const RSS_BOUND_KIB: u64 = 256 * 1024;
/// Blocks every honest node must finalize after an attack started.
const MARGIN: u64 = 10;

/// A Tokio runtime for the adversary (the harness itself is blocking).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Lowest finalized height among `which`.
fn bottom(net: &Testnet, which: &[usize]) -> u64 {
    which
        .iter()
        .map(|&i| net.nodes[i].height().unwrap_or(0))
        .min()
        .unwrap_or(0)
}

/// Rewrites the `config.toml` of `home`.
fn edit_config(home: &std::path::Path, edit: impl FnOnce(&mut Config)) {
    let mut config = Config::load(home).expect("config");
    edit(&mut config);
    config.save(home).expect("config saved");
}

/// The sum of the values of the metric lines of `name` that carry every label of `labels`.
fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A node's `/metrics`.
fn metrics_of(node: &NodeProc) -> String {
    http_get(node.rpc, "/metrics")
}

/// A node's gossip verdict counters (`timed_gossip_messages_total`) by (kind, verdict).
fn verdicts(node: &NodeProc) -> BTreeMap<(String, String), u64> {
    let text = metrics_of(node);
    let mut out = BTreeMap::new();
    for kind in ["proposal", "prepare", "precommit", "tx"] {
        for verdict in ["accepted", "ignored", "rejected"] {
            let n = metric(
                &text,
                "timed_gossip_messages_total",
                &[("kind", kind), ("verdict", verdict)],
            );
            out.insert((kind.to_string(), verdict.to_string()), n);
        }
    }
    out
}

/// `after - before` per key, keeping only the non-zero ones.
fn delta(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                format!("{}/{}", k.0, k.1),
                v - before.get(k).copied().unwrap_or(0),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// An attack under way on the `honest` nodes, with what was measured as it began.
struct Attack {
    honest: Vec<usize>,
    rss: RssWatch,
    before: Vec<BTreeMap<(String, String), u64>>,
    start: u64,
    started: Instant,
}

/// What an attack did, once every honest node survived it (see [`assert_survived`]).
struct Outcome {
    /// How long the attack took, in seconds.
    secs: f64,
    /// The highest honest height when it began and when it ended.
    start: u64,
    end: u64,
    /// The highest peak RSS of an honest node, in MiB.
    peak_mib: u64,
    /// Each honest node's gossip verdicts during the attack.
    seen: Vec<BTreeMap<String, u64>>,
}

impl Attack {
    fn begin(net: &Testnet, honest: &[usize]) -> Attack {
        Attack {
            honest: honest.to_vec(),
            rss: RssWatch::start(net),
            before: honest.iter().map(|&i| verdicts(&net.nodes[i])).collect(),
            start: net.top(honest),
            started: Instant::now(),
        }
    }

    /// Ends the measurement and asserts that every honest node survived.
    fn end(self, net: &mut Testnet) -> Outcome {
        let secs = self.started.elapsed().as_secs_f64();
        let end = net.top(&self.honest);
        let peak_mib = assert_survived(net, &self.honest, end, self.rss);
        let seen = self
            .honest
            .iter()
            .zip(&self.before)
            .map(|(&i, b)| delta(b, &verdicts(&net.nodes[i])))
            .collect();
        Outcome {
            secs,
            start: self.start,
            end,
            peak_mib,
            seen,
        }
    }
}

impl Outcome {
    /// Blocks finalized during the attack (by the highest honest node).
    fn blocks(&self) -> u64 {
        self.end - self.start
    }
}

/// A 4-validator testnet whose nodes log every vote they accept (`timed::votes`), for the
/// audits of [`accepted_votes`].
fn vote_audited_testnet(base_port: u16) -> Testnet {
    let mut net = Testnet::generate(4, 0, base_port, INTERVAL_MS);
    for node in &mut net.nodes {
        node.log_filter = Some("info,timed::votes=debug".into());
    }
    net
}

/// The audit lines of the votes `node` accepted, one per accept.
fn accepted_votes(node: &NodeProc) -> Vec<String> {
    let log = std::fs::read_to_string(node.home.join("node.log")).expect("log");
    log.lines()
        .filter(|l| l.contains("timed::votes"))
        .map(str::to_string)
        .collect()
}

/// Starts every node of `net`, waits for height 2, and for each of `swarms` to be connected
/// to every node.
fn start_under_watch(net: &mut Testnet, rt: &tokio::runtime::Runtime, swarms: &[&Swarm]) {
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    let ids = peer_ids(net);
    rt.block_on(async {
        for swarm in swarms {
            assert!(connected(&swarm.net, &ids, Duration::from_secs(20)).await);
        }
    });
}

/// The `k`th adversary swarm of `net`, at the protocol's limits, dialling every node.
fn attacker(rt: &tokio::runtime::Runtime, net: &Testnet, k: u16) -> (Swarm, NetEvents) {
    rt.block_on(swarm(
        CHAIN_ID,
        adversary_port(net, k),
        addrs(net),
        8,
        GOSSIP_LIMITS,
    ))
}

/// The peer id of every node of `net`.
fn peer_ids(net: &Testnet) -> Vec<PeerId> {
    net.nodes.iter().map(|n| node_peer(&n.home)).collect()
}

/// The p2p address of every node of `net`.
fn addrs(net: &Testnet) -> Vec<timecoin_net::Multiaddr> {
    net.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| node_addr(&n.home, net.base_port + i as u16))
        .collect()
}

/// A loopback port inside the range `Testnet::generate` checked free, away from the nodes'.
fn adversary_port(net: &Testnet, k: u16) -> u16 {
    net.base_port + 40 + k
}

/// Samples the resident memory of the nodes every 100 ms while it lives, keeping each
/// node's peak.
struct RssWatch {
    peaks: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(net: &Testnet) -> RssWatch {
        let pids: Vec<Option<u32>> = net.nodes.iter().map(NodeProc::pid).collect();
        let peaks = Arc::new(Mutex::new(vec![0u64; pids.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peaks.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(kib) = pid.and_then(rss_kib_of) {
                        let mut peaks = p.lock().expect("rss peaks");
                        peaks[i] = peaks[i].max(kib);
                    }
                }
                // The sampling interval of the watch.
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssWatch {
            peaks,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns each node's peak, in KiB.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let peaks = self.peaks.lock().expect("rss peaks").clone();
        peaks
    }
}

/// What every scenario asserts once its attack is over: every node of `honest` finalized
/// `MARGIN` blocks past `attack_start` (the highest honest height when the attack began) and
/// they agree on every block; no process exited; in every honest node's view, every honest
/// peer scores above the graylist threshold; no node's memory peaked above the bound.
/// Returns the peak RSS of each honest node in MiB.
fn assert_survived(net: &mut Testnet, honest: &[usize], attack_start: u64, rss: RssWatch) -> u64 {
    net.wait_height(honest, attack_start + MARGIN, Duration::from_secs(60));
    let agreed = bottom(net, honest);
    net.assert_agree(honest, agreed);
    for &i in honest {
        assert!(net.nodes[i].is_running(), "node{i} exited");
    }
    let ids = peer_ids(net);
    let honest_ids: HashSet<String> = honest.iter().map(|&i| ids[i].to_base58()).collect();
    for &i in honest {
        let peers = net.nodes[i].rpc("getpeerinfo", json!([])).expect("peers");
        for peer in peers.as_array().expect("peer list") {
            let id = peer["peer_id"].as_str().unwrap_or_default();
            if let (true, Some(score)) = (honest_ids.contains(id), peer["gossip_score"].as_f64()) {
                assert!(
                    score > GRAYLIST,
                    "node{i} scores honest peer {id} at {score}"
                );
            }
        }
    }
    let peaks = rss.finish();
    for &i in honest {
        assert!(
            peaks[i] < RSS_BOUND_KIB,
            "node{i} peaked at {} KiB of RSS (bound {RSS_BOUND_KIB} KiB)",
            peaks[i]
        );
    }
    honest.iter().map(|&i| peaks[i]).max().unwrap_or(0) / 1024
}

/// Coins of the faucet split into many outputs, so that independent transfers can be sent
/// one after another without waiting for each other.
struct Faucet {
    key: Keypair,
    coins: VecDeque<(OutPoint, u64)>,
}

/// Fee of every transfer: well above the testnet's minimum for these sizes.
const FEE: u64 = 1_000_000;

impl Faucet {
    /// Splits the faucet's coin into `n` coins of 10 TIME (the transfer is sent to node
    /// `via` and waited for until finalized).
    fn split(net: &Testnet, via: usize, n: u64) -> Faucet {
        let key = timed::keys::read_key(&net.path().join("faucet.key")).expect("faucet key");
        let me = Address::of(&key.public());
        let node = &net.nodes[via];
        let unspent = node
            .rpc("listunspent", json!([me.to_string()]))
            .expect("listunspent");
        let coin = &unspent.as_array().expect("coins")[0];
        let outpoint = OutPoint {
            txid: Hash256::from_hex(coin["txid"].as_str().expect("txid")).expect("hash"),
            index: coin["index"].as_u64().expect("index") as u32,
        };
        let amount = coin["amount"].as_u64().expect("amount");
        let piece = 10 * timecoin_types::COIN;
        let mut outputs: Vec<TxOutput> = (0..n)
            .map(|_| TxOutput {
                address: me,
                amount: piece,
            })
            .collect();
        outputs.push(TxOutput {
            address: me,
            amount: amount - n * piece - FEE,
        });
        let tx = Transaction::build_signed(CHAIN_ID, vec![(outpoint, &key)], outputs);
        let txid = send(node, &tx);
        // Finalized on every validator the transfers go to, or one a block behind would
        // refuse a transfer of the new coins as spending an unknown output.
        wait_until(
            "the faucet's split is finalized on validators 0-2",
            Duration::from_secs(60),
            || {
                net.nodes[..3]
                    .iter()
                    .all(|n| {
                        n.rpc("gettransaction", json!([txid.to_string()]))
                            .is_ok_and(|t| t["status"] == "finalized")
                    })
                    .then_some(())
            },
            || net.logs(),
        );
        Faucet {
            key,
            coins: (0..n as u32)
                .map(|index| (OutPoint { txid, index }, piece))
                .collect(),
        }
    }

    /// Sends one coin to a fresh address through `node`; false once the coins are spent.
    fn transfer(&mut self, node: &NodeProc) -> bool {
        let Some((outpoint, amount)) = self.coins.pop_front() else {
            return false;
        };
        let to = Address::of(&Keypair::generate().public());
        let outputs = vec![TxOutput {
            address: to,
            amount: amount - FEE,
        }];
        send(
            node,
            &Transaction::build_signed(CHAIN_ID, vec![(outpoint, &self.key)], outputs),
        );
        true
    }
}

/// Submits `tx` through `node`'s RPC.
fn send(node: &NodeProc, tx: &Transaction) -> Hash256 {
    let answer = node
        .rpc(
            "sendrawtransaction",
            json!([hex::encode(codec::encode(tx))]),
        )
        .unwrap_or_else(|e| panic!("transaction refused: {e}"));
    Hash256::from_hex(answer.as_str().expect("txid")).expect("hash")
}

/// The ids of the peers `node` is connected to.
fn peers_of(node: &NodeProc) -> Vec<String> {
    node.rpc("getpeerinfo", json!([]))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
        .collect()
}

/// The round each height of `from..=to` was decided in, as `node` stored it.
fn rounds(node: &NodeProc, from: u64, to: u64) -> Vec<u64> {
    (from..=to)
        .map(|h| {
            let block: Value = node.rpc("getblock", json!([h])).expect("block");
            block["round"].as_u64().expect("round")
        })
        .collect()
}

/// Scenario 1: validator 3 is eclipsed behind a relay that, before relaying each proposal
/// whose block carries transactions, publishes a copy with one input signature byte flipped.
/// Validator 3 rejects the copies and keeps finalizing with the others.
#[test]
fn signature_malleated_proposals_to_an_eclipsed_validator() {
    // Slower slots than the other scenarios: validator 3 hears everything through one relay,
    // and a proposal only reaches the body check (where a malleated copy is rejected) if it
    // arrives before validator 3 has moved past its height; on a loaded machine, at 200 ms
    // slots, it often arrives late and is ignored as stale instead.
    let mut net = Testnet::generate(4, 0, 33100, 5 * INTERVAL_MS);
    let rt = runtime();
    let ids = peer_ids(&net);
    let (relay, events) = rt.block_on(swarm(
        CHAIN_ID,
        adversary_port(&net, 0),
        addrs(&net),
        16,
        GOSSIP_LIMITS,
    ));
    // Validator 3's only way out is the relay; nobody else knows it.
    edit_config(&net.nodes[3].home, |c| {
        c.p2p.bootstrap = vec![relay.addr.to_string()];
        c.p2p.max_peers = 1;
    });
    let victim = ids[3].to_base58();
    for node in &net.nodes[..3] {
        edit_config(&node.home, |c| {
            c.p2p.bootstrap.retain(|b| !b.contains(&victim))
        });
    }
    let counts = {
        let _guard = rt.enter();
        spawn_relay(&relay, events, ids[..3].to_vec())
    };
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    assert_eq!(
        peers_of(&net.nodes[3]),
        vec![relay.id().to_base58()],
        "validator 3 is eclipsed"
    );

    let rss = RssWatch::start(&net);
    let attack_start = net.top(&[0, 1, 2, 3]);
    let before = verdicts(&net.nodes[3]);
    let started = Instant::now();
    let mut faucet = Faucet::split(&net, 0, 30);
    let mut sent = 1;
    while faucet.transfer(&net.nodes[(sent % 3) as usize]) {
        sent += 1;
        // Load shaping: one transfer every few slots, so that many blocks carry one.
        std::thread::sleep(Duration::from_millis(300));
    }
    let attack_end = net.top(&[0, 1, 2]);
    let peak = assert_survived(&mut net, &[0, 1, 2, 3], attack_end, rss);
    let seen = delta(&before, &verdicts(&net.nodes[3]));
    let malleated = counts.malleated.load(Ordering::Relaxed);
    let with_txs = (attack_start + 1..=bottom(&net, &[0, 1, 2, 3]))
        .filter(|&h| {
            let block = net.nodes[3].rpc("getblock", json!([h])).expect("block");
            !block["transactions"].as_array().expect("txs").is_empty()
        })
        .count();
    println!(
        "scenario 1 (malleated proposals to an eclipsed validator): {sent} transfers, {with_txs} blocks with transactions, {malleated} malleated proposals published, {} messages relayed, {} sync requests proxied; validator 3 finalized {} blocks in {:.1} s; its verdicts {seen:?}; peak RSS {peak} MiB",
        counts.relayed.load(Ordering::Relaxed),
        counts.proxied.load(Ordering::Relaxed),
        net.nodes[3].height().unwrap_or(0) - attack_start,
        started.elapsed().as_secs_f64(),
    );
    assert!(malleated > 0, "the relay malleated no proposal");
    assert!(
        seen.get("proposal/rejected").copied().unwrap_or(0) > 0,
        "validator 3 rejected no proposal: {seen:?}"
    );
}

/// Scenario 2: thousands of votes and proposals for the next two heights, signed by keys of
/// no validator, are refused or ignored; the honest next-height votes still count.
#[test]
fn junk_for_the_next_heights_from_non_members() {
    let mut net = vote_audited_testnet(33300);
    let rt = runtime();
    let ids = peer_ids(&net);
    let (near, near_events) = attacker(&rt, &net, 0);
    let (far, far_events) = attacker(&rt, &net, 1);
    {
        let _guard = rt.enter();
        spawn_drain(&near.net, near_events);
        spawn_drain(&far.net, far_events);
    }
    start_under_watch(&mut net, &rt, &[&near, &far]);

    let attack = Attack::begin(&net, &[0, 1, 2, 3]);
    let (sent_near, sent_far) = rt.block_on(async {
        tokio::join!(
            flood_junk(&near.net, CHAIN_ID, ids[0], 1, 3000),
            flood_junk(&far.net, CHAIN_ID, ids[1], 2, 3000),
        )
    });
    let outcome = attack.end(&mut net);
    let during = rounds(&net.nodes[0], outcome.start + 1, outcome.end);
    let in_round_0 = during.iter().filter(|&&r| r == 0).count();
    println!(
        "scenario 2 (junk for h+1 and h+2 from non-members): {sent_near} messages for h+1 and {sent_far} for h+2 in {:.1} s; {} blocks finalized meanwhile, {in_round_0} of them in round 0; verdicts per node {:?}; peak RSS {} MiB",
        outcome.secs,
        during.len(),
        outcome.seen,
        outcome.peak_mib
    );
    assert!(
        during.len() as f64 >= 0.5 * outcome.secs * 1000.0 / INTERVAL_MS as f64,
        "the chain slowed down under the junk: {} blocks in {:.1} s",
        during.len(),
        outcome.secs
    );
    assert!(
        in_round_0 * 10 >= during.len() * 9,
        "next-height votes were lost: rounds {during:?}"
    );
    // Junk for h+1 is rejected, and its sender soon graylisted (gossipsub then drops the rest
    // before the intake); junk for h+2 is ignored until the node finishes h, when it becomes
    // junk for the next height and is rejected too. Either way some of it reached the intake.
    for (i, s) in outcome.seen.iter().enumerate() {
        let rejected: u64 = s
            .iter()
            .filter(|(k, _)| k.ends_with("/rejected"))
            .map(|(_, v)| v)
            .sum();
        assert!(rejected > 0, "node{i} rejected none of the junk: {s:?}");
    }
    // No vote of a non-member was ever accepted (the audit log has one line per accept).
    let members: HashSet<String> = net
        .nodes
        .iter()
        .filter_map(NodeProc::validator_key)
        .collect();
    for (i, node) in net.nodes.iter().enumerate() {
        for line in accepted_votes(node) {
            assert!(
                members
                    .iter()
                    .any(|m| line.contains(&format!("validator={m}"))),
                "node{i} accepted a vote of a non-member: {line}"
            );
        }
    }
}

/// Scenario 3: thousands of real votes replayed under fresh nonces are ignored as duplicates
/// and never accepted twice.
#[test]
fn replayed_votes_under_fresh_nonces() {
    let mut net = vote_audited_testnet(33500);
    let rt = runtime();
    let (replayer, events) = attacker(&rt, &net, 0);
    let captured = {
        let _guard = rt.enter();
        spawn_capture(&replayer, events)
    };
    start_under_watch(&mut net, &rt, &[&replayer]);

    let attack = Attack::begin(&net, &[0, 1, 2, 3]);
    let sent = rt.block_on(replay_votes(&replayer.net, &captured, 6000));
    let outcome = attack.end(&mut net);
    println!(
        "scenario 3 (replayed votes under fresh nonces): {sent} replays in {:.1} s; {} blocks finalized meanwhile; verdicts per node {:?}; peak RSS {} MiB",
        outcome.secs,
        outcome.blocks(),
        outcome.seen,
        outcome.peak_mib
    );
    for (i, s) in outcome.seen.iter().enumerate() {
        let ignored = s.get("prepare/ignored").copied().unwrap_or(0)
            + s.get("precommit/ignored").copied().unwrap_or(0);
        assert!(
            ignored * 2 >= sent,
            "node{i} ignored only {ignored} of {sent} replays: {s:?}"
        );
        assert!(
            !s.keys().any(|k| k.ends_with("/rejected")),
            "node{i} rejected a replay of a valid vote: {s:?}"
        );
    }
    // Every vote a node accepted, it accepted once (the audit log has one line per accept).
    for (i, node) in net.nodes.iter().enumerate() {
        let mut accepted = HashSet::new();
        let mut lines = 0;
        for line in accepted_votes(node) {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            let slot = (
                field("validator"),
                field("height"),
                field("round"),
                field("kind"),
            );
            assert!(
                accepted.insert(slot.clone()),
                "node{i} accepted a vote twice: {slot:?}"
            );
            lines += 1;
        }
        assert!(lines > 40, "node{i} logged only {lines} accepted votes");
    }
}

/// Scenario 5: a hundred swarms with fresh peer ids dial every validator from one address;
/// the validators refuse most of them and stay connected to each other.
#[test]
fn a_hundred_connections_with_fresh_peer_ids() {
    let mut net = Testnet::running(4, 33700, INTERVAL_MS, 2);
    let rt = runtime();
    let ids = peer_ids(&net);

    let attack = Attack::begin(&net, &[0, 1, 2, 3]);
    let targets = addrs(&net);
    let swarms: Vec<Swarm> = rt.block_on(async {
        let mut swarms = Vec::new();
        for _ in 0..100 {
            let (s, events) = swarm(CHAIN_ID, 0, targets.clone(), 4, GOSSIP_LIMITS).await;
            spawn_drain(&s.net, events);
            swarms.push(s);
        }
        swarms
    });
    let refused = |i: usize| {
        metric(
            &metrics_of(&net.nodes[i]),
            "timecoin_net_refused_connections_total",
            &[],
        )
    };
    wait_until(
        "every validator refused some of the hundred",
        Duration::from_secs(30),
        || (0..4).all(|i| refused(i) > 0).then_some(()),
        || net.logs(),
    );
    net.wait_height(
        &[0, 1, 2, 3],
        net.top(&[0, 1, 2, 3]) + MARGIN,
        Duration::from_secs(60),
    );
    for i in 0..4 {
        let peers = peers_of(&net.nodes[i]);
        for (j, id) in ids.iter().enumerate() {
            assert!(
                j == i || peers.contains(&id.to_base58()),
                "node{i} lost validator {j} among {} peers",
                peers.len()
            );
        }
    }
    let connected: Vec<usize> = (0..4).map(|i| peers_of(&net.nodes[i]).len()).collect();
    let refusals: Vec<u64> = (0..4).map(refused).collect();
    let outcome = attack.end(&mut net);
    println!(
        "scenario 5 (100 connections with fresh peer ids): {} swarms dialled 4 validators each; refused connections per validator {refusals:?}, peers per validator {connected:?}; {} blocks finalized in {:.1} s; peak RSS {} MiB",
        swarms.len(),
        outcome.blocks(),
        outcome.secs,
        outcome.peak_mib
    );
    rt.block_on(async {
        for s in &swarms {
            s.net.shutdown().await;
        }
    });
}

/// Gossipsub's count of messages it refused itself on `topic` (before the node saw them).
fn refused_by_gossipsub(node: &NodeProc, topic: timecoin_net::Topic) -> u64 {
    metric(
        &metrics_of(node),
        "gossipsub_router_invalid_messages_per_topic_total",
        &[("hash", &topic.name(CHAIN_ID))],
    )
}

/// Scenario 4: garbage and well-formed invalid messages at and one byte over every topic's
/// limit: those over it never reach the node's intake, those at it are rejected there.
#[test]
fn messages_at_the_size_limit_of_every_topic() {
    use timecoin_net::Topic;
    let mut net = Testnet::running(4, 33900, INTERVAL_MS, 2);
    let rt = runtime();
    let ids = peer_ids(&net);
    let measured = Attack::begin(&net, &[0, 1, 2, 3]);
    let messages = sized_messages(CHAIN_ID, measured.start + 1);
    let count = |topic: Topic, side: Side| {
        messages
            .iter()
            .filter(|m| m.topic == topic && m.side == side)
            .count() as u64
    };
    // One identity per topic, side and node: no identity collects enough penalties to be
    // graylisted before its last message arrived, and each publication waits until its only
    // peer has subscribed to the topic.
    let mut port = 0;
    let mut attack = |side: Side| -> Vec<(Topic, u64)> {
        let targets = addrs(&net);
        let mut jobs = Vec::new();
        for topic in Topic::ALL {
            for (i, target) in targets.iter().enumerate() {
                port += 1;
                let (port, target, id) = (adversary_port(&net, port), target.clone(), ids[i]);
                let messages = &messages;
                jobs.push(async move {
                    let (s, events) = swarm(CHAIN_ID, port, vec![target], 1, LOOSE_LIMITS).await;
                    spawn_drain(&s.net, events);
                    assert!(connected(&s.net, &[id], Duration::from_secs(20)).await);
                    for m in messages
                        .iter()
                        .filter(|m| m.topic == topic && m.side == side)
                    {
                        s.net.publish(m.topic, m.data.clone()).await;
                    }
                    s
                });
            }
        }
        let swarms = rt.block_on(futures::future::join_all(jobs));
        assert_eq!(swarms.len(), 16);
        Topic::ALL.iter().map(|&t| (t, count(t, side))).collect()
    };

    // Over the limits: gossipsub refuses every one, the node's intake sees none.
    let intake_before: Vec<_> = net.nodes.iter().map(verdicts).collect();
    let refused_before: Vec<Vec<u64>> = net
        .nodes
        .iter()
        .map(|n| Topic::ALL.map(|t| refused_by_gossipsub(n, t)).to_vec())
        .collect();
    let over = attack(Side::Over);
    let refused_now = |i: usize| -> Vec<u64> {
        Topic::ALL
            .iter()
            .enumerate()
            .map(|(t, &topic)| refused_by_gossipsub(&net.nodes[i], topic) - refused_before[i][t])
            .collect()
    };
    wait_until(
        "gossipsub refused every oversized message on every node",
        Duration::from_secs(30),
        || {
            (0..4)
                .all(|i| {
                    refused_now(i)
                        .iter()
                        .zip(&over)
                        .all(|(refused, (_, sent))| refused >= sent)
                })
                .then_some(())
        },
        || {
            (0..4)
                .map(|i| {
                    format!(
                        "node{i}: refused by gossipsub {:?} of {over:?}; intake {:?}\n",
                        refused_now(i),
                        delta(&intake_before[i], &verdicts(&net.nodes[i]))
                    )
                })
                .collect()
        },
    );
    let over_seen: Vec<_> = (0..4)
        .map(|i| delta(&intake_before[i], &verdicts(&net.nodes[i])))
        .collect();
    for (i, seen) in over_seen.iter().enumerate() {
        assert!(
            !seen
                .keys()
                .any(|k| k.ends_with("/rejected") || k.starts_with("tx/")),
            "node{i}'s intake saw an oversized message: {seen:?}"
        );
    }

    // At the limits: the intake sees every one and refuses it.
    let intake_before: Vec<_> = net.nodes.iter().map(verdicts).collect();
    let under = attack(Side::Under);
    let refused_by_intake = |i: usize, kind: &str| -> u64 {
        let seen = delta(&intake_before[i], &verdicts(&net.nodes[i]));
        seen.get(&format!("{kind}/rejected")).copied().unwrap_or(0)
    };
    wait_until(
        "every node's intake rejected every message at the limit",
        Duration::from_secs(30),
        || {
            (0..4)
                .all(|i| {
                    under
                        .iter()
                        .all(|(topic, sent)| refused_by_intake(i, topic.kind()) >= *sent)
                })
                .then_some(())
        },
        || {
            (0..4)
                .map(|i| {
                    format!(
                        "node{i}: intake {:?} of {under:?}\n",
                        delta(&intake_before[i], &verdicts(&net.nodes[i]))
                    )
                })
                .collect()
        },
    );
    let under_seen: Vec<_> = (0..4)
        .map(|i| delta(&intake_before[i], &verdicts(&net.nodes[i])))
        .collect();
    let refused: Vec<_> = (0..4).map(refused_now).collect();
    let outcome = measured.end(&mut net);
    let described: Vec<String> = messages
        .iter()
        .map(|m| {
            format!(
                "{} {:?} {} B ({})",
                m.topic.kind(),
                m.side,
                m.data.len(),
                m.what
            )
        })
        .collect();
    println!(
        "scenario 4 (messages at the size limits): sent {described:?}; refused by gossipsub per node (proposal, prepare, precommit, tx) {refused:?}; intake during the oversized phase {over_seen:?}; intake during the at-limit phase {under_seen:?}; {} blocks finalized in {:.1} s; peak RSS {} MiB",
        outcome.blocks(),
        outcome.secs,
        outcome.peak_mib
    );
}

/// Scenario 6: a validator that fell behind restarts with lying sync peers among its
/// bootstrap peers; it backs each off, penalises those that served what is invalid
/// everywhere, and catches up from the honest peers.
#[test]
fn a_lying_sync_peer_is_penalised_backed_off_and_bypassed() {
    let mut net = Testnet::generate(4, 0, 34100, INTERVAL_MS);
    let rt = runtime();
    let ids = peer_ids(&net);
    let targets = addrs(&net);
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 3, Duration::from_secs(60));
    assert!(net.nodes[3].stop(), "clean shutdown");
    let stopped_at = net.nodes[0].height().unwrap_or(0);

    // Three liars, each claiming a tip a million blocks ahead: one refuses, answers nothing
    // and times out, one serves garbage, one serves blocks with forged certificates.
    let lies = [
        vec![Lie::Refuse, Lie::Empty, Lie::Silence, Lie::Refuse],
        vec![Lie::Garbage],
        vec![Lie::Forged],
    ];
    let liars: Vec<(Swarm, LiarLog)> = rt.block_on(async {
        let mut liars = Vec::new();
        for (k, lies) in lies.iter().enumerate() {
            let port = adversary_port(&net, k as u16);
            let (s, events) =
                swarm(CHAIN_ID, port, vec![targets[0].clone()], 8, GOSSIP_LIMITS).await;
            let log = spawn_liar(&s, events, CHAIN_ID.into(), ids[0], 1_000_000, lies.clone());
            liars.push((s, log));
        }
        liars
    });
    net.wait_height(&[0, 1, 2], stopped_at + 25, Duration::from_secs(60));

    // Validator 3 comes back, behind, with the liars first among its bootstrap peers.
    let rss = RssWatch::start(&net);
    let attack_start = net.top(&[0, 1, 2]);
    let started = Instant::now();
    let mut bootstrap: Vec<String> = liars.iter().map(|(s, _)| s.addr.to_string()).collect();
    bootstrap.extend(targets[..3].iter().map(ToString::to_string));
    net.nodes[3].args = bootstrap
        .iter()
        .flat_map(|b| ["--bootstrap".to_string(), b.clone()])
        .collect();
    net.nodes[3].start();
    let asked = |k: usize| -> Vec<(tokio::time::Instant, Lie)> {
        liars[k]
            .1
            .lock()
            .expect("liar log")
            .get(&ids[3])
            .cloned()
            .unwrap_or_default()
    };
    let penalized = |i: usize| {
        metric(
            &metrics_of(&net.nodes[i]),
            "timecoin_net_penalized_peers_total",
            &[],
        )
    };
    let caught_up = wait_until(
        "validator 3 caught up",
        Duration::from_secs(60),
        || (net.nodes[3].height()? >= attack_start).then(|| started.elapsed()),
        || net.logs(),
    );
    wait_until(
        "validator 3 went through every lie",
        Duration::from_secs(60),
        || {
            (asked(0).len() >= 4
                && !asked(1).is_empty()
                && !asked(2).is_empty()
                && penalized(3) >= 2)
                .then_some(())
        },
        || {
            format!(
                "asked {:?} {:?} {:?}\n{}",
                asked(0),
                asked(1),
                asked(2),
                net.logs()
            )
        },
    );
    let refusing = asked(0);
    let gaps: Vec<f64> = refusing
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect();
    let synced = metric(&metrics_of(&net.nodes[3]), "timed_synced_blocks_total", &[]);
    let peers3 = peers_of(&net.nodes[3]);
    let secs = started.elapsed().as_secs_f64();
    let penalties = penalized(3);
    let peak = assert_survived(&mut net, &[0, 1, 2, 3], attack_start, rss);
    println!(
        "scenario 6 (lying sync peers): validator 3 was {} blocks behind, caught up in {:.1} s ({synced} blocks by sync); requests to the refusing liar {:?} at gaps {gaps:.1?} s; to the garbage liar {}, to the forging liar {}; penalized peers {}; {:.1} s in all; peak RSS {peak} MiB",
        attack_start - stopped_at,
        caught_up.as_secs_f64(),
        refusing.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        asked(1).len(),
        asked(2).len(),
        penalties,
        secs,
    );
    assert!(synced >= attack_start - stopped_at, "caught up by sync");
    // Each failure backs the liar off for 1, 2, then (after the 10 s timeout) 4 s.
    for (gap, least) in gaps.iter().zip([0.9, 1.9, 13.5]) {
        assert!(
            *gap >= least,
            "the refusing liar was asked again after {gap:.2} s: {gaps:?}"
        );
    }
    assert_eq!(asked(0).len(), 4, "asked only when its backoff had passed");
    assert_eq!(
        asked(1).len(),
        1,
        "the garbage liar is asked once, then banned"
    );
    assert_eq!(
        asked(2).len(),
        1,
        "the forging liar is asked once, then banned"
    );
    for (k, (liar, _)) in liars.iter().enumerate().skip(1) {
        assert!(
            !peers3.contains(&liar.id().to_base58()),
            "penalised liar {k} is still connected"
        );
    }
}

/// Scenario 7: a Byzantine validator sends the valid body of its proposal to some nodes and a
/// corrupted body under the same signed hash to the others; everyone decides the valid block
/// or moves on by round change.
#[test]
fn a_byzantine_proposer_sends_different_bodies_for_one_hash() {
    let mut net = Testnet::generate(4, 0, 34300, INTERVAL_MS);
    let rt = runtime();
    let ids = peer_ids(&net);
    let targets = addrs(&net);
    let key = timed::keys::read_key(&net.nodes[3].home.join("validator.key")).expect("key");
    let genesis =
        timecoin_ledger::Genesis::load(&net.path().join("genesis.json")).expect("genesis");
    // Validator 3 never runs: the adversary holds its key.
    for node in &mut net.nodes[..3] {
        node.start();
    }
    net.wait_height(&[0, 1, 2], 2, Duration::from_secs(60));
    // Two identities, each seen by a different part of the network.
    let (one, other) = rt.block_on(async {
        let (one, e1) = swarm(
            CHAIN_ID,
            adversary_port(&net, 0),
            vec![targets[0].clone()],
            1,
            GOSSIP_LIMITS,
        )
        .await;
        let (other, e2) = swarm(
            CHAIN_ID,
            adversary_port(&net, 1),
            targets[1..3].to_vec(),
            2,
            GOSSIP_LIMITS,
        )
        .await;
        spawn_drain(&one.net, e1);
        spawn_drain(&other.net, e2);
        assert!(connected(&one.net, &ids[..1], Duration::from_secs(20)).await);
        assert!(connected(&other.net, &ids[1..3], Duration::from_secs(20)).await);
        (one, other)
    });

    let attack = Attack::begin(&net, &[0, 1, 2]);
    let proposed = {
        let _guard = rt.enter();
        spawn_byzantine_proposer(
            Follower::new(genesis),
            key,
            one.net.clone(),
            other.net.clone(),
            ids[0],
            6,
        )
    };
    let heights = || proposed.heights.lock().expect("proposed").clone();
    wait_until(
        "the Byzantine proposer proposed six times and the network moved past them",
        Duration::from_secs(90),
        || {
            let h = heights();
            (h.len() >= 6 && bottom(&net, &[0, 1, 2]) > h.last()?.0).then_some(())
        },
        || format!("proposed {:?}\n{}", heights(), net.logs()),
    );
    let outcome = attack.end(&mut net);
    let mut ours = 0;
    let mut later_round = 0;
    for (height, hash) in heights() {
        let block = net.nodes[0]
            .rpc("getblock", json!([height]))
            .expect("block");
        if block["hash"] == hash.to_string() {
            ours += 1;
        } else {
            assert!(
                block["round"].as_u64() >= Some(1),
                "height {height} decided another block in round 0: {block}"
            );
            later_round += 1;
        }
    }
    println!(
        "scenario 7 (a Byzantine proposer, two bodies for one hash): {} proposals in {:.1} s; {ours} decided as the valid body, {later_round} moved on by round change; {} blocks finalized; verdicts per node {:?}; peak RSS {} MiB",
        heights().len(),
        outcome.secs,
        outcome.blocks(),
        outcome.seen,
        outcome.peak_mib,
    );
    for (i, s) in outcome.seen.iter().enumerate() {
        assert!(
            s.get("proposal/rejected").copied().unwrap_or(0) > 0,
            "node{i} never got a corrupted body: {s:?}"
        );
    }
    assert!(
        ours > 0,
        "no valid body of the Byzantine proposer was decided"
    );
}
