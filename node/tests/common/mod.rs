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
    child: Option<Child>,
}

impl NodeProc {
    /// A node (not started) whose home is `home` and RPC is at `rpc`.
    pub fn new(home: PathBuf, rpc: SocketAddr) -> NodeProc {
        NodeProc {
            home,
            rpc,
            args: Vec::new(),
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
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
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
    /// Writes a testnet of `validators` validators plus `full_nodes` full nodes.
    pub fn generate(
        validators: usize,
        full_nodes: usize,
        base_port: u16,
        interval_ms: u64,
    ) -> Testnet {
        let dir = tempfile::tempdir().unwrap();
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

/// Path helper for key files inside a testnet.
pub fn key_path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().to_string()
}
