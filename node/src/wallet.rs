//! `timed wallet`: keys, balances and transfers through a node's JSON-RPC.

use crate::keys::{read_key, write_key};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use timecoin_ledger::{OutPoint, Transaction, TxOutput};
use timecoin_types::{codec, format_amount, parse_amount, Address, Hash256, Keypair};

/// `timed wallet …`
#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Create a new key file.
    New {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the address of a key file.
    Address {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Send TIME; prints the txid.
    Send {
        /// The paying key file.
        #[arg(long)]
        key: PathBuf,
        /// Recipient address.
        #[arg(long)]
        to: String,
        /// Amount in TIME, e.g. 12.5.
        #[arg(long)]
        amount: String,
        /// Fee in TIME, e.g. 0.001.
        #[arg(long, default_value = "0.0001")]
        fee: String,
        /// A node's JSON-RPC URL.
        #[arg(long, default_value = "http://127.0.0.1:26700/")]
        rpc: String,
    },
    /// Print the finalized balance of an address in TIME.
    Balance {
        /// The address.
        #[arg(long)]
        address: String,
        /// A node's JSON-RPC URL.
        #[arg(long, default_value = "http://127.0.0.1:26700/")]
        rpc: String,
    },
}

/// Runs a wallet command.
pub fn run(command: WalletCommand) -> Result<()> {
    match command {
        WalletCommand::New { out } => {
            let key = Keypair::generate();
            write_key(&out, &key)?;
            println!("{}", Address::of(&key.public()));
            Ok(())
        }
        WalletCommand::Address { key } => {
            println!("{}", Address::of(&read_key(&key)?.public()));
            Ok(())
        }
        WalletCommand::Send {
            key,
            to,
            amount,
            fee,
            rpc,
        } => {
            let key = read_key(&key)?;
            let to: Address = to.parse().map_err(|e| anyhow!("--to: {e}"))?;
            let amount = parse_amount(&amount).context("--amount")?;
            let fee = parse_amount(&fee).context("--fee")?;
            if amount == 0 {
                bail!("--amount must be positive");
            }
            let txid = runtime()?.block_on(send(&rpc, &key, to, amount, fee))?;
            println!("{txid}");
            Ok(())
        }
        WalletCommand::Balance { address, rpc } => {
            let address: Address = address.parse().map_err(|e| anyhow!("--address: {e}"))?;
            let balance = runtime()?.block_on(async {
                let client = client(&rpc)?;
                let answer: Value = client
                    .request("getbalance", rpc_params![address.to_string()])
                    .await?;
                answer["balance"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("unexpected answer {answer}"))
            })?;
            println!("{}", format_amount(balance));
            Ok(())
        }
    }
}

/// `timed status`: prints the node's `getblockchaininfo`.
pub fn status(rpc: &str) -> Result<()> {
    let info: Value = runtime()?.block_on(async {
        client(rpc)?
            .request("getblockchaininfo", rpc_params![])
            .await
            .map_err(anyhow::Error::from)
    })?;
    println!("{info}");
    Ok(())
}

/// A single-threaded runtime for one CLI command's RPC calls.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A JSON-RPC client for `url`.
pub(crate) fn client(url: &str) -> Result<HttpClient> {
    HttpClientBuilder::default()
        .build(url)
        .with_context(|| format!("invalid RPC URL {url}"))
}

#[derive(Deserialize)]
struct Unspent {
    txid: String,
    index: u32,
    amount: u64,
}

/// The chain id the node at `client` runs (every signature covers it).
pub(crate) async fn chain_id(client: &HttpClient) -> Result<String> {
    let info: Value = client.request("getblockchaininfo", rpc_params![]).await?;
    Ok(info["chain_id"]
        .as_str()
        .ok_or_else(|| anyhow!("node did not report a chain id"))?
        .to_string())
}

/// Picks spendable coins of `key`, largest first, until they cover `need`; returns them (each
/// paired with `key` for signing) and their total.
pub(crate) async fn select_coins<'k>(
    client: &HttpClient,
    key: &'k Keypair,
    need: u64,
) -> Result<(Vec<(OutPoint, &'k Keypair)>, u64)> {
    let from = Address::of(&key.public());
    let mut coins: Vec<Unspent> = client
        .request("listunspent", rpc_params![from.to_string()])
        .await?;
    coins.sort_by_key(|c| std::cmp::Reverse(c.amount));
    let mut inputs = Vec::new();
    let mut total = 0u64;
    for coin in coins {
        if total >= need || inputs.len() == timecoin_ledger::MAX_TX_INPUTS {
            break;
        }
        total += coin.amount;
        inputs.push((
            OutPoint {
                txid: Hash256::from_hex(&coin.txid)?,
                index: coin.index,
            },
            key,
        ));
    }
    if total < need {
        bail!(
            "{from} can spend {} TIME, needs {} TIME",
            format_amount(total),
            format_amount(need)
        );
    }
    Ok((inputs, total))
}

/// Submits a signed transaction; returns the txid the node reports.
pub(crate) async fn submit(client: &HttpClient, tx: &Transaction) -> Result<Hash256> {
    let txid: String = client
        .request(
            "sendrawtransaction",
            rpc_params![hex::encode(codec::encode(tx))],
        )
        .await?;
    Ok(Hash256::from_hex(&txid)?)
}

/// Picks coins largest first, builds and signs the transfer (with change back to the sender)
/// and submits it.
async fn send(rpc: &str, key: &Keypair, to: Address, amount: u64, fee: u64) -> Result<Hash256> {
    let funding = fund(rpc, key, amount, fee).await?;
    let mut outputs = vec![TxOutput {
        address: to,
        amount,
    }];
    outputs.extend(funding.change);
    let tx = Transaction::build_signed(&funding.chain_id, funding.inputs, outputs);
    submit(&funding.client, &tx).await
}

/// What a transaction paying `amount` plus a fee from one key is built from.
pub(crate) struct Funding<'k> {
    /// A client of the node that gets the transaction.
    pub client: HttpClient,
    /// The chain id its signatures cover.
    pub chain_id: String,
    /// The coins it spends, each paired with the key for signing.
    pub inputs: Vec<(OutPoint, &'k Keypair)>,
    /// The change back to the key, if the coins leave any.
    pub change: Option<TxOutput>,
}

/// Connects to the node at `rpc` and picks coins of `key` for `amount` plus `fee`.
pub(crate) async fn fund<'k>(
    rpc: &str,
    key: &'k Keypair,
    amount: u64,
    fee: u64,
) -> Result<Funding<'k>> {
    let client = client(rpc)?;
    let chain_id = chain_id(&client).await?;
    let need = amount
        .checked_add(fee)
        .ok_or_else(|| anyhow!("amount plus fee overflows"))?;
    let (inputs, total) = select_coins(&client, key, need).await?;
    let change = (total > need).then(|| TxOutput {
        address: Address::of(&key.public()),
        amount: total - need,
    });
    Ok(Funding {
        client,
        chain_id,
        inputs,
        change,
    })
}
