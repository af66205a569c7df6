//! `[storage] retain_blocks`: three of four validators keep only their last 10 block bodies.
//! Their `getblock` of an old height says it is pruned while `getlightblock` still answers; a
//! new full node finds no peer with the bodies it needs while only pruned nodes are reachable
//! (it says so, penalises nobody, keeps running), then syncs from the unpruned one, without
//! ever penalising the pruned peers that had nothing to give.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use timed::config::Config;

/// Keeps the last `blocks` bodies on the node of `home` (from its next start).
fn retain(home: &std::path::Path, blocks: u64) {
    let mut config = Config::load(home).expect("config");
    config.storage.retain_blocks = blocks;
    config.save(home).expect("config saved");
}

/// The value of the unlabelled metric `name` in a node's `/metrics`.
fn metric(node: &NodeProc, name: &str) -> Option<f64> {
    http_get(node.rpc, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
}

/// The peer id of the node of `home`.
fn peer_id(home: &std::path::Path) -> String {
    timed(&["show", "--home", home.to_str().unwrap()])
        .lines()
        .find_map(|l| l.strip_prefix("peer_id: "))
        .unwrap()
        .to_string()
}

/// The peer ids `node` is connected to.
fn peers_of(node: &NodeProc) -> Vec<String> {
    node.rpc("getpeerinfo", json!([]))
        .map(|list| {
            list.as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pruned_nodes_serve_headers_and_a_new_node_syncs_from_the_unpruned_one() {
    let mut net = Testnet::generate(4, 0, 31700, 100);
    for node in &net.nodes[..3] {
        retain(&node.home, 10);
    }
    let pruned_ids: Vec<String> = net.nodes[..3].iter().map(|n| peer_id(&n.home)).collect();

    // Too small a window is refused when the config is loaded, and says why.
    let refused = net.path().join("refused");
    std::fs::create_dir_all(&refused).unwrap();
    let text = std::fs::read_to_string(net.nodes[0].home.join("config.toml")).unwrap();
    std::fs::write(
        refused.join("config.toml"),
        text.replace("retain_blocks = 10", "retain_blocks = 5"),
    )
    .unwrap();
    let err = timed_fails(&["show", "--home", refused.to_str().unwrap()]);
    assert!(err.contains("retain_blocks = 5 is too small"), "{err}");
    assert!(err.contains("until every peer"), "{err}");

    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60));
    let dir = net.path();
    let faucet = key_path(&dir, "faucet.key");
    let receiver = timed(&["wallet", "new", "--out", &key_path(&dir, "receiver.key")])
        .trim()
        .to_string();
    let txid = wallet_send(
        &faucet,
        &receiver,
        "3",
        &format!("http://{}/", net.nodes[3].rpc),
    );
    let tx_height = finalized_height(&net.nodes[0], &txid, || net.logs());
    net.wait_height(&[0, 1, 2, 3], tx_height + 40, Duration::from_secs(120));

    // A pruned node: old bodies gone and said so, headers and certificates kept.
    let pruned = &net.nodes[0];
    let err = pruned.rpc("getblock", json!([1])).unwrap_err();
    assert_eq!(err["code"], -32001, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.starts_with("block 1 is pruned: this node keeps block bodies from height "),
        "{message}"
    );
    assert!(
        message
            .ends_with("on; headers and certificates are kept (getlightblock, getfinalityproof)"),
        "{message}"
    );
    let err = pruned.rpc("gettxproof", json!([txid])).unwrap_err();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("block {tx_height} is pruned")),
        "{err}"
    );
    let tx = pruned.rpc("gettransaction", json!([txid])).unwrap();
    assert_eq!(tx["height"].as_u64(), Some(tx_height));
    let light = pruned.rpc("getlightblock", json!([1])).unwrap();
    let hash_1 = net.nodes[3].rpc("getblockhash", json!([1])).unwrap();
    assert_eq!(light["hash"], hash_1);
    assert_eq!(pruned.rpc("getblockhash", json!([1])).unwrap(), hash_1);
    assert!(pruned.rpc("getfinalityproof", json!([1])).is_ok());
    let tip = pruned.height().unwrap();
    assert!(pruned.rpc("getblock", json!([tip])).is_ok());
    let pruned_below = metric(pruned, "timed_pruned_below_height").unwrap();
    assert!(pruned_below > 1.0, "{pruned_below}");
    assert!(metric(pruned, "timed_db_bytes").unwrap() > 0.0);
    // The unpruned node still has everything.
    let block_1 = net.nodes[3].rpc("getblock", json!([1])).unwrap();
    assert_eq!(block_1["hash"], hash_1);
    assert!(net.nodes[3].rpc("gettxproof", json!([txid])).is_ok());
    assert_eq!(
        metric(&net.nodes[3], "timed_pruned_below_height"),
        Some(0.0)
    );

    // Only pruned nodes reachable: two of four validators stop, so the chain halts where the
    // unpruned one (stopped last) has every block.
    net.nodes[2].kill();
    net.nodes[3].kill();
    let mut follower = init_follower(&net, "follower", &[]);
    follower.start();
    wait_until(
        "the new node says no peer has the blocks it needs",
        Duration::from_secs(60),
        || {
            follower
                .log_tail(200)
                .contains("no peer has the blocks this node needs")
                .then_some(())
        },
        || follower.log_tail(60),
    );
    let log = follower.log_tail(400);
    assert!(log.contains("it may have pruned them"), "{log}");
    assert!(follower.is_running());
    assert_eq!(follower.height(), Some(0));
    let connected = peers_of(&follower);
    for id in &pruned_ids[..2] {
        assert!(
            connected.contains(id),
            "still connected to {id}: {connected:?}"
        );
    }

    // The unpruned node comes back (with the other validator): the new node finds it and
    // syncs the whole chain from it.
    net.nodes[2].start();
    net.nodes[3].start();
    let target = net.nodes[0].height().unwrap() + 5;
    wait_until(
        "the new node syncs from the unpruned node",
        Duration::from_secs(120),
        || (follower.height()? >= target).then_some(()),
        || {
            format!(
                "{}\n---- follower ----\n{}",
                net.logs(),
                follower.log_tail(60)
            )
        },
    );
    assert_eq!(
        follower.rpc("getblockhash", json!([target])).unwrap(),
        net.nodes[3].rpc("getblockhash", json!([target])).unwrap()
    );
    assert_eq!(
        follower.rpc("getblock", json!([1])).unwrap()["hash"],
        hash_1
    );
    assert_eq!(
        follower.rpc("gettxproof", json!([txid])).unwrap()["height"],
        tx_height
    );

    // No pruned peer was ever penalised for what it does not keep.
    let log = std::fs::read_to_string(follower.home.join("node.log")).unwrap();
    assert!(!log.contains("penalizing peer"), "{log}");
    assert!(!log.contains("penalized=true"), "{log}");
    let connected = peers_of(&follower);
    assert!(
        pruned_ids.iter().any(|id| connected.contains(id)),
        "pruned peers still connected: {connected:?}"
    );
    assert!(follower.stop(), "clean shutdown");
}
