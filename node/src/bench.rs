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

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Args;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use timecoin_ledger::{reward_outpoint, Genesis, OutPoint, Transaction, TxOutput};
use timecoin_types::{codec, Address, Keypair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The seed's end-to-end time per block (two 600 ms vote-collection windows), for comparison.
const SEED_BLOCK_MS: f64 = 1200.0;
/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(20);
/// How long the nodes get to come up and finalize their first blocks.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the fan-out transactions get to be finalized.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the mempools get to drain after the load window before the figures are taken
/// from whatever was finalized (a stalled chain must not hang the bench).
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopped node gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The Prometheus counter of libp2p's transport bandwidth (one series per direction).
const BANDWIDTH_METRIC: &str = "libp2p_libp2p_bandwidth_bytes_total";
/// Gossip messages received per topic, duplicates filtered out (first deliveries).
const RECEIVED_METRIC: &str = "gossipsub_router_topic_msg_recv_counts_total";
/// Gossip messages received per topic, every copy counted.
const RECEIVED_UNFILTERED_METRIC: &str = "gossipsub_router_topic_msg_recv_counts_unfiltered_total";

/// Monotonic counters scraped from `/metrics`, summed over the nodes.
#[derive(Default, Clone, Copy)]
struct Counters {
    /// Bytes sent by libp2p (each byte on loopback is counted once, by its sender).
    bytes_out: u64,
    /// Gossip messages received, first copies only.
    received: u64,
    /// Gossip messages received, all copies.
    received_copies: u64,
}

impl Counters {
    /// What happened between `earlier` and `self`: (bytes sent, copies per first delivery).
    fn since(&self, earlier: &Counters) -> (u64, f64) {
        let copies = self.received_copies.saturating_sub(earlier.received_copies);
        let firsts = self.received.saturating_sub(earlier.received).max(1);
        (
            self.bytes_out.saturating_sub(earlier.bytes_out),
            copies as f64 / firsts as f64,
        )
    }
}

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
}

/// One measured quantity of one run.
#[derive(Clone, Serialize)]
struct Figure {
    name: &'static str,
    unit: &'static str,
    value: f64,
    /// The seed's figure for the same quantity, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<f64>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Report {
    validators: usize,
    seconds: u64,
    cpus: usize,
    load_average_before: String,
    load_average_after: String,
    runs: Vec<Vec<Figure>>,
    median: Vec<Figure>,
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
            eprintln!(
                "run {}/{}: {} validators, {} s idle + {} s load",
                run + 1,
                args.runs,
                args.validators,
                args.seconds,
                args.seconds
            );
        }
        // A different port range per run: the previous run's sockets may linger.
        let offset = u16::try_from(run * 200).context("too many runs for the port range")?;
        let figures = run_once(args, run, args.base_port.saturating_add(offset)).await?;
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

/// Per figure, the median over the runs.
fn medians(runs: &[Vec<Figure>]) -> Vec<Figure> {
    runs[0]
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let mut values: Vec<f64> = runs.iter().map(|r| r[i].value).collect();
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            let value = if values.len() % 2 == 1 {
                values[mid]
            } else {
                (values[mid - 1] + values[mid]) / 2.0
            };
            Figure {
                value,
                ..first.clone()
            }
        })
        .collect()
}

