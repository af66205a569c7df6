//! Upgrades at a height: the network moves from protocol version 1 to 2 at a scheduled height
//! with no fork (this binary implements 2), then every node stops before a scheduled version
//! 3 that its binary does not implement, saying why, as an old binary would; and the
//! operator's `--halt-height` (a clean stop before it).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use timecoin_ledger::Store;

/// Where version 2 takes effect.
const UPGRADE_AT: u64 = 8;
/// Where version 3, which this binary lacks, would.
const UNKNOWN_AT: u64 = 16;
const HALT_AT: u64 = 5;

/// The node's finalized blocks (hash and header version, heights 1 to the tip), read from
/// its database once the process is gone.
fn chain_of(node: &NodeProc) -> Vec<(String, u32)> {
    let store = Store::open(&node.home.join("data/timed.redb")).unwrap();
    let (tip, _) = store.tip().unwrap();
    (1..=tip)
        .map(|h| {
            let header = store.header(h).unwrap().unwrap();
            (header.hash().to_string(), header.version)
        })
        .collect()
}

#[test]
fn nodes_stop_before_an_unknown_protocol_version_and_at_their_halt_height() {
    let mut net = Testnet::generate(4, 0, 33100, 50);
    // The schedule every node reads: the published genesis and each home's copy of it.
    let homes = net.nodes.iter().map(|n| n.home.clone());
    for dir in std::iter::once(net.path()).chain(homes) {
        let path = dir.join("genesis.json");
        let mut genesis: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        genesis["upgrades"] = json!([
            { "version": 2, "height": UPGRADE_AT },
            { "version": 3, "height": UNKNOWN_AT },
        ]);
        std::fs::write(&path, genesis.to_string()).unwrap();
    }
    net.nodes[3].args = vec!["--halt-height".into(), HALT_AT.to_string()];
    net.start_all();

    let halted = net.nodes[3].wait_exit(Duration::from_secs(60));
    assert!(
        halted.is_some_and(|s| s.success()),
        "{:?}\n{}",
        halted,
        net.logs()
    );
    assert!(
        net.nodes[3]
            .log_tail(20)
            .contains("reached the halt height"),
        "{}",
        net.logs()
    );
    for i in 0..3 {
        let status = net.nodes[i].wait_exit(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| !s.success()),
            "node{i}: {status:?}\n{}",
            net.logs()
        );
        let log = net.nodes[i].log_tail(10);
        assert!(
            log.contains(&format!("height {UNKNOWN_AT} follows protocol version 3"))
                && log.contains("implements only up to version 2"),
            "node{i}:\n{log}"
        );
    }

    // Three quarters of the weight moved to version 2 at its height, went on to the height
    // before version 3 and agree on it; the halted node stopped at the height before its
    // halt height, on the same chain.
    let chains: Vec<Vec<(String, u32)>> = net.nodes.iter().map(chain_of).collect();
    for chain in &chains[..3] {
        assert_eq!(chain.len() as u64, UNKNOWN_AT - 1);
        assert_eq!(chain, &chains[0], "no fork");
    }
    let versions: Vec<u32> = chains[0].iter().map(|(_, v)| *v).collect();
    let expected: Vec<u32> = (1..UNKNOWN_AT)
        .map(|h| if h < UPGRADE_AT { 1 } else { 2 })
        .collect();
    assert_eq!(
        versions, expected,
        "headers switch to version 2 at {UPGRADE_AT}"
    );
    assert_eq!(chains[3].len() as u64, HALT_AT - 1);
    assert_eq!(chains[3][..], chains[0][..chains[3].len()]);

    // A restart with the same binary refuses again at once, for the same reason.
    net.nodes[0].start();
    let again = net.nodes[0].wait_exit(Duration::from_secs(30));
    assert!(again.is_some_and(|s| !s.success()), "{again:?}");
    assert!(net.nodes[0]
        .log_tail(5)
        .contains("follows protocol version 3"));
}
