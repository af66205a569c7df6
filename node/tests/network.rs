//! Four validators on loopback finalize blocks over real libp2p, agree on every hash, carry
//! valid certificates, pay rewards by the formula, discover peers through Kademlia, move a
//! wallet transfer exactly once and shrug off garbage.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use timecoin_ledger::{reward_outputs, subsidy, OutPoint, Transaction, TxInput, TxOutput};
use timecoin_types::{codec, Address, Certificate, Hash256, Keypair, PublicKey};

/// The sum of `field` over the entries of `list` in a `getblock` answer.
fn block_sum(block: &Value, list: &str, field: &str) -> u64 {
    block[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry[field].as_u64().unwrap())
        .sum()
}

#[test]
fn four_validators_finalize_agree_and_pay_rewards() {
    let mut net = Testnet::generate(4, 0, 30100, 100);
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 20, Duration::from_secs(90));
    net.assert_agree(&[0, 1, 2, 3], 20);

    let set = validator_set(&net.nodes[0]);
    let chain_id = net.nodes[0].rpc("getblockchaininfo", json!([])).unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    for height in 1..=20u64 {
        let proof = net.nodes[(height % 4) as usize]
            .rpc("getfinalityproof", json!([height]))
            .unwrap();
        let cert: Certificate = codec::decode(
            &hex::decode(proof["certificate"].as_str().unwrap()).unwrap(),
            1 << 20,
        )
        .unwrap();
        let signed = cert.verify(&chain_id, &set).expect("certificate verifies");
        assert_eq!(proof["signed_weight"].as_u64(), Some(signed));
        assert_eq!(proof["total_weight"].as_u64(), Some(set.total_weight()));
        assert!(3 * signed >= 2 * set.total_weight());
        assert_eq!(
            proof["signatures"].as_array().unwrap().len(),
            cert.signatures.len()
        );

        let block = net.nodes[0].rpc("getblock", json!([height])).unwrap();
        assert_eq!(
            block["hash"].as_str(),
            Some(cert.block_hash.to_string().as_str())
        );
        let fees = block_sum(&block, "transactions", "fee");
        let proposer: PublicKey = block["proposer"].as_str().unwrap().parse().unwrap();
        let expected: Vec<Value> = reward_outputs(&set, &proposer, subsidy(height) + fees)
            .iter()
            .map(|o| json!({"address": o.address.to_string(), "amount": o.amount}))
            .collect();
        assert_eq!(
            block["rewards"].as_array().unwrap(),
            &expected,
            "rewards at {height}"
        );
    }
    for node in &mut net.nodes {
        assert!(node.stop(), "clean shutdown on SIGTERM");
    }
}

#[test]
fn a_node_with_one_bootstrap_address_finds_the_others() {
    let net = Testnet::running(4, 30300, 200, 2);
    let mut follower = init_follower(&net, "follower", &[]);
    follower.start();
    wait_until(
        "the follower is connected to all four validators",
        Duration::from_secs(60),
        || {
            let peers = follower.rpc("getpeerinfo", json!([])).ok()?;
            (peers.as_array()?.len() >= 4).then_some(())
        },
        || follower.log_tail(40),
    );
    let target = net.nodes[0].height().unwrap() + 2;
    wait_until(
        "the follower follows the chain",
        Duration::from_secs(60),
        || (follower.height()? >= target).then_some(()),
        || follower.log_tail(40),
    );
    assert_eq!(
        follower.rpc("getblockhash", json!([target])).unwrap(),
        net.nodes[1].rpc("getblockhash", json!([target])).unwrap()
    );
}

fn signed_transfer(
    chain_id: &str,
    key: &Keypair,
    coin: (&str, u32, u64),
    to: Address,
    amount: u64,
    fee: u64,
) -> Transaction {
    let outpoint = OutPoint {
        txid: Hash256::from_hex(coin.0).unwrap(),
        index: coin.1,
    };
    let mut outputs = vec![TxOutput {
        address: to,
        amount,
    }];
    let change = coin.2 - amount - fee;
    if change > 0 {
        outputs.push(TxOutput {
            address: Address::of(&key.public()),
            amount: change,
        });
    }
    Transaction::build_signed(chain_id, vec![(outpoint, key)], outputs)
}

