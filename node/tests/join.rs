//! Joining a live network as an operator would: a fifth node starts from a published genesis
//! and one bootstrap address, syncs, is funded, registers collateral on-chain, enters the
//! validator set at the fixed height and signs certificates; the network then loses one of
//! the original four and keeps finalizing; the newcomer deregisters, leaves at the fixed
//! height, its collateral unbonds and is spent; and every coin is accounted for.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use timecoin_ledger::{
    subsidy, OutPoint, Transaction, TxOutput, ACTIVATION_DELAY, DEFAULT_UNBONDING_BLOCKS,
    MIN_COLLATERAL,
};
use timecoin_types::{codec, Address, Hash256, Keypair, COIN};

/// Waits until `node` reports `txid` finalized; returns its height.
fn total_weight(node: &NodeProc, height: u64) -> u64 {
    node.rpc("getfinalityproof", json!([height])).unwrap()["total_weight"]
        .as_u64()
        .unwrap()
}

/// The `getvalidators` entry of `key`, if listed.
fn validator_entry(node: &NodeProc, key: &str) -> Option<Value> {
    let list = node.rpc("getvalidators", json!([])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["public_key"] == key)
        .cloned()
}

/// What the operator's `timed validator` commands name: its wallet key, the joiner's home
/// and the joiner's RPC address.
struct Operator<'a> {
    wallet: &'a str,
    home: &'a str,
    rpc: &'a str,
}

impl<'a> Operator<'a> {
    /// `validator <action> --key <wallet> --home <home> <flags> --rpc <rpc>`.
    fn validator(&self, action: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "validator",
            action,
            "--key",
            self.wallet,
            "--home",
            self.home,
        ];
        args.extend_from_slice(flags);
        args.extend(["--rpc", self.rpc]);
        args
    }
}

/// A key file written by `timed wallet new`.
fn read_key(path: &str) -> Keypair {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text.trim()[2 * i..2 * i + 2], 16).unwrap();
    }
    Keypair::from_seed(seed)
}