fn print_table(report: &Report) {
    println!(
        "timed bench: {} validators on loopback, back-to-back blocks, {} s per phase, {} CPUs, load average {} before / {} after",
        report.validators,
        report.seconds,
        report.cpus,
        report.load_average_before,
        report.load_average_after
    );
    let mut header = format!("{:<40}", "figure");
    for i in 0..report.runs.len() {
        header.push_str(&format!("{:>11}", format!("run {}", i + 1)));
    }
    header.push_str(&format!("{:>11}{:>11}", "median", "seed"));
    println!("{header}");
    for (i, median) in report.median.iter().enumerate() {
        let mut line = format!("{:<40}", format!("{} ({})", median.name, median.unit));
        for run in &report.runs {
            line.push_str(&format!("{:>11}", format_value(run[i].value)));
        }
        line.push_str(&format!(
            "{:>11}{:>11}",
            format_value(median.value),
            median.seed.map_or_else(|| "-".to_string(), format_value)
        ));
        println!("{line}");
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// `/proc/loadavg`'s first three fields, to say how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The transactions of one run, all signed in advance.
struct Workload {
    /// The faucet's output split into `fan_out` coins.
    first: Transaction,
    /// Each of those coins split further.
    second: Vec<Transaction>,
    /// One transfer per final coin: (txid as hex, hex of the CBOR encoding).
    transfers: Vec<(String, String)>,
}

/// Splits the faucet's single genesis output into `coins` coins in two levels of fan-out and
/// signs one transfer spending each. Everything is derivable before the chain runs: the
/// genesis output sits at a fixed outpoint and txids do not cover signatures.
fn build_workload(genesis: &Genesis, faucet: &Keypair, coins: usize) -> Result<Workload> {
    let chain_id = &genesis.chain_id;
    let fee = genesis.min_fee;
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

/// The nodes of one run; dropping it stops them and removes their directory.
struct Cluster {
    dir: PathBuf,
    keep: bool,
    children: Vec<Child>,
    clients: Vec<HttpClient>,
    rpc_ports: Vec<u16>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &self.children {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own
                // unreaped child, so it cannot name a recycled process.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(POLL),
                }
            }
        }
        if self.keep {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first port range at or above `start` whose p2p and RPC ports are all free now.
fn free_base_port(start: u16, nodes: usize) -> Result<u16> {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let mut base = start;
    for _ in 0..100 {
        let ports = (0..nodes).flat_map(|i| [base as usize + i, base as usize + 100 + i]);
        if ports
            .map(u16::try_from)
            .all(|p| p.is_ok_and(|p| p != 0 && free(p)))
        {
            return Ok(base);
        }
        base = base
            .checked_add(200)
            .ok_or_else(|| anyhow!("no free port range above {start}"))?;
    }
    bail!("no free port range above {start}")
}

impl Cluster {
    /// Generates a testnet with back-to-back blocks in a fresh directory and starts every node.
    fn start(args: &BenchArgs, run: usize, base_port: u16) -> Result<(Cluster, Workload)> {
        let exe = std::env::current_exe().context("cannot find the timed executable")?;
        let dir = std::env::temp_dir().join(format!("timed-bench-{}-{run}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let base = free_base_port(base_port, args.validators)?;
        let output = Command::new(&exe)
            .args(["testnet", "--validators", &args.validators.to_string()])
            .arg("--out")
            .arg(&dir)
            .args(["--base-port", &base.to_string()])
            .args(["--block-interval-ms", "0", "--chain-id", "timecoin-bench"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run timed testnet")?;
        ensure!(
            output.status.success(),
            "timed testnet failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let genesis = Genesis::load(&dir.join("genesis.json"))?;
        let faucet = crate::keys::read_key(&dir.join("faucet.key"))?;
        let workload = build_workload(&genesis, &faucet, args.coins)?;

        let mut cluster = Cluster {
            dir: dir.clone(),
            keep: args.keep,
            children: Vec::new(),
            clients: Vec::new(),
            rpc_ports: Vec::new(),
        };
        for i in 0..args.validators {
            let home = dir.join(format!("node{i}"));
            let log = std::fs::File::create(home.join("node.log"))?;
            let mut command = Command::new(&exe);
            command
                .arg("start")
                .arg("--home")
                .arg(&home)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group: a terminal's Ctrl-C reaches only the bench, which then
                // stops the nodes itself instead of racing them.
                .process_group(0);
            // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
            // async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    // If the bench dies without cleaning up (SIGKILL), the node still stops.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cluster.children.push(
                command
                    .spawn()
                    .with_context(|| format!("cannot start node {i}"))?,
            );
            let port = base + 100 + i as u16;
            cluster.rpc_ports.push(port);
            cluster.clients.push(
                HttpClientBuilder::default()
                    .max_response_size(256 << 20)
                    .request_timeout(Duration::from_secs(60))
                    .build(format!("http://127.0.0.1:{port}/"))?,
            );
        }
        Ok((cluster, workload))
    }

    /// Finalized tip of node `i`.
    async fn tip(&self, i: usize) -> Result<u64> {
        let info: Value = self.clients[i]
            .request("getblockchaininfo", rpc_params![])
            .await?;
        info["height"]
            .as_u64()
            .ok_or_else(|| anyhow!("node {i} reported no height: {info}"))
    }

    /// Waits until every node's tip reaches `height`.
    async fn wait_all_at(&self, height: u64, deadline: Duration, what: &str) -> Result<()> {
        poll(deadline, what, || async move {
            for i in 0..self.clients.len() {
                self.check_alive()?;
                match self.tip(i).await {
                    Ok(tip) if tip >= height => {}
                    _ => return Ok(false),
                }
            }
            Ok(true)
        })
        .await
    }

    /// Fails if a node process has exited.
    fn check_alive(&self) -> Result<()> {
        for (i, child) in self.children.iter().enumerate() {
            // try_wait needs &mut; /proc tells the same without reaping.
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
            if status.is_empty() || status.contains("State:\tZ") {
                bail!(
                    "node {i} exited; see {}",
                    self.dir.join(format!("node{i}/node.log")).display()
                );
            }
        }
        Ok(())
    }

    /// Counters summed over all nodes.
    async fn counters(&self) -> Result<Counters> {
        let mut total = Counters::default();
        for &port in &self.rpc_ports {
            let text = http_get(port, "/metrics").await?;
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let Ok(value) = value.parse::<f64>() else {
                    continue;
                };
                let name = series.split('{').next().unwrap_or(series);
                let slot = match name {
                    BANDWIDTH_METRIC if series.contains("direction=\"Outbound\"") => {
                        &mut total.bytes_out
                    }
                    RECEIVED_METRIC => &mut total.received,
                    RECEIVED_UNFILTERED_METRIC => &mut total.received_copies,
                    _ => continue,
                };
                *slot += value as u64;
            }
        }
        Ok(total)
    }

    /// CPU time (user + system) used so far by all nodes together, in milliseconds.
    fn cpu_ms(&self) -> Result<f64> {
        // SAFETY: sysconf(3) only reads a system constant.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut ticks = 0u64;
        for child in &self.children {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))?;
            // Fields after the parenthesised command name: state is the first, utime and
            // stime are the 12th and 13th.
            let rest = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest)
                .ok_or_else(|| anyhow!("unreadable /proc stat"))?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for index in [11, 12] {
                ticks += fields
                    .get(index)
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| anyhow!("unreadable /proc stat"))?;
            }
        }
        Ok(ticks as f64 * 1000.0 / ticks_per_second)
    }

    /// Per node, `VmRSS` and `VmHWM` in MiB.
    fn memory(&self) -> Result<Vec<(f64, f64)>> {
        self.children
            .iter()
            .map(|child| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
                let field = |name: &str| -> Result<f64> {
                    let kib: u64 = status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| anyhow!("no {name} in /proc status"))?;
                    Ok(kib as f64 / 1024.0)
                };
                Ok((field("VmRSS:")?, field("VmHWM:")?))
            })
            .collect()
    }

    /// Blocks `from..=to` as every node reports them: `[node][height - from]`.
    async fn blocks(&self, from: u64, to: u64) -> Result<Vec<Vec<BlockInfo>>> {
        let fetches = self
            .clients
            .iter()
            .enumerate()
            .map(|(i, client)| async move {
                let mut list = Vec::new();
                for height in from..=to {
                    let block: BlockInfo = client
                        .request("getblock", rpc_params![height])
                        .await
                        .with_context(|| format!("getblock {height} on node {i}"))?;
                    list.push(block);
                }
                Ok::<_, anyhow::Error>(list)
            });
        futures::future::try_join_all(fetches).await
    }

    /// Waits up to [`DRAIN_DEADLINE`] for every mempool to empty; returns what is left, summed
    /// over the nodes.
    async fn pending(&self) -> Result<u64> {
        let end = tokio::time::Instant::now() + DRAIN_DEADLINE;
        loop {
            self.check_alive()?;
            let mut left = 0;
            for client in &self.clients {
                let info: Value = client.request("getmempoolinfo", rpc_params![]).await?;
                left += info["size"].as_u64().unwrap_or(0);
            }
            if left == 0 || tokio::time::Instant::now() >= end {
                return Ok(left);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Submits `txs` to node 0 and waits until every node has finalized all of them.
    async fn settle(&self, txs: &[Transaction], what: &str) -> Result<()> {
        for tx in txs {
            let _: String = self.clients[0]
                .request(
                    "sendrawtransaction",
                    rpc_params![hex::encode(codec::encode(tx))],
                )
                .await
                .with_context(|| format!("submitting the {what}"))?;
        }
        let height = std::cell::Cell::new(0);
        for tx in txs {
            let txid = &tx.txid().to_string();
            let height = &height;
            poll(SETTLE_DEADLINE, what, || async move {
                let answer: Value = self.clients[0]
                    .request("gettransaction", rpc_params![txid])
                    .await?;
                if let Some(h) = answer["height"].as_u64() {
                    height.set(height.get().max(h));
                    return Ok(true);
                }
                Ok(false)
            })
            .await?;
        }
        self.wait_all_at(height.get(), SETTLE_DEADLINE, what).await
    }
}

/// Repeats `check` until it answers true, failing after `deadline`.
async fn poll<F, Fut>(deadline: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A bare HTTP/1.0 GET on loopback (the metrics endpoint is not JSON-RPC).
async fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| anyhow!("malformed HTTP response from port {port}"))
}

/// The parts of `getblock` the bench uses.
#[derive(Deserialize)]
struct BlockInfo {
    time_ms: u64,
    finalized_at_ms: Option<u64>,
    transactions: Vec<TxRef>,
}

#[derive(Deserialize)]
struct TxRef {
    txid: String,
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

/// Nearest-rank percentile of a sorted list (0 for an empty one).
fn percentile(sorted: &[u64], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1] as f64
}

fn figure(name: &'static str, unit: &'static str, value: f64) -> Figure {
    Figure {
        name,
        unit,
        value,
        seed: None,
    }
}

fn seed_figure(name: &'static str, unit: &'static str, value: f64, seed: f64) -> Figure {
    Figure {
        seed: Some(seed),
        ..figure(name, unit, value)
    }
}

fn now_ms() -> u64 {
    crate::testnet::now_ms()
}

/// One run: start, prepare coins, measure idle, measure load.
async fn run_once(args: &BenchArgs, run: usize, base_port: u16) -> Result<Vec<Figure>> {
    let (owned, workload) = Cluster::start(args, run, base_port)?;
    // The polling closures below copy this reference into their futures.
    let cluster = &owned;
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

    // Idle: empty back-to-back blocks.
    let idle_counters = cluster.counters().await?;
    let cpu0 = cluster.cpu_ms()?;
    let h0 = cluster.tip(0).await?;
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
    let (idle_bytes, idle_copies) = cluster.counters().await?.since(&idle_counters);
    let cpu1 = cluster.cpu_ms()?;
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
    figures.push(seed_figure(
        "idle latency p50",
        "ms",
        percentile(&latencies, 50),
        SEED_BLOCK_MS,
    ));
    figures.push(seed_figure(
        "idle latency p99",
        "ms",
        percentile(&latencies, 99),
        SEED_BLOCK_MS,
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
        (cpu1 - cpu0) / idle_blocks as f64,
    ));

    // Load: every node gets its share of the transfers from `concurrency` submitters.
    let load_counters = cluster.counters().await?;
    let load_cpu0 = cluster.cpu_ms()?;
    let l0 = cluster.tip(0).await?;
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
    let (load_bytes, load_copies) = cluster.counters().await?.since(&load_counters);
    let load_cpu1 = cluster.cpu_ms()?;
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
    figures.push(seed_figure(
        "load block latency p50",
        "ms",
        percentile(&block_latencies, 50),
        SEED_BLOCK_MS,
    ));
    figures.push(seed_figure(
        "load block latency p99",
        "ms",
        percentile(&block_latencies, 99),
        SEED_BLOCK_MS,
    ));
    figures.push(figure(
        "load tx submit->final p50",
        "ms",
        percentile(&tx_latencies, 50),
    ));
    figures.push(figure(
        "load tx submit->final p99",
        "ms",
        percentile(&tx_latencies, 99),
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
        (load_cpu1 - load_cpu0) * 1000.0 / all_txs.max(1) as f64,
    ));
    figures.push(figure("transfers refused", "tx", rejected as f64));
    figures.push(figure(
        "transfers pending after drain",
        "tx",
        pending as f64,
    ));
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

/// What one submitter achieved.
struct Submitted<'a> {
    /// Accepted transfers and when they were sent (ms since the epoch).
    accepted: Vec<(&'a str, u64)>,
    rejected: u64,
    first_error: Option<String>,
}

/// When a paced submitter's transfers are due.
struct Pace {
    start: tokio::time::Instant,
    first_us: u64,
    every_us: u64,
}

/// Sends `txs` one after the other (each when `pace` says it is due, if paced) until they run
/// out or `until_ms` passes.
async fn submit<'a>(
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
    fn percentile_is_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50.0);
        assert_eq!(percentile(&values, 99), 99.0);
        assert_eq!(percentile(&[7], 99), 7.0);
        assert_eq!(percentile(&[], 50), 0.0);
    }

    #[test]
    fn workload_spends_every_coin_once_with_the_minimum_fee() {
        let faucet = Keypair::generate();
        let genesis = Genesis {
            chain_id: "bench-test".into(),
            genesis_time_ms: 0,
            block_interval_ms: 0,
            validators: vec![timecoin_ledger::GenesisValidator {
                name: "v".into(),
                public_key: Keypair::generate().public(),
                collateral: 1000,
                reward_address: Address::of(&faucet.public()),
            }],
            allocations: vec![TxOutput {
                address: Address::of(&faucet.public()),
                amount: 1_000_000 * timecoin_types::COIN,
            }],
            min_fee: 1_000,
            unbonding_blocks: timecoin_ledger::DEFAULT_UNBONDING_BLOCKS,
        };
        let work = build_workload(&genesis, &faucet, 600).unwrap();
        assert_eq!(work.first.outputs.len(), 3);
        assert_eq!(work.second.len(), 3);
        assert_eq!(work.transfers.len(), 600);
        let ids: std::collections::HashSet<_> = work.transfers.iter().map(|t| &t.0).collect();
        assert_eq!(ids.len(), 600);
        let input: u64 = work.first.outputs[0].amount;
        let output: u64 = work.second[0].outputs.iter().map(|o| o.amount).sum();
        assert!(input - output >= genesis.min_fee);
    }
}
