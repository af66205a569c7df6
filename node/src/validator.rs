//! `timed validator`: join or leave the validator set of a running network by locking or
//! unbonding collateral on-chain, through a node's JSON-RPC.
//!
//! The wallet key (`--key`) pays and owns the collateral; the consensus key is the home's
//! `validator.key`, which signs the proof of possession and, once the registration is final
//! and [`timecoin_ledger::ACTIVATION_DELAY`] heights have passed, votes in the node started
//! from that home.

use crate::config::{resolve, Config};
use crate::keys::read_key;
use crate::wallet::{chain_id, client, fund, runtime, select_coins, submit};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::rpc_params;
use serde_json::Value;
use std::path::{Path, PathBuf};
use timecoin_ledger::{OutPoint, Transaction, TxOutput, MIN_COLLATERAL};
use timecoin_types::{format_amount, parse_amount, Address, Hash256, Keypair, PublicKey};

/// `timed validator …`
#[derive(Subcommand, Debug)]
pub enum ValidatorCommand {
    /// Lock collateral for the home's validator key; prints the txid. The key votes from two
    /// heights after the registration is finalized.
    Register {
        /// The wallet key file that pays and owns the collateral.
        #[arg(long)]
        key: PathBuf,
        /// The node home whose `validator.key` is registered.
        #[arg(long)]
        home: PathBuf,
        /// Collateral in TIME (at least 1000); it is the validator's voting weight.
        #[arg(long)]
        amount: String,
        /// Fee in TIME.
        #[arg(long, default_value = "0.0001")]
        fee: String,
        /// Where rewards go (default: the wallet's address).
        #[arg(long)]
        reward_address: Option<String>,
        /// A node's JSON-RPC URL.
        #[arg(long, default_value = "http://127.0.0.1:26700/")]
        rpc: String,
    },
    /// End the home's validator registration; prints the txid. The key leaves the set two
    /// heights after it is finalized, and the collateral unbonds for the genesis'
    /// `unbonding_blocks` after that.
    Deregister {
        /// The wallet key file that owns the collateral (it also pays the fee).
        #[arg(long)]
        key: PathBuf,
        /// The node home whose `validator.key` is deregistered.
        #[arg(long)]
        home: PathBuf,
        /// Fee in TIME.
        #[arg(long, default_value = "0.0001")]
        fee: String,
        /// A node's JSON-RPC URL.
        #[arg(long, default_value = "http://127.0.0.1:26700/")]
        rpc: String,
    },
}

/// Runs a validator command.
pub fn run(command: ValidatorCommand) -> Result<()> {
    let txid = match command {
        ValidatorCommand::Register {
            key,
            home,
            amount,
            fee,
            reward_address,
            rpc,
        } => {
            let wallet = read_key(&key)?;
            let consensus = consensus_key(&home)?;
            let amount = parse_amount(&amount).context("--amount")?;
            if amount < MIN_COLLATERAL {
                bail!(
                    "--amount {} TIME is below the minimum collateral of {} TIME",
                    format_amount(amount),
                    format_amount(MIN_COLLATERAL)
                );
            }
            let fee = parse_amount(&fee).context("--fee")?;
            let reward_address = match reward_address {
                Some(text) => text.parse().map_err(|e| anyhow!("--reward-address: {e}"))?,
                None => Address::of(&wallet.public()),
            };
            runtime()?.block_on(register(
                &rpc,
                &wallet,
                &consensus,
                reward_address,
                amount,
                fee,
            ))?
        }
        ValidatorCommand::Deregister {
            key,
            home,
            fee,
            rpc,
        } => {
            let wallet = read_key(&key)?;
            let consensus = consensus_key(&home)?.public();
            let fee = parse_amount(&fee).context("--fee")?;
            runtime()?.block_on(deregister(&rpc, &wallet, &consensus, fee))?
        }
    };
    println!("{txid}");
    Ok(())
}

/// The consensus key of a home (its `validator_key`).
fn consensus_key(home: &Path) -> Result<Keypair> {
    let config = Config::load(home)?;
    let path = config.validator_key.ok_or_else(|| {
        anyhow!(
            "{} has no validator_key; create one with `timed init --validator`",
            home.display()
        )
    })?;
    read_key(&resolve(home, &path))
}

async fn register(
    rpc: &str,
    wallet: &Keypair,
    consensus: &Keypair,
    reward_address: Address,
    amount: u64,
    fee: u64,
) -> Result<Hash256> {
    let funding = fund(rpc, wallet, amount, fee).await?;
    let tx = Transaction::build_registration(
        &funding.chain_id,
        funding.inputs,
        consensus,
        reward_address,
        amount,
        funding.change.into_iter().collect(),
    );
    submit(&funding.client, &tx).await
}

async fn deregister(
    rpc: &str,
    wallet: &Keypair,
    consensus: &PublicKey,
    fee: u64,
) -> Result<Hash256> {
    let client = client(rpc)?;
    let chain_id = chain_id(&client).await?;
    let validators: Value = client.request("getvalidators", rpc_params![]).await?;
    let entry = validators
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|v| v["public_key"].as_str() == Some(&consensus.to_string()))
        })
        .ok_or_else(|| anyhow!("validator {consensus} is neither in the set nor entering it"))?;
    if entry["status"] == "leaving" {
        bail!(
            "validator {consensus} is already leaving the set at height {}",
            entry["effective_height"]
        );
    }
    let stake = entry["stake"].as_str().ok_or_else(|| {
        anyhow!("validator {consensus} is a genesis validator: it has no collateral to unbond")
    })?;
    let stake = parse_outpoint(stake)?;
    let owner = Address::of(&wallet.public());
    if entry["owner"].as_str() != Some(&owner.to_string()) {
        bail!(
            "the collateral of {consensus} belongs to {}, not to {owner}",
            entry["owner"]
        );
    }
    // One output is required, so take at least a unit more than the fee.
    let (inputs, total) = select_coins(&client, wallet, fee + 1).await?;
    let tx = Transaction::build_deregistration(
        &chain_id,
        inputs,
        vec![TxOutput {
            address: owner,
            amount: total - fee,
        }],
        stake,
    );
    submit(&client, &tx).await
}

/// Parses `TXID:INDEX` as `getvalidators` prints it.
fn parse_outpoint(text: &str) -> Result<OutPoint> {
    let (txid, index) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("bad outpoint {text}"))?;
    Ok(OutPoint {
        txid: Hash256::from_hex(txid)?,
        index: index
            .parse()
            .with_context(|| format!("bad outpoint {text}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outpoints_parse_as_displayed() {
        let outpoint = OutPoint {
            txid: Hash256::digest(b"x"),
            index: 3,
        };
        assert_eq!(parse_outpoint(&outpoint.to_string()).unwrap(), outpoint);
        assert!(parse_outpoint("abc").is_err());
        assert!(parse_outpoint(&format!("{}:x", Hash256::digest(b"x"))).is_err());
    }
}
