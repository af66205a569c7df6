//! Faults an operator meets, on real processes: validators crash and return, quorum is lost
//! and regained, a node is down for a hundred blocks, a new node syncs from genesis, the
//! proposer dies, and a validator killed at random moments never signs two different votes.

mod common;

use common::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[test]
fn one_down_continues_two_down_halts_safely_and_both_return() {
    let mut net = Testnet::running(4, 31100, 200, 3);

    net.nodes[3].kill();
    let h = net.top(&[0, 1, 2]);
    net.wait_height(&[0, 1, 2], h + 5, Duration::from_secs(60));

    net.nodes[2].kill();
    // A block already past its prepare quorum may still finish; after that, nothing can.
    let halted_at = net.top(&[0, 1]) + 1;
    let cpu_before: u64 = net.nodes[..2].iter().map(|n| n.cpu_ticks().unwrap()).sum();
    let watch_started = Instant::now();
    while watch_started.elapsed() < Duration::from_secs(4) {
        assert!(net.top(&[0, 1]) <= halted_at, "finalized without a quorum");
        std::thread::sleep(Duration::from_millis(100)); // sampling interval of the watch
    }
    let cpu_after: u64 = net.nodes[..2].iter().map(|n| n.cpu_ticks().unwrap()).sum();
    // Clock ticks are 1/100 s: two idle-waiting nodes must use far less than a core.
    let used = (cpu_after - cpu_before) as f64 / 100.0 / watch_started.elapsed().as_secs_f64();
    assert!(used < 0.5, "halted nodes spin: {used:.2} cores");

    net.nodes[2].start();
    net.nodes[3].start();
    net.wait_height(&[0, 1, 2, 3], halted_at + 3, Duration::from_secs(90));
    net.assert_agree(&[0, 1, 2, 3], halted_at + 3);
}

#[test]
fn three_validators_lose_one_and_it_catches_up() {
    // The seed's own scenario: three validators of 1,000 TIME; two of them are 2/3.
    let mut net = Testnet::running(3, 31300, 200, 3);
    net.nodes[2].kill();
    let h = net.top(&[0, 1]);
    net.wait_height(&[0, 1], h + 10, Duration::from_secs(60));
    net.nodes[2].start();
    let target = net.top(&[0, 1]) + 3;
    net.wait_height(&[0, 1, 2], target, Duration::from_secs(60));
    net.assert_agree(&[0, 1, 2], target);
}

