//! A harness for tests on real `timed` processes talking libp2p over loopback TCP.

#![allow(dead_code)] // each test binary uses a different part of the harness

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const TIMED: &str = env!("CARGO_BIN_EXE_timed");

/// One `timed` process and its home.
pub struct NodeProc {
    /// Home directory.
    pub home: PathBuf,
    /// JSON-RPC address.
    pub rpc: SocketAddr,
    /// Extra `timed start` arguments.
    pub args: Vec<String>,
    /// RUST_LOG for the process (default: `TEST_RUST_LOG` or `info`).
    pub log_filter: Option<String>,
    child: Option<Child>,
}

impl NodeProc {
    /// A node (not started) whose home is `home` and RPC is at `rpc`.
    pub fn new(home: PathBuf, rpc: SocketAddr) -> NodeProc {
        NodeProc {
            home,
            rpc,
            args: Vec::new(),
            log_filter: None,
            child: None,
        }
    }

    /// Starts the process (appending to `node.log` in its home).
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "{} already running",
            self.home.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("node.log"))
            .unwrap();
        let child = Command::new(TIMED)
            .arg("start")
            .arg("--home")
            .arg(&self.home)
            .args(&self.args)
            .env(
                "RUST_LOG",
                self.log_filter
                    .clone()
                    .or_else(|| std::env::var("TEST_RUST_LOG").ok())
                    .unwrap_or_else(|| "info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn timed");
        self.child = Some(child);
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20)); // poll interval of a bounded wait
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status, or `None`
    /// if it still runs (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20)); // poll interval of a bounded wait
        }
    }

    /// CPU time (user + system) the process has used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process now, in KiB (VmRSS of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid()?)
    }

    /// The validator public key of this home, if it has one.
    pub fn validator_key(&self) -> Option<String> {
        let shown = timed(&["show", "--home", self.home.to_str().unwrap()]);
        shown
            .lines()
            .find_map(|l| l.strip_prefix("validator_public_key: "))
            .map(str::to_string)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Calls a JSON-RPC method; `Err` holds the JSON-RPC error object.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (_, text) = http_post(self.rpc, body.to_string().as_bytes()).map_err(|e| json!(e))?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| json!(e.to_string()))?;
        match answer.get("error") {
            Some(err) => Err(err.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    /// The finalized tip height, if the node answers.
    pub fn height(&self) -> Option<u64> {
        self.rpc("getblockchaininfo", json!([])).ok()?["height"].as_u64()
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of process `pid` now, in KiB (VmRSS of `/proc/<pid>/status`).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A connection to `addr` with the harness's timeouts: 2 s to connect, 10 s per read.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// GETs `path` and returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_default();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

/// Sends raw bytes as an HTTP POST body to `/`; returns status line and body.
pub fn http_post(addr: SocketAddr, body: &[u8]) -> Result<(String, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    let status = head.lines().next().unwrap_or_default().to_string();
    // Bodies may be chunked; JSON-RPC answers are small, so strip chunk sizes if present.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A testnet written by `timed testnet` in a temporary directory.
pub struct Testnet {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The nodes, not yet started.
    pub nodes: Vec<NodeProc>,
    /// First p2p port.
    pub base_port: u16,
}

impl Testnet {
    /// Writes a testnet of `validators` validators plus `full_nodes` full nodes. Ports are
    /// chosen near `preferred_port` where every port the test may use is free right now, so
    /// tests running beside other work on the machine do not collide.
    pub fn generate(
        validators: usize,
        full_nodes: usize,
        preferred_port: u16,
        interval_ms: u64,
    ) -> Testnet {
        let base_port = free_base_port(preferred_port);
        let mut builder = tempfile::Builder::new();
        builder.prefix("timed-test-");
        if std::env::var_os("TEST_KEEP_DIRS").is_some() {
            builder.disable_cleanup(true);
        }
        let dir = builder.tempdir().unwrap();
        let out = dir.path().join("net");
        let status = Command::new(TIMED)
            .args(["testnet", "--validators", &validators.to_string()])
            .args(["--full-nodes", &full_nodes.to_string()])
            .arg("--out")
            .arg(&out)
            .args(["--base-port", &base_port.to_string()])
            .args(["--block-interval-ms", &interval_ms.to_string()])
            .args(["--chain-id", "timecoin-test"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "timed testnet failed");
        let nodes = (0..validators + full_nodes)
            .map(|i| NodeProc {
                home: out.join(format!("node{i}")),
                rpc: SocketAddr::from(([127, 0, 0, 1], base_port + 100 + i as u16)),
                args: Vec::new(),
                log_filter: None,
                child: None,
            })
            .collect();
        Testnet {
            dir,
            nodes,
            base_port,
        }
    }

    /// The testnet directory (genesis.json, faucet.key, node homes).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("net")
    }

    /// [`Testnet::generate`] with no full nodes, every node started, and all of them past
    /// `height` within a minute.
    pub fn running(
        validators: usize,
        preferred_port: u16,
        interval_ms: u64,
        height: u64,
    ) -> Testnet {
        let mut net = Testnet::generate(validators, 0, preferred_port, interval_ms);
        net.start_all();
        let all: Vec<usize> = (0..validators).collect();
        net.wait_height(&all, height, Duration::from_secs(60));
        net
    }

    /// Highest finalized height among `which` (0 if none answers).
    pub fn top(&self, which: &[usize]) -> u64 {
        which
            .iter()
            .filter_map(|&i| self.nodes[i].height())
            .max()
            .unwrap_or(0)
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for node in &mut self.nodes {
            node.start();
        }
    }

    /// Waits until every running node listed in `which` has finalized `height`.
    pub fn wait_height(&self, which: &[usize], height: u64, timeout: Duration) {
        wait_until(
            &format!("nodes {which:?} reach height {height}"),
            timeout,
            || {
                which
                    .iter()
                    .all(|&i| self.nodes[i].height().is_some_and(|h| h >= height))
                    .then_some(())
            },
            || self.logs(),
        );
    }

    /// The hash each listed node has at `height`.
    pub fn hashes_at(&self, which: &[usize], height: u64) -> Vec<String> {
        which
            .iter()
            .map(|&i| {
                self.nodes[i]
                    .rpc("getblockhash", json!([height]))
                    .unwrap_or_else(|e| panic!("node{i} getblockhash {height}: {e}"))
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Asserts that the listed nodes hold the same block at every height from 1 to `up_to`.
    pub fn assert_agree(&self, which: &[usize], up_to: u64) {
        for height in 1..=up_to {
            let hashes = self.hashes_at(which, height);
            assert!(
                hashes.windows(2).all(|w| w[0] == w[1]),
                "fork at height {height}: {hashes:?}"
            );
        }
    }

    /// Every node's log tail, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("---- node{i} ----\n{}", n.log_tail(25)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A port P such that P..P+60 and P+100..P+160 can all be bound now.
fn free_base_port(preferred: u16) -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    (0..200u16)
        .map(|step| preferred.wrapping_add(step.wrapping_mul(211)) % 40_000 + 20_000)
        .find(|&p| (p..p + 60).chain(p + 100..p + 160).all(free))
        .expect("no free port range")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with `what`
/// and the output of `context`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting until {what}\n{}",
                context()
            );
        }
        // The poll interval of a wait that ends on the condition or the deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `timed` with `args` and returns its stdout, panicking with stderr on failure.
pub fn timed(args: &[&str]) -> String {
    let out = Command::new(TIMED).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "timed {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `timed` with `args`, expecting failure; returns stderr.
pub fn timed_fails(args: &[&str]) -> String {
    let out = Command::new(TIMED).args(args).output().unwrap();
    assert!(
        !out.status.success(),
        "timed {args:?} unexpectedly succeeded"
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The validator set a node reports (`getvalidators`), as the types crate's set.
pub fn validator_set(node: &NodeProc) -> timecoin_types::ValidatorSet {
    let list = node.rpc("getvalidators", json!([])).unwrap();
    timecoin_types::ValidatorSet::new(
        list.as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"] != "entering")
            .map(|v| timecoin_types::Validator {
                public_key: v["public_key"].as_str().unwrap().parse().unwrap(),
                weight: v["weight"].as_u64().unwrap(),
                reward_address: v["reward_address"].as_str().unwrap().parse().unwrap(),
            })
            .collect(),
    )
    .unwrap()
}

/// Writes a full-node home with `timed init` that bootstraps from node0 of `net` only, on
/// ports `base_port + 50` (p2p) and `+ 150` (RPC); `extra` goes to `timed init`.
pub fn init_follower(net: &Testnet, name: &str, extra: &[&str]) -> NodeProc {
    init_follower_on(net, name, 50, extra)
}

/// As [`init_follower`], on ports `base_port + offset` (p2p) and `+ 100 + offset` (RPC).
pub fn init_follower_on(net: &Testnet, name: &str, offset: u16, extra: &[&str]) -> NodeProc {
    let shown = timed(&["show", "--home", net.nodes[0].home.to_str().unwrap()]);
    let peer_id = shown
        .lines()
        .find_map(|l| l.strip_prefix("peer_id: "))
        .unwrap()
        .to_string();
    let home = net.path().join(name);
    let genesis = net.path().join("genesis.json");
    let mut args = vec![
        "init".to_string(),
        "--home".into(),
        home.to_str().unwrap().into(),
        "--genesis".into(),
        genesis.to_str().unwrap().into(),
        "--bootstrap".into(),
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", net.base_port),
        "--p2p-listen".into(),
        format!("/ip4/127.0.0.1/tcp/{}", net.base_port + offset),
        "--rpc-listen".into(),
        format!("127.0.0.1:{}", net.base_port + 100 + offset),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    timed(&args);
    NodeProc::new(home, ([127, 0, 0, 1], net.base_port + 100 + offset).into())
}

/// Path helper for key files inside a testnet.
pub fn key_path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().to_string()
}

/// `timed wallet send` of `amount` TIME from the key file `key` to `to` through `rpc`, paying
/// the 0.001 TIME fee the tests use; returns the txid.
pub fn wallet_send(key: &str, to: &str, amount: &str, rpc: &str) -> String {
    timed(&[
        "wallet", "send", "--key", key, "--to", to, "--amount", amount, "--fee", "0.001", "--rpc",
        rpc,
    ])
    .trim()
    .to_string()
}

/// Waits up to a minute for transaction `txid` to be finalized on `node`; its height.
pub fn finalized_height(node: &NodeProc, txid: &str, context: impl Fn() -> String) -> u64 {
    wait_until(
        &format!("transaction {txid} is finalized"),
        Duration::from_secs(60),
        || {
            let tx = node.rpc("gettransaction", json!([txid])).ok()?;
            (tx["status"] == "finalized").then(|| tx["height"].as_u64().unwrap())
        },
        context,
    )
}

/// Signers of the certificate of `height`, as printed public keys.
pub fn certificate_signers(node: &NodeProc, height: u64) -> Vec<String> {
    let proof = node.rpc("getfinalityproof", json!([height])).unwrap();
    proof["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["validator"].as_str().unwrap().to_string())
        .collect()
}