#[test]
fn a_validator_joins_from_a_bootstrap_address_votes_and_leaves_again() {
    let mut net = Testnet::running(4, 32100, 200, 2);
    let dir = net.path();
    let genesis_weight = total_weight(&net.nodes[0], 1);
    assert_eq!(genesis_weight, 4 * MIN_COLLATERAL);

    // The operator's side: a home from the published genesis and one bootstrap address.
    let mut joiner = init_follower(&net, "joiner", &["--validator"]);
    let home = joiner.home.clone();
    joiner.start();
    let joiner_key = joiner.validator_key().unwrap();
    let target = net.nodes[0].height().unwrap() + 2;
    wait_until(
        "the joiner syncs and follows as a full node",
        Duration::from_secs(60),
        || (joiner.height()? >= target).then_some(()),
        || logs(&net, &joiner),
    );
    assert!(validator_entry(&joiner, &joiner_key).is_none());

    // Funds from the faucet, then the registration through the joiner's own RPC.
    let rpc = format!("http://{}/", joiner.rpc);
    let faucet = key_path(&dir, "faucet.key");
    let wallet = key_path(&dir, "operator.key");
    let wallet_address = timed(&["wallet", "new", "--out", &wallet])
        .trim()
        .to_string();
    let rpc0 = format!("http://{}/", net.nodes[0].rpc);
    let funding = wallet_send(&faucet, &wallet_address, "2600", &rpc0);
    finalized_height(&joiner, &funding, || logs(&net, &joiner));

    // Too little collateral is refused by the CLI before anything is sent.
    let operator = Operator {
        wallet: &wallet,
        home: home.to_str().unwrap(),
        rpc: &rpc,
    };
    let refused = timed_fails(&operator.validator("register", &["--amount", "999"]));
    assert!(
        refused.contains("below the minimum collateral"),
        "{refused}"
    );

    let registration =
        timed(&operator.validator("register", &["--amount", "1000", "--fee", "0.001"]))
            .trim()
            .to_string();
    let registered_at = finalized_height(&joiner, &registration, || logs(&net, &joiner));
    let enters_at = registered_at + ACTIVATION_DELAY;

    // A second registration of the same key (the wallet can pay for it) is refused.
    let again = timed_fails(&operator.validator("register", &["--amount", "1000"]));
    assert!(again.contains("already registered"), "{again}");

    // The set changes exactly at the fixed height, on every node.
    net.wait_height(&[0, 1, 2, 3], enters_at + 1, Duration::from_secs(60));
    for node in net.nodes.iter().chain([&joiner]) {
        assert_eq!(total_weight(node, enters_at - 1), genesis_weight);
        assert_eq!(
            total_weight(node, enters_at),
            genesis_weight + MIN_COLLATERAL
        );
    }
    let entry = validator_entry(&net.nodes[1], &joiner_key).unwrap();
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["weight"], MIN_COLLATERAL);
    assert_eq!(entry["owner"], wallet_address);
    assert_eq!(entry["stake"], format!("{registration}:0"));

    // The node signs by itself once its key is in the set: its precommits appear in
    // certificates, and it proposes blocks when its turn comes.
    let first_signed = wait_until(
        "the joiner's precommit is in a certificate",
        Duration::from_secs(60),
        || {
            let tip = joiner.height()?;
            (enters_at..=tip).find(|&h| certificate_signers(&joiner, h).contains(&joiner_key))
        },
        || logs(&net, &joiner),
    );
    assert!(first_signed >= enters_at);
    for h in 1..enters_at {
        assert!(!certificate_signers(&net.nodes[0], h).contains(&joiner_key));
    }
    wait_until(
        "the joiner proposes a block",
        Duration::from_secs(90),
        || {
            let tip = joiner.height()?;
            (enters_at..=tip).find(|&h| {
                joiner.rpc("getblock", json!([h])).unwrap()["proposer"] == joiner_key.as_str()
            })
        },
        || logs(&net, &joiner),
    );

    // Five members of 1,000 TIME each, one of the original four down: four fifths remain.
    net.nodes[3].kill();
    let live = [0, 1, 2];
    let from = net.nodes[0].height().unwrap() + 1;
    net.wait_height(&live, from + 10, Duration::from_secs(90));
    for h in from + 1..=from + 10 {
        // A quorum of 4 of the 5 equal weights needs every live member, the joiner included.
        assert!(certificate_signers(&net.nodes[0], h).contains(&joiner_key));
    }

    // Leaving: deregistered at d, out of the set from d + 2, collateral locked until
    // d + 2 + unbonding_blocks.
    let deregistration = timed(&operator.validator("deregister", &["--fee", "0.001"]))
        .trim()
        .to_string();
    let deregistered_at = finalized_height(&joiner, &deregistration, || logs(&net, &joiner));
    let leaves_at = deregistered_at + ACTIVATION_DELAY;
    let unlock_height = leaves_at + DEFAULT_UNBONDING_BLOCKS;
    // The collateral: refused while unbonding, accepted from the unlock height on.
    let operator = read_key(&wallet);
    let stake = OutPoint {
        txid: Hash256::from_hex(&registration).unwrap(),
        index: 0,
    };
    let faucet_address: Address = timed(&["wallet", "address", "--key", &faucet])
        .trim()
        .parse()
        .unwrap();
    let chain_id = net.nodes[0].rpc("getblockchaininfo", json!([])).unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    let refund = Transaction::build_signed(
        &chain_id,
        vec![(stake, &operator)],
        vec![TxOutput {
            address: faucet_address,
            amount: MIN_COLLATERAL - COIN / 1000,
        }],
    );
    let refund_hex = hex_of(&refund);
    // Refused while unbonding (sent a dozen blocks before the unlock height; should the
    // machine stall that long, acceptance is only right once the unlock height is next).
    match net.nodes[0].rpc("sendrawtransaction", json!([refund_hex])) {
        Err(err) => assert!(
            err["message"].as_str().unwrap().contains("unbonding"),
            "{err}"
        ),
        Ok(_) => assert!(net.nodes[0].height().unwrap() + 1 >= unlock_height),
    }
    net.wait_height(&live, leaves_at + 5, Duration::from_secs(60));
    assert_eq!(
        total_weight(&net.nodes[0], leaves_at - 1),
        genesis_weight + MIN_COLLATERAL
    );
    assert_eq!(total_weight(&net.nodes[0], leaves_at), genesis_weight);
    for h in leaves_at..=leaves_at + 5 {
        assert!(!certificate_signers(&net.nodes[0], h).contains(&joiner_key));
    }
    assert!(validator_entry(&net.nodes[0], &joiner_key).is_none());
    // The joiner keeps following the chain as a full node.
    wait_until(
        "the joiner follows after leaving",
        Duration::from_secs(60),
        || (joiner.height()? >= leaves_at + 5).then_some(()),
        || logs(&net, &joiner),
    );

    net.wait_height(&live, unlock_height - 1, Duration::from_secs(60));
    net.nodes[0]
        .rpc("sendrawtransaction", json!([refund_hex]))
        .unwrap();
    let refunded_at = finalized_height(&net.nodes[0], &refund.txid().to_string(), || net.logs());
    assert!(refunded_at >= unlock_height);

    // Every coin accounted for: stop the others so node0's tip stays put, then the balances
    // of every address ever paid (locked collateral included) add up to the genesis
    // allocation plus the rewards paid minus the fees they redistributed, i.e. plus the
    // subsidies.
    joiner.stop();
    net.nodes[1].stop();
    net.nodes[2].stop();
    let node0 = &net.nodes[0];
    let (tip, allocations, rewards, fees, balances) = wait_until(
        "a stable view of node0's chain",
        Duration::from_secs(30),
        || {
            let tip = node0.height()?;
            let mut addresses = BTreeSet::new();
            let (mut allocations, mut rewards, mut fees) = (0u64, 0u64, 0u64);
            for h in 0..=tip {
                let block = node0.rpc("getblock", json!([h])).ok()?;
                for paid in block["rewards"].as_array()? {
                    addresses.insert(paid["address"].as_str()?.to_string());
                    let amount = paid["amount"].as_u64()?;
                    if h == 0 {
                        allocations += amount;
                    } else {
                        rewards += amount;
                    }
                }
                for tx in block["transactions"].as_array()? {
                    fees += tx["fee"].as_u64()?;
                    for out in tx["outputs"].as_array()? {
                        addresses.insert(out["address"].as_str()?.to_string());
                    }
                }
            }
            let mut balances = 0u64;
            for address in &addresses {
                balances += node0.rpc("getbalance", json!([address])).ok()?["balance"].as_u64()?;
            }
            (node0.height()? == tip).then_some((tip, allocations, rewards, fees, balances))
        },
        || node0.log_tail(40),
    );
    assert!(tip >= refunded_at);
    assert_eq!(allocations, 1_000_000 * COIN);
    assert_eq!(rewards - fees, (1..=tip).map(subsidy).sum::<u64>());
    assert_eq!(balances, allocations + rewards - fees);
    // The operator paid two fees and got its collateral back to the faucet minus one more.
    assert!(fees >= 4 * (COIN / 1000));

    anyone_can_verify_the_history(&net, tip, refunded_at, &refund.txid().to_string());
}

