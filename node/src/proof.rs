//! `timed proof export` and `timed verify`: finality proofs anyone can check offline.
//!
//! The exporter asks a node for the light blocks of every height where the validator set
//! changed between the genesis (or a trusted height) and the target, then the target's, and
//! optionally a transaction's inclusion path, and writes them as one JSON [`Bundle`]. The
//! verifier needs only the genesis file and the bundle; the checks are `timecoin-light`'s.

use crate::rpc::MAX_CHANGE_SCAN;
use crate::wallet::{chain_id, client, runtime};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::rpc_params;
use serde::Deserialize;
use std::path::PathBuf;
use timecoin_ledger::Genesis;
use timecoin_light::{verify, Bundle, LightBlock, Trust, TxInclusion, BUNDLE_FORMAT};
use timecoin_types::Hash256;

/// `timed proof …`.
#[derive(Subcommand)]
pub enum ProofCommand {
    /// Write a self-contained proof that block H (and optionally a transaction in it) is
    /// final, checkable with `timed verify`.
    Export(ExportArgs),
}

/// `timed proof export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The block to prove final.
    #[arg(long)]
    pub height: u64,
    /// Start from this height, which the verifier already trusts, instead of the genesis.
    #[arg(long = "from")]
    pub trusted: Option<u64>,
    /// Also prove that this transaction is in block H.
    #[arg(long)]
    pub txid: Option<String>,
    /// Where to write the bundle (JSON).
    #[arg(long)]
    pub out: PathBuf,
    /// The JSON-RPC URL of a node that has the block.
    #[arg(long, default_value = "http://127.0.0.1:8545/")]
    pub rpc: String,
}

/// `timed verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// For a bundle exported `--from` a trusted height: that block, as HEIGHT:HASH.
    #[arg(long)]
    pub trust: Option<String>,
    /// The bundle written by `timed proof export`.
    pub bundle: PathBuf,
}

/// Runs `timed proof …`.
pub fn run(command: ProofCommand) -> Result<()> {
    match command {
        ProofCommand::Export(args) => {
            let bundle = runtime()?.block_on(export(&args))?;
            let mut text = serde_json::to_string_pretty(&bundle)?;
            text.push('\n');
            std::fs::write(&args.out, text)
                .with_context(|| format!("cannot write {}", args.out.display()))?;
            println!(
                "wrote {}: {} light blocks up to height {}{}",
                args.out.display(),
                bundle.blocks.len(),
                args.height,
                if bundle.transaction.is_some() {
                    " with the transaction's path"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

/// Asks the node at `args.rpc` for everything the bundle needs.
pub async fn export(args: &ExportArgs) -> Result<Bundle> {
    let node = client(&args.rpc)?;
    let target = args.height;
    if target == 0 {
        bail!("the genesis block needs no proof: it is the genesis file");
    }
    let start = args.trusted.unwrap_or(0);
    if start > target {
        bail!("--from {start} is above --height {target}");
    }
    let mut heights: Vec<u64> = args.trusted.into_iter().collect();
    let mut from = start + 1;
    while from < target {
        let to = target.min(from.saturating_add(MAX_CHANGE_SCAN));
        let changes: Changes = node
            .request("getvalidatorchanges", rpc_params![from, to])
            .await
            .with_context(|| format!("getvalidatorchanges {from}..{to}"))?;
        heights.extend(changes.heights.into_iter().filter(|&h| h < target));
        from = to;
    }
    if heights.last() != Some(&target) {
        heights.push(target);
    }
    let mut blocks = Vec::with_capacity(heights.len());
    for height in heights {
        blocks.push(light_block(&node, height).await?);
    }
    let transaction = match &args.txid {
        None => None,
        Some(txid) => Some(tx_inclusion(&node, txid, target).await?),
    };
    Ok(Bundle {
        format: BUNDLE_FORMAT,
        chain_id: chain_id(&node).await?,
        trusted_height: args.trusted,
        blocks,
        transaction,
    })
}

#[derive(Deserialize)]
struct Changes {
    heights: Vec<u64>,
}

async fn light_block(node: &HttpClient, height: u64) -> Result<LightBlock> {
    node.request("getlightblock", rpc_params![height])
        .await
        .with_context(|| format!("getlightblock {height}"))
}

async fn tx_inclusion(node: &HttpClient, txid: &str, target: u64) -> Result<TxInclusion> {
    #[derive(Deserialize)]
    struct Proof {
        height: u64,
        #[serde(flatten)]
        inclusion: TxInclusion,
    }
    let proof: Proof = node
        .request("gettxproof", rpc_params![txid])
        .await
        .with_context(|| format!("gettxproof {txid}"))?;
    if proof.height != target {
        bail!(
            "transaction {txid} is in block {}, not {target}",
            proof.height
        );
    }
    Ok(proof.inclusion)
}

/// Runs `timed verify`: prints the one-line summary, or fails naming the first problem.
pub fn run_verify(args: VerifyArgs) -> Result<()> {
    let genesis = Genesis::load(&args.genesis)?;
    let text = std::fs::read_to_string(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))?;
    let bundle: Bundle = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a proof bundle", args.bundle.display()))?;
    let trust = match &args.trust {
        None => Trust::Genesis(&genesis),
        Some(text) => {
            let (height, hash) = text.split_once(':').context("--trust is HEIGHT:HASH")?;
            let height = height.parse().context("--trust height")?;
            let hash = Hash256::from_hex(hash).context("--trust hash")?;
            Trust::Block(&genesis, height, hash)
        }
    };
    let summary = verify(trust, &bundle).context("verification failed")?;
    println!("{summary}");
    Ok(())
}
