//! The measurement phases of one bench run: start the cluster, fund the coins, then measure
//! an idle window and a load window and turn what the nodes report into figures.

use super::cluster::{poll, BlockInfo, Cluster, Counters, DRAIN_DEADLINE, SETTLE_DEADLINE};
use super::report::{figure, seed_figure, Figure};
use super::workload::{submit, Pace, Workload};
use super::{now_ms, BenchArgs};
use anyhow::{ensure, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The seed's end-to-end time per block (two 600 ms vote-collection windows), for comparison.
const SEED_BLOCK_MS: f64 = 1200.0;
/// How long the nodes get to come up and finalize their first blocks.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// One run: start, prepare coins, measure idle, measure load.
pub async fn run_once(args: &BenchArgs, run: usize, base_port: u16) -> Result<Vec<Figure>> {
    let (cluster, workload) = Cluster::start(args, run, base_port)?;
    cluster
        .wait_all_at(2, STARTUP_DEADLINE, "the first finalized blocks")
        .await?;
    cluster
        .settle(std::slice::from_ref(&workload.first), "the first fan-out")
        .await?;
    cluster
        .settle(&workload.second, "the second fan-out")
        .await?;

    let mut figures = Vec::new();
    let idle_memory = measure_idle(&cluster, args, &mut figures).await?;
    let load_memory = measure_load(&cluster, &workload, args, &mut figures).await?;
    let max = |values: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        values.iter().map(pick).fold(0.0, f64::max)
    };
    figures.push(figure(
        "RSS per node idle (max)",
        "MiB",
        max(&idle_memory, |m| m.0),
    ));
    figures.push(figure(
        "RSS per node after load (max)",
        "MiB",
        max(&load_memory, |m| m.0),
    ));
    figures.push(figure(
        "peak RSS per node (VmHWM, max)",
        "MiB",
        max(&load_memory, |m| m.1),
    ));
    Ok(figures)
}

/// Idle: empty back-to-back blocks for `--seconds`. Pushes its figures; returns the nodes'
/// memory at its end. (The polling closure copies the `cluster` reference into its futures.)
async fn measure_idle(
    cluster: &Cluster,
    args: &BenchArgs,
    figures: &mut Vec<Figure>,
) -> Result<Vec<(f64, f64)>> {
    let start = PhaseStart::take(cluster).await?;
    let h0 = start.tip;
    let started = Instant::now();
    poll(
        Duration::from_secs(args.seconds + 1),
        "the idle window",
        || async move {
            cluster.check_alive()?;
            Ok(started.elapsed() >= Duration::from_secs(args.seconds))
        },
    )
    .await?;
    let h1 = cluster.tip(0).await?;
    let (idle_bytes, idle_copies, idle_cpu) = start.since(cluster).await?;
    let idle_memory = cluster.memory()?;
    ensure!(h1 > h0, "no block was finalized in the idle window");
    cluster
        .wait_all_at(h1, SETTLE_DEADLINE, "the idle blocks on all nodes")
        .await?;
    let blocks = cluster.blocks(h0, h1).await?;
    let mut latencies = Vec::new();
    for index in 1..blocks[0].len() {
        if let (proposed, Some(on_all)) = finality(&blocks, index) {
            latencies.push(on_all.saturating_sub(proposed));
        }
    }
    latencies.sort_unstable();
    let span_ms = blocks[0][blocks[0].len() - 1]
        .finalized_at_ms
        .zip(blocks[0][0].finalized_at_ms)
        .map_or(0, |(last, first)| last.saturating_sub(first));
    let idle_blocks = h1 - h0;
    figures.extend(latency_percentiles(
        "idle latency",
        &latencies,
        Some(SEED_BLOCK_MS),
    ));
    figures.push(seed_figure(
        "idle blocks/s",
        "1/s",
        idle_blocks as f64 * 1000.0 / span_ms.max(1) as f64,
        1000.0 / SEED_BLOCK_MS,
    ));
    figures.push(figure(
        "idle bytes on the wire per block",
        "B",
        idle_bytes as f64 / idle_blocks as f64,
    ));
    figures.push(figure("idle gossip copies per message", "x", idle_copies));
    figures.push(figure(
        "idle CPU per block (all nodes)",
        "ms",
        idle_cpu / idle_blocks as f64,
    ));
    Ok(idle_memory)
}

