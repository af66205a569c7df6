//! `timed bench`: runs real validators on loopback and measures them from the outside.
//!
//! Every run generates a fresh testnet with back-to-back blocks (`--block-interval-ms 0`),
//! starts one `timed start` process per validator (this same executable), and measures over
//! JSON-RPC and `/metrics` only, so the figures are what an operator would see:
//!
//! 1. *idle*: finalization latency from proposal (the header's `time_ms`, stamped when the
//!    proposer built the block) to finalized-on-all (the latest `finalized_at_ms` over all
//!    nodes), and blocks per second;
//! 2. *load*: signed one-input transfers submitted concurrently over RPC to every node;
//!    finalized transactions per second, block latency and submit-to-finalized-on-all latency;
//! 3. bytes on the wire per block (libp2p's bandwidth counters, summed over all nodes);
//! 4. resident memory per node (`VmRSS` / `VmHWM` from `/proc`).
//!
//! All transactions are built and signed before the nodes start, so signing does not compete
//! with the nodes for CPU. Every process started is stopped again (SIGTERM, then SIGKILL) when
//! a run ends, fails or is interrupted; the nodes also get SIGTERM if the bench itself dies.
//!
//! [`cluster`] starts, watches and stops the nodes; [`workload`] signs and submits the
//! transfers; [`phases`] measures one run; [`report`] prints the figures and their medians.

mod cluster;
mod phases;
mod report;
mod workload;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use report::{load_average, medians, print_table, Report};

/// Options of `timed bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Length of the idle and of the load measurement window, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Independent runs (each on a fresh testnet); figures are reported per run and as medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Coins prepared for the load phase (one transfer each; at most 256 × 256).
    #[arg(long, default_value_t = 65_536)]
    pub coins: usize,
    /// Transfers in flight per node during the load phase.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Offered load in transfers per second over all nodes (0: as fast as the nodes accept
    /// them). An unbounded flood measures how the node copes with overload, not its throughput.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// First port tried: node i uses P+i for p2p and P+100+i for RPC (moved up if taken).
    #[arg(long, default_value_t = 29_000)]
    pub base_port: u16,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep each run's testnet directory (homes and node logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Start every node with `--latency-ms MS`: each delays what it receives by MS, so every
    /// message between two nodes takes MS more than on loopback.
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,
    /// Start every node with `--jitter-ms MS` (uniform 0..=MS on top of `--latency-ms`).
    #[arg(long, value_name = "MS", requires = "latency_ms")]
    pub jitter_ms: Option<u64>,
}

/// Runs `timed bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    ensure!(
        (1..=90).contains(&args.validators),
        "--validators must be 1 to 90"
    );
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.seconds >= 1, "--seconds must be at least 1");
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let per_tx = timecoin_ledger::MAX_TX_OUTPUTS;
    ensure!(
        (1..=per_tx * per_tx).contains(&args.coins),
        "--coins must be 1 to {}",
        per_tx * per_tx
    );
    // The current-thread runtime polls this future on the main thread, which also spawns the
    // nodes: their parent-death signal is tied to that thread staying alive.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            // Dropping the bench future on a signal drops its cluster, which stops the nodes.
            tokio::select! {
                result = bench(&args) => result,
                _ = tokio::signal::ctrl_c() => bail!("interrupted; nodes stopped"),
                _ = terminate.recv() => bail!("terminated; nodes stopped"),
            }
        })
}

async fn bench(args: &BenchArgs) -> Result<()> {
    let load_before = load_average();
    let mut runs = Vec::new();
    for run in 0..args.runs {
        if !args.json {
            let latency = args.latency_ms.map_or(String::new(), |ms| {
                format!(
                    ", {ms} ms one way + {} ms jitter",
                    args.jitter_ms.unwrap_or(0)
                )
            });
            eprintln!(
                "run {}/{}: {} validators, {} s idle + {} s load{latency}",
                run + 1,
                args.runs,
                args.validators,
                args.seconds,
                args.seconds
            );
        }
        // A different port range per run: the previous run's sockets may linger.
        let offset = u16::try_from(run * 200).context("too many runs for the port range")?;
        let figures = phases::run_once(args, run, args.base_port.saturating_add(offset)).await?;
        if !args.json {
            for f in &figures {
                eprintln!("  {:<34} {:>12.1} {}", f.name, f.value, f.unit);
            }
        }
        runs.push(figures);
    }
    let report = Report {
        validators: args.validators,
        seconds: args.seconds,
        latency_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_before: load_before,
        load_average_after: load_average(),
        median: medians(&runs),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Wall-clock milliseconds, as the nodes stamp their blocks.
fn now_ms() -> u64 {
    crate::testnet::now_ms()
}
