//! The nodes of one bench run: generating their testnet, starting one `timed start` process
//! each, asking them over JSON-RPC and `/metrics`, and stopping them again.

use super::workload::{build_workload, Workload};
use super::BenchArgs;
use anyhow::{anyhow, bail, ensure, Context, Result};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use serde::Deserialize;
use serde_json::Value;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use timecoin_ledger::{Genesis, Transaction};
use timecoin_types::codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(20);
/// How long the fan-out transactions get to be finalized.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the mempools get to drain after the load window before the figures are taken
/// from whatever was finalized (a stalled chain must not hang the bench).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
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
pub struct Counters {
    /// Bytes sent by libp2p (each byte on loopback is counted once, by its sender).
    bytes_out: u64,
    /// Gossip messages received, first copies only.
    received: u64,
    /// Gossip messages received, all copies.
    received_copies: u64,
}

impl Counters {
    /// What happened between `earlier` and `self`: (bytes sent, copies per first delivery).
    pub fn since(&self, earlier: &Counters) -> (u64, f64) {
        let copies = self.received_copies.saturating_sub(earlier.received_copies);
        let firsts = self.received.saturating_sub(earlier.received).max(1);
        (
            self.bytes_out.saturating_sub(earlier.bytes_out),
            copies as f64 / firsts as f64,
        )
    }
}

/// The nodes of one run; dropping it stops them and removes their directory.
pub struct Cluster {
    dir: PathBuf,
    keep: bool,
    children: Vec<Child>,
    /// One JSON-RPC client per node, in node order.
    pub clients: Vec<HttpClient>,
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
    /// Generates a testnet with back-to-back blocks in a fresh directory, signs the run's
    /// workload for it (before any node competes for the CPU) and starts every node.
    pub fn start(args: &BenchArgs, run: usize, base_port: u16) -> Result<(Cluster, Workload)> {
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
            if let Some(ms) = args.latency_ms {
                command.args(["--latency-ms", &ms.to_string()]);
            }
            if let Some(ms) = args.jitter_ms {
                command.args(["--jitter-ms", &ms.to_string()]);
            }
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
    pub async fn tip(&self, i: usize) -> Result<u64> {
        let info: Value = self.clients[i]
            .request("getblockchaininfo", rpc_params![])
            .await?;
        info["height"]
            .as_u64()
            .ok_or_else(|| anyhow!("node {i} reported no height: {info}"))
    }

    /// Waits until every node's tip reaches `height`.
    pub async fn wait_all_at(&self, height: u64, deadline: Duration, what: &str) -> Result<()> {
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
    pub fn check_alive(&self) -> Result<()> {
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
    pub async fn counters(&self) -> Result<Counters> {
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
    pub fn cpu_ms(&self) -> Result<f64> {
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
    pub fn memory(&self) -> Result<Vec<(f64, f64)>> {
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
    pub async fn blocks(&self, from: u64, to: u64) -> Result<Vec<Vec<BlockInfo>>> {
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
    pub async fn pending(&self) -> Result<u64> {
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
    pub async fn settle(&self, txs: &[Transaction], what: &str) -> Result<()> {
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
pub async fn poll<F, Fut>(deadline: Duration, what: &str, mut check: F) -> Result<()>
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
pub struct BlockInfo {
    /// When the proposer built it.
    pub time_ms: u64,
    /// When this node finalized it (none if it came by catch-up sync).
    pub finalized_at_ms: Option<u64>,
    /// Its transactions.
    pub transactions: Vec<TxRef>,
}

/// A transaction of [`BlockInfo`], by id.
#[derive(Deserialize)]
pub struct TxRef {
    /// Its txid in hex.
    pub txid: String,
}