/// Load: every node gets its share of the transfers from `concurrency` submitters for
/// `--seconds`. Pushes its figures; returns the nodes' memory at its end.
async fn measure_load(
    cluster: &Cluster,
    workload: &Workload,
    args: &BenchArgs,
    figures: &mut Vec<Figure>,
) -> Result<Vec<(f64, f64)>> {
    let start = PhaseStart::take(cluster).await?;
    let l0 = start.tip;
    let t0 = now_ms();
    let window_end = t0 + args.seconds * 1000;
    let workers = cluster.clients.len() * args.concurrency;
    let submitters = (0..workers).map(|w| {
        let client = cluster.clients[w % cluster.clients.len()].clone();
        let mine: Vec<&(String, String)> =
            workload.transfers.iter().skip(w).step_by(workers).collect();
        // Worker w sends the overall transfers w, w + workers, …, so the k-th of its own is
        // due at (w + k × workers) / rate seconds after the start.
        let pace = (args.rate > 0).then(|| Pace {
            start: tokio::time::Instant::now(),
            first_us: w as u64 * 1_000_000 / args.rate,
            every_us: workers as u64 * 1_000_000 / args.rate,
        });
        submit(client, mine, window_end, pace)
    });
    let results = futures::future::join_all(submitters).await;
    let stopped = now_ms();
    let mut submitted: HashMap<&str, u64> = HashMap::new();
    let mut rejected = 0u64;
    let mut first_error = None;
    for result in results {
        submitted.extend(result.accepted);
        rejected += result.rejected;
        first_error = first_error.or(result.first_error);
    }
    if let Some(err) = &first_error {
        eprintln!("  {rejected} transfers refused, e.g. {err}");
    }
    let pending = cluster.pending().await?;
    if pending > 0 {
        eprintln!("  {pending} transfers still pending {DRAIN_DEADLINE:?} after the window");
    }
    let mut l1 = u64::MAX;
    for i in 0..cluster.clients.len() {
        l1 = l1.min(cluster.tip(i).await?);
    }
    let (load_bytes, load_copies, load_cpu) = start.since(cluster).await?;
    let load_memory = cluster.memory()?;
    let blocks = cluster.blocks(l0, l1).await?;
    // The window ends when it is over or, if the coins ran out first, when the last
    // transfer was finalized.
    let last_tx_at = (1..blocks[0].len())
        .filter(|&i| !blocks[0][i].transactions.is_empty())
        .filter_map(|i| blocks[0][i].finalized_at_ms)
        .max()
        .unwrap_or(window_end);
    let t_end = window_end.min(last_tx_at);
    let mut block_latencies = Vec::new();
    let mut tx_latencies = Vec::new();
    let mut finalized_txs = 0usize;
    let mut window_blocks = 0usize;
    for index in 1..blocks[0].len() {
        let block = &blocks[0][index];
        let Some(here) = block.finalized_at_ms else {
            continue;
        };
        if here <= t0 || here > t_end {
            continue;
        }
        window_blocks += 1;
        finalized_txs += block.transactions.len();
        if let (proposed, Some(on_all)) = finality(&blocks, index) {
            block_latencies.push(on_all.saturating_sub(proposed));
            tx_latencies.extend(
                block
                    .transactions
                    .iter()
                    .filter_map(|tx| submitted.get(tx.txid.as_str()))
                    .map(|&at| on_all.saturating_sub(at)),
            );
        }
    }
    block_latencies.sort_unstable();
    tx_latencies.sort_unstable();
    let window_ms = t_end.saturating_sub(t0).max(1) as f64;
    figures.push(figure(
        "load finalized tx/s",
        "1/s",
        finalized_txs as f64 * 1000.0 / window_ms,
    ));
    figures.push(figure(
        "load accepted submissions/s",
        "1/s",
        submitted.len() as f64 * 1000.0 / stopped.saturating_sub(t0).max(1) as f64,
    ));
    figures.extend(latency_percentiles(
        "load block latency",
        &block_latencies,
        Some(SEED_BLOCK_MS),
    ));
    figures.extend(latency_percentiles(
        "load tx submit->final",
        &tx_latencies,
        None,
    ));
    figures.push(seed_figure(
        "load blocks/s",
        "1/s",
        window_blocks as f64 * 1000.0 / window_ms,
        1000.0 / SEED_BLOCK_MS,
    ));
    figures.push(figure(
        "load txs per block",
        "tx",
        finalized_txs as f64 / window_blocks.max(1) as f64,
    ));
    figures.push(figure(
        "load bytes on the wire per block",
        "B",
        load_bytes as f64 / l1.saturating_sub(l0).max(1) as f64,
    ));
    figures.push(figure("load gossip copies per message", "x", load_copies));
    let all_txs: usize = blocks[0].iter().skip(1).map(|b| b.transactions.len()).sum();
    figures.push(figure(
        "load CPU per finalized tx (all nodes)",
        "us",
        load_cpu * 1000.0 / all_txs.max(1) as f64,
    ));
    figures.push(figure("transfers refused", "tx", rejected as f64));
    figures.push(figure(
        "transfers pending after drain",
        "tx",
        pending as f64,
    ));
    Ok(load_memory)
}

/// Where the cluster stood when a phase began, to measure the phase by differences.
struct PhaseStart {
    counters: Counters,
    cpu_ms: f64,
    /// Node 0's finalized tip.
    tip: u64,
}

impl PhaseStart {
    async fn take(cluster: &Cluster) -> Result<PhaseStart> {
        Ok(PhaseStart {
            counters: cluster.counters().await?,
            cpu_ms: cluster.cpu_ms()?,
            tip: cluster.tip(0).await?,
        })
    }

    /// Since the start: bytes sent, gossip copies per first delivery, CPU milliseconds.
    async fn since(&self, cluster: &Cluster) -> Result<(u64, f64, f64)> {
        let (bytes, copies) = cluster.counters().await?.since(&self.counters);
        Ok((bytes, copies, cluster.cpu_ms()? - self.cpu_ms))
    }
}

/// Per height, when the block was proposed and when the last node finalized it (None if a
/// node applied it through catch-up sync and so has no finalization time).
fn finality(blocks: &[Vec<BlockInfo>], index: usize) -> (u64, Option<u64>) {
    let proposed = blocks[0][index].time_ms;
    let on_all = blocks
        .iter()
        .map(|node| node[index].finalized_at_ms)
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().max());
    (proposed, on_all)
}

/// The median and 99th percentile of `sorted` latencies as the figures `"{name} p50"` and
/// `"{name} p99"` (ms).
fn latency_percentiles(name: &str, sorted: &[u64], seed: Option<f64>) -> [Figure; 2] {
    [50, 99].map(|percent| Figure {
        name: format!("{name} p{percent}"),
        unit: "ms",
        value: percentile(sorted, percent),
        seed,
    })
}

/// Nearest-rank percentile of a sorted list (0 for an empty one).
fn percentile(sorted: &[u64], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50.0);
        assert_eq!(percentile(&values, 99), 99.0);
        assert_eq!(percentile(&[7], 99), 7.0);
        assert_eq!(percentile(&[], 50), 0.0);
    }
}