/// The history above, with its join and its leave, checked offline from the genesis: a proof
/// bundle of the refund's block by `timed verify`, a bundle missing a set change refused,
/// and every height walked by an independent verifier in Python written from
/// `docs/PROTOCOL.md` alone.
fn anyone_can_verify_the_history(net: &Testnet, tip: u64, height: u64, txid: &str) {
    let dir = net.path();
    let (genesis, bundle) = (dir.join("genesis.json"), dir.join("proof.json"));
    let (genesis, bundle) = (genesis.to_str().unwrap(), bundle.to_str().unwrap());
    let rpc0 = format!("http://{}/", net.nodes[0].rpc);
    let height = height.to_string();
    let export = ["proof", "export", "--height", &height, "--txid", txid];
    timed(&[&export[..], &["--out", bundle, "--rpc", &rpc0]].concat());
    let verified = timed(&["verify", "--genesis", genesis, bundle]);
    assert!(
        verified.contains(&format!(" height {height} block "))
            && verified.contains("2 validator-set changes")
            && verified.contains(&format!("transaction {txid} included")),
        "{verified}"
    );

    let mut dropped: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle).unwrap()).unwrap();
    dropped["blocks"].as_array_mut().unwrap().remove(0);
    let forged = dir.join("dropped.json");
    std::fs::write(&forged, dropped.to_string()).unwrap();
    let refused = timed_fails(&["verify", "--genesis", genesis, forged.to_str().unwrap()]);
    assert!(
        refused.contains("is a validator-set change missing"),
        "{refused}"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/light_verify.py");
    let out = std::process::Command::new("python3")
        .args([
            script,
            "--rpc",
            &rpc0,
            "--genesis",
            genesis,
            "--to",
            &tip.to_string(),
        ])
        .output()
        .expect("python3 runs (scripts/test.sh installs pynacl and blake3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains(&format!("heights 1..{tip} verified (2 set changes")),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn logs(net: &Testnet, joiner: &NodeProc) -> String {
    format!("{}\n---- joiner ----\n{}", net.logs(), joiner.log_tail(40))
}

fn hex_of(tx: &Transaction) -> String {
    codec::encode(tx)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