#[test]
fn a_node_down_for_a_hundred_blocks_and_a_new_full_node_catch_up() {
    let mut net = Testnet::generate(4, 1, 31500, 0);
    for i in 0..4 {
        net.nodes[i].start();
    }
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    assert!(net.nodes[3].stop(), "clean shutdown");
    let h = net.top(&[0, 1, 2]);
    net.wait_height(&[0, 1, 2], h + 120, Duration::from_secs(120));

    net.nodes[3].start();
    net.nodes[4].start();
    let target = net.top(&[0, 1, 2]) + 3;
    net.wait_height(&[0, 1, 2, 3, 4], target, Duration::from_secs(120));
    net.assert_agree(&[0, 1, 2, 3, 4], target);
    let synced = |i: usize| {
        let metrics = http_get(net.nodes[i].rpc, "/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("timed_synced_blocks_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(synced(3) >= 100, "node3 caught up by sync: {}", synced(3));
    assert!(
        synced(4) >= target - 5,
        "the full node synced from genesis: {}",
        synced(4)
    );
}

#[test]
fn a_dead_proposer_is_replaced_in_a_later_round_within_the_slot() {
    let interval = 2000;
    let mut net = Testnet::running(4, 31700, interval, 1);
    let info = net.nodes[0].rpc("getblockchaininfo", json!([])).unwrap();
    let genesis_time = info["genesis_time_ms"].as_u64().unwrap();
    let target = info["height"].as_u64().unwrap() + 2;

    // Find and kill the round-0 proposer of `target` before its slot begins.
    let set = validator_set(&net.nodes[0]);
    let proposer = set.proposer(target, 0).public_key.to_string();
    let victim = (0..4)
        .find(|&i| net.nodes[i].validator_key().as_deref() == Some(proposer.as_str()))
        .unwrap();
    net.nodes[victim].kill();
    let alive: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    net.wait_height(&alive, target, Duration::from_secs(60));

    let block = net.nodes[alive[0]]
        .rpc("getblock", json!([target]))
        .unwrap();
    assert!(
        block["round"].as_u64().unwrap() >= 1,
        "decided in a later round"
    );
    assert_ne!(block["proposer"].as_str().unwrap(), proposer);
    let slot_start = genesis_time + target * interval;
    let finalized = block["finalized_at_ms"].as_u64().unwrap();
    eprintln!(
        "proposer failover: height {target} decided in round {} after {} ms of its {interval} ms slot",
        block["round"],
        finalized.saturating_sub(slot_start)
    );
    assert!(finalized < slot_start + interval, "decided within the slot");
}

#[test]
fn a_validator_killed_at_random_moments_never_equivocates() {
    let mut net = Testnet::generate(4, 0, 31900, 100);
    for node in &mut net.nodes {
        node.log_filter = Some("info,timed::votes=debug".into());
    }
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    let victim_key = net.nodes[3].validator_key().unwrap();

    // A fixed-seed generator: the kill schedule is the same on every run.
    let mut state: u64 = 0x7134_c01d;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    for _ in 0..20 {
        net.nodes[3].kill();
        net.nodes[3].start();
        // The chaos schedule itself: let the node run into a random point of its voting.
        std::thread::sleep(Duration::from_millis(150 + next() % 700));
    }
    net.nodes[3].kill();
    net.nodes[3].start();
    let target = net.top(&[0, 1, 2]) + 5;
    net.wait_height(&[0, 1, 2, 3], target, Duration::from_secs(90));
    net.assert_agree(&[0, 1, 2, 3], target);

    // Every vote the other nodes accepted from the victim: one value per (height, round, kind).
    let mut slots: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
    let mut votes = 0;
    for node in &net.nodes[..3] {
        let log = std::fs::read_to_string(node.home.join("node.log")).unwrap();
        for line in log
            .lines()
            .filter(|l| l.contains("timed::votes") && l.contains(&victim_key))
        {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            votes += 1;
            slots
                .entry((field("height"), field("round"), field("kind")))
                .or_default()
                .insert(field("block"));
        }
    }
    assert!(
        votes > 40,
        "the victim voted while it was up ({votes} votes seen)"
    );
    for (slot, values) in &slots {
        assert_eq!(
            values.len(),
            1,
            "validator 3 signed two votes for {slot:?}: {values:?}"
        );
    }
    for node in &net.nodes[..3] {
        assert_eq!(node.rpc("getevidence", json!([])).unwrap(), json!([]));
    }
}

#[test]
fn the_whole_network_killed_at_once_comes_back_and_agrees() {
    // Every validator dies at the same moment, possibly locked on a block nobody else has
    // stored; the persisted locks and their blocks must let the height finish after restart.
    let mut net = Testnet::running(4, 32100, 100, 2);
    let mut state: u64 = 0x5eed_0fa1;
    for _ in 0..5 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // The chaos schedule: run into a random point of a height, then kill everyone.
        std::thread::sleep(Duration::from_millis(50 + (state >> 33) % 300));
        let tip = net.top(&[0, 1, 2, 3]);
        for node in &mut net.nodes {
            node.kill();
        }
        net.start_all();
        net.wait_height(&[0, 1, 2, 3], tip + 2, Duration::from_secs(90));
    }
    let tip = (0..4).filter_map(|i| net.nodes[i].height()).min().unwrap();
    net.assert_agree(&[0, 1, 2, 3], tip);
}
