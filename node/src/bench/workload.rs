//! The transfer load of one bench run: every transaction built and signed before the nodes
//! start (so signing does not compete with them for CPU), and the submitters that send them.

use super::now_ms;
use anyhow::{anyhow, ensure, Result};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::rpc_params;
use std::time::Duration;
use timecoin_ledger::{reward_outpoint, Genesis, OutPoint, Transaction, TxOutput};
use timecoin_types::{codec, Address, Keypair};

/// The transactions of one run, all signed in advance.
pub struct Workload {
    /// The faucet's output split into `fan_out` coins.
    pub first: Transaction,
    /// Each of those coins split further.
    pub second: Vec<Transaction>,
    /// One transfer per final coin: (txid as hex, hex of the CBOR encoding).
    pub transfers: Vec<(String, String)>,
}

/// Splits the faucet's single genesis output into `coins` coins in two levels of fan-out and
/// signs one transfer spending each. Everything is derivable before the chain runs: the
/// genesis output sits at a fixed outpoint and txids do not cover signatures.
pub fn build_workload(genesis: &Genesis, faucet: &Keypair, coins: usize) -> Result<Workload> {
    let chain_id = &genesis.chain_id;
    // One fee for every transaction of the load, enough for the largest one allowed.
    let fee = genesis
        .min_fee_per_byte
        .saturating_mul(timecoin_ledger::MAX_TX_BYTES as u64);
    let owner = Address::of(&faucet.public());
    let sink = Address::of(&Keypair::generate().public());
    let funds = genesis
        .allocations
        .first()
        .ok_or_else(|| anyhow!("the genesis funds no faucet"))?
        .amount;
    let per_second = coins.min(timecoin_ledger::MAX_TX_OUTPUTS);
    let fan_out = coins.div_ceil(per_second);
    let first_amount = (funds - fee) / fan_out as u64;
    let first = Transaction::build_signed(
        chain_id,
        vec![(reward_outpoint(0, 0), faucet)],
        vec![
            TxOutput {
                address: owner,
                amount: first_amount,
            };
            fan_out
        ],
    );
    let first_id = first.txid();
    let mut second = Vec::with_capacity(fan_out);
    let mut transfers = Vec::with_capacity(coins);
    for j in 0..fan_out {
        let count = per_second.min(coins - j * per_second);
        let amount = (first_amount - fee) / count as u64;
        ensure!(amount > fee, "the faucet cannot fund {coins} coins");
        let tx = Transaction::build_signed(
            chain_id,
            vec![(
                OutPoint {
                    txid: first_id,
                    index: j as u32,
                },
                faucet,
            )],
            vec![
                TxOutput {
                    address: owner,
                    amount
                };
                count
            ],
        );
        let id = tx.txid();
        for index in 0..count {
            let transfer = Transaction::build_signed(
                chain_id,
                vec![(
                    OutPoint {
                        txid: id,
                        index: index as u32,
                    },
                    faucet,
                )],
                vec![TxOutput {
                    address: sink,
                    amount: amount - fee,
                }],
            );
            transfers.push((
                transfer.txid().to_string(),
                hex::encode(codec::encode(&transfer)),
            ));
        }
        second.push(tx);
    }
    Ok(Workload {
        first,
        second,
        transfers,
    })
}

/// What one submitter achieved.
pub struct Submitted<'a> {
    /// Accepted transfers and when they were sent (ms since the epoch).
    pub accepted: Vec<(&'a str, u64)>,
    /// Transfers the node refused.
    pub rejected: u64,
    /// Why the first refused one was refused.
    pub first_error: Option<String>,
}

/// When a paced submitter's transfers are due.
pub struct Pace {
    /// When the load window began.
    pub start: tokio::time::Instant,
    /// When the first transfer is due, after `start`.
    pub first_us: u64,
    /// The time between two transfers.
    pub every_us: u64,
}

/// Sends `txs` one after the other (each when `pace` says it is due, if paced) until they run
/// out or `until_ms` passes.
pub async fn submit<'a>(
    client: HttpClient,
    txs: Vec<&'a (String, String)>,
    until_ms: u64,
    pace: Option<Pace>,
) -> Submitted<'a> {
    let mut result = Submitted {
        accepted: Vec::with_capacity(txs.len()),
        rejected: 0,
        first_error: None,
    };
    for (k, (txid, raw)) in txs.into_iter().enumerate() {
        if let Some(pace) = &pace {
            // Pacing the offered load, not waiting for a condition.
            let due = pace.first_us + k as u64 * pace.every_us;
            tokio::time::sleep_until(pace.start + Duration::from_micros(due)).await;
        }
        let at = now_ms();
        if at >= until_ms {
            break;
        }
        match client
            .request::<String, _>("sendrawtransaction", rpc_params![raw])
            .await
        {
            Ok(_) => result.accepted.push((txid.as_str(), at)),
            Err(err) => {
                result.rejected += 1;
                result.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_spends_every_coin_once_with_the_minimum_fee() {
        let faucet = Keypair::generate();
        let validator = timecoin_ledger::GenesisValidator::new("v", faucet.public(), 1000);
        let funds = TxOutput {
            address: Address::of(&faucet.public()),
            amount: 1_000_000 * timecoin_types::COIN,
        };
        let genesis = Genesis {
            min_fee_per_byte: 10,
            ..Genesis::new("bench-test", 0, 0, vec![validator], vec![funds])
        };
        let work = build_workload(&genesis, &faucet, 600).unwrap();
        assert_eq!(work.first.outputs.len(), 3);
        assert_eq!(work.second.len(), 3);
        assert_eq!(work.transfers.len(), 600);
        let ids: std::collections::HashSet<_> = work.transfers.iter().map(|t| &t.0).collect();
        assert_eq!(ids.len(), 600);
        let input: u64 = work.first.outputs[0].amount;
        let output: u64 = work.second[0].outputs.iter().map(|o| o.amount).sum();
        assert!(input - output >= genesis.min_fee_for(&work.second[0]));
    }
}