#[test]
fn wallet_transfer_lands_once_and_bad_input_is_refused() {
    let mut net = Testnet::running(4, 30500, 200, 1);
    let dir = net.path();
    let rpc = format!("http://{}/", net.nodes[1].rpc);
    let faucet = key_path(&dir, "faucet.key");
    let faucet_address = timed(&["wallet", "address", "--key", &faucet])
        .trim()
        .to_string();
    let receiver = key_path(&dir, "receiver.key");
    let receiver_address = timed(&["wallet", "new", "--out", &receiver])
        .trim()
        .to_string();

    let txid = wallet_send(&faucet, &receiver_address, "12.5", &rpc);
    let height = finalized_height(&net.nodes[2], &txid, || net.logs());
    let balance = timed(&[
        "wallet",
        "balance",
        "--address",
        &receiver_address,
        "--rpc",
        &rpc,
    ]);
    assert_eq!(balance.trim(), "12.5");
    let block = net.nodes[3].rpc("getblock", json!([height])).unwrap();
    let in_block: Vec<&Value> = block["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["txid"] == txid.as_str())
        .collect();
    assert_eq!(in_block.len(), 1);
    assert_eq!(in_block[0]["fee"].as_u64(), Some(100_000));
    let paid = block_sum(&block, "rewards", "amount");
    assert_eq!(
        paid,
        subsidy(height) + 100_000,
        "the fee is paid out with the subsidy"
    );
    // Exactly once: no other block carries it.
    net.wait_height(&[0], height + 3, Duration::from_secs(60));
    for h in 1..=height + 3 {
        if h == height {
            continue;
        }
        let other = net.nodes[0].rpc("getblock", json!([h])).unwrap();
        assert!(other["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["txid"] != txid.as_str()));
    }

    // The receiver spends its coin; a second, different spend of the same coin is refused.
    let chain_id = "timecoin-test";
    let receiver_key = Keypair::from_seed({
        let text = std::fs::read_to_string(&receiver).unwrap();
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).unwrap();
        seed
    });
    let coins = net.nodes[0]
        .rpc("listunspent", json!([receiver_address]))
        .unwrap();
    let coin = &coins.as_array().unwrap()[0];
    let coin = (
        coin["txid"].as_str().unwrap(),
        coin["index"].as_u64().unwrap() as u32,
        coin["amount"].as_u64().unwrap(),
    );
    let faucet_addr: Address = faucet_address.parse().unwrap();
    let first = signed_transfer(
        chain_id,
        &receiver_key,
        coin,
        faucet_addr,
        100_000_000,
        10_000,
    );
    let second = signed_transfer(
        chain_id,
        &receiver_key,
        coin,
        faucet_addr,
        200_000_000,
        10_000,
    );
    let send = |tx: &Transaction| {
        net.nodes[0].rpc(
            "sendrawtransaction",
            json!([hex::encode(codec::encode(tx))]),
        )
    };
    assert_eq!(send(&first).unwrap(), json!(first.txid().to_string()));
    let err = send(&second).unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("rejected"),
        "{err}"
    );

    // A badly signed transaction is refused with a clear error.
    let mut forged = signed_transfer(
        chain_id,
        &receiver_key,
        coin,
        faucet_addr,
        300_000_000,
        10_000,
    );
    forged.inputs[0] = TxInput {
        signature: Keypair::generate().sign(&Hash256::ZERO),
        ..forged.inputs[0].clone()
    };
    let err = send(&forged).unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("signature"),
        "{err}"
    );

    // Malformed RPC: bad JSON, unknown method, wrong params, bad hex, unknown height.
    let node = &net.nodes[0];
    let (_, body) = http_post(node.rpc, b"{not json").unwrap();
    assert!(body.contains("-32700"), "{body}");
    assert_eq!(
        node.rpc("nosuchmethod", json!([])).unwrap_err()["code"],
        -32601
    );
    assert_eq!(
        node.rpc("getblock", json!(["ten"])).unwrap_err()["code"],
        -32602
    );
    assert_eq!(
        node.rpc("sendrawtransaction", json!(["zz"])).unwrap_err()["code"],
        -32602
    );
    assert_eq!(
        node.rpc("getblock", json!([1_000_000])).unwrap_err()["code"],
        -32001
    );
    assert_eq!(
        node.rpc("getbalance", json!(["tc00"])).unwrap_err()["code"],
        -32602
    );

    // Garbage on the p2p port.
    for i in 0..4u16 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", net.base_port + i)) {
            use std::io::Write;
            let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(4096));
        }
    }
    // Everyone is up and the spend of `first` finalizes.
    wait_until(
        "the receiver's spend is finalized",
        Duration::from_secs(60),
        || {
            let tx = net.nodes[3]
                .rpc("gettransaction", json!([first.txid().to_string()]))
                .ok()?;
            (tx["status"] == "finalized").then_some(())
        },
        || net.logs(),
    );
    let tip = net.nodes[0].height().unwrap();
    net.wait_height(&[0, 1, 2, 3], tip + 2, Duration::from_secs(60));
    for node in &mut net.nodes {
        assert!(node.is_running());
    }
}
