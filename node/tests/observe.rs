//! What an operator looks at, on real `timed` processes: JSON log lines, the dashboard's
//! snapshot and event stream, the dashboard page in headless Chromium, and the Grafana board
//! against the metrics the node exports.

mod common;

use common::{connect, http_get, wait_until, NodeProc, Testnet};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `--log-format json`: every line of the log is one JSON object, and a `finalized block`
/// line carries its height (and round) as fields, as the text format shows them.
#[test]
fn json_logs_are_one_object_per_line_with_fields() {
    let mut net = Testnet::generate(1, 0, 33100, 100);
    let node = &mut net.nodes[0];
    node.args = vec!["--log-format".into(), "json".into()];
    node.start();
    net.wait_height(&[0], 3, Duration::from_secs(30));
    assert!(net.nodes[0].stop(), "node0 did not stop cleanly");
    let log = std::fs::read_to_string(net.nodes[0].home.join("node.log")).unwrap();
    let mut finalized = 0;
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(entry["timestamp"].is_string(), "no timestamp: {line}");
        assert!(entry["level"].is_string(), "no level: {line}");
        assert!(entry["target"].is_string(), "no target: {line}");
        if entry["fields"]["message"] == "finalized block" {
            assert!(entry["fields"]["height"].is_u64(), "no height: {line}");
            assert!(entry["fields"]["round"].is_u64(), "no round: {line}");
            finalized += 1;
        }
    }
    assert!(
        finalized >= 3,
        "{finalized} finalized block lines in\n{log}"
    );
}

/// Reads server-sent events from `path` on `addr` until `count` `state` events arrived.
fn read_events(addr: SocketAddr, count: usize) -> Vec<Value> {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "event stream answered {status}");
    let mut events = Vec::new();
    let mut line = String::new();
    while events.len() < count {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "event stream ended"
        );
        // The body is chunked: a data line may carry a chunk size line before it, which
        // never starts with "data: ".
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    events
}

/// Opens an event stream and returns its status line, keeping the connection open.
fn open_event_stream(addr: SocketAddr) -> (String, TcpStream) {
    let mut stream = connect(addr);
    write!(stream, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    (status, stream)
}

/// `/dashboard/state` and `/events`: snapshots of the node whose height advances from one
/// event to a later one, no more than the cap of event streams at once (the next one is
/// refused with 503 while the others stay open), and an open stream does not keep the node
/// from shutting down cleanly.
#[test]
fn snapshots_and_event_stream() {
    let mut net = Testnet::generate(1, 0, 33300, 100);
    net.start_all();
    net.wait_height(&[0], 2, Duration::from_secs(30));
    let node = &net.nodes[0];
    let state: Value = serde_json::from_str(&http_get(node.rpc, "/dashboard/state")).unwrap();
    assert!(state["height"].as_u64().unwrap() >= 2, "{state}");
    assert_eq!(state["validators"].as_array().unwrap().len(), 1, "{state}");
    assert!(state["blocks"].as_array().unwrap().len() >= 2, "{state}");
    assert!(state["mempool"]["size"].is_u64(), "{state}");

    // Blocks come every 100 ms and a snapshot at least every second: within 8 events the
    // height must have moved.
    let events = read_events(node.rpc, 8);
    let heights: Vec<u64> = events
        .iter()
        .map(|e| e["height"].as_u64().unwrap())
        .collect();
    assert!(heights.windows(2).all(|w| w[0] <= w[1]), "{heights:?}");
    assert!(heights.last() > heights.first(), "{heights:?}");

    let mut open = Vec::new();
    for _ in 0..16 {
        let (status, stream) = open_event_stream(node.rpc);
        assert!(status.contains(" 200 "), "{status}");
        open.push(stream);
    }
    let (status, _) = open_event_stream(node.rpc);
    assert!(status.contains(" 503 "), "the 17th stream got {status}");
    drop(open);
    // The places come back once the node notices the clients are gone.
    wait_until(
        "an event stream is served again",
        Duration::from_secs(10),
        || {
            open_event_stream(node.rpc)
                .0
                .contains(" 200 ")
                .then_some(())
        },
        || net.logs(),
    );
    let (status, _open) = open_event_stream(net.nodes[0].rpc);
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        net.nodes[0].stop(),
        "node0 did not exit cleanly within 20 s with an event stream open\n{}",
        net.logs()
    );
}

/// A TCP connection to `addr` whose receive buffer is as small as the kernel allows, so that
/// a peer writing to it while it does not read is stopped quickly.
fn connect_small_buffer(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed to
    // the TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let size: libc::c_int = 1024;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "setsockopt SO_RCVBUF");
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect to {addr}");
        TcpStream::from_raw_fd(fd)
    }
}

/// Event streams of clients that stop reading end: after 16 clients (every place) had their
/// stream accepted and then stopped reading, a new stream is served again, so the node gave
/// the places of those that fell behind back (their connections stay open; the node keeps
/// only the snapshots already queued for them).
///
/// It takes about a minute: the kernel's send buffer of the connection (autotuned to a few
/// MiB) and the HTTP server's fill before the node's own queue does.
#[test]
fn clients_that_do_not_read_their_event_stream_are_dropped() {
    let mut net = Testnet::generate(1, 0, 34100, 50);
    net.start_all();
    net.wait_height(&[0], 5, Duration::from_secs(30));
    let rpc = net.nodes[0].rpc;
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut stream = connect_small_buffer(rpc);
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write!(stream, "GET /events HTTP/1.1\r\nHost: {rpc}\r\n\r\n").unwrap();
            // Read the status line only, a byte at a time, then never read again.
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\r\n") {
                std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
                line.push(byte[0]);
            }
            let line = String::from_utf8_lossy(&line).to_string();
            assert!(line.contains(" 200 "), "a stalled client got {line}");
            stream
        })
        .collect();
    let started = Instant::now();
    wait_until(
        "a stalled stream is dropped and its place served again",
        Duration::from_secs(180),
        || open_event_stream(rpc).0.contains(" 200 ").then_some(()),
        || net.logs(),
    );
    println!(
        "a place came back {:?} after all 16 were stalled",
        started.elapsed()
    );
    assert!(net.nodes[0].is_running());
    drop(stalled);
}

/// The Chromium binary, or a loud failure: the browser test must not pass without a browser.
fn chromium() -> PathBuf {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: scripts/test.sh installs it (apt-get install -y \
                 chromium); the dashboard browser test cannot run without it"
            )
        })
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout. Fails if it
/// does not finish within 30 s.
fn run_chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--no-first-run", "--disable-extensions", "--mute-audio"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed on {url}: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish on {url} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50)); // poll interval of a bounded wait
    }
    reader.join().unwrap()
}

/// The page's DOM after its scripts ran, as Chromium renders it.
fn dump_dom(profile: &Path, node: &NodeProc) -> String {
    run_chromium(
        profile,
        &format!("http://{}/dashboard", node.rpc),
        &["--dump-dom"],
    )
}

/// The finalized height the page shows.
fn shown_height(dom: &str) -> Option<u64> {
    let rest = dom.split_once(r#"id="height">"#)?.1;
    rest.split_once('<')?.0.parse().ok()
}

/// The status cell of each validator row the page shows, by validator id.
fn shown_validators(dom: &str) -> Vec<(String, String)> {
    dom.split(r#"<tr data-validator=""#)
        .skip(1)
        .filter_map(|row| {
            let id = row.split_once('"')?.0.to_string();
            let status = row
                .split_once(" status\">")?
                .1
                .split_once('<')?
                .0
                .to_string();
            Some((id, status))
        })
        .collect()
}

/// The dashboard in a real browser: the height on screen advances between two loads, a
/// stopped validator shows as missing while the others stay present, and a screenshot of it
/// is saved (its path is printed); the testnet's `network.html` links and frames every
/// node's dashboard (screenshot too).
#[test]
fn dashboard_in_headless_chromium() {
    let browser = chromium();
    let mut net = Testnet::generate(4, 0, 33500, 200);
    net.start_all();
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(30));
    let profile = net.dir.path().join("chromium-profile");
    let first = shown_height(&dump_dom(&profile, &net.nodes[0]))
        .expect("the page shows a height after loading");
    let later = wait_until(
        "the page shows a higher height",
        Duration::from_secs(20),
        || shown_height(&dump_dom(&profile, &net.nodes[0])).filter(|&h| h > first),
        || net.logs(),
    );
    println!("height on screen: {first}, then {later}");

    let stopped = net.nodes[3].validator_key().unwrap()[..16].to_string();
    assert!(net.nodes[3].stop(), "node3 did not stop cleanly");
    let rows = wait_until(
        "the page shows node3 missing and the other validators present",
        Duration::from_secs(20),
        || {
            let rows = shown_validators(&dump_dom(&profile, &net.nodes[0]));
            let ok = rows.len() == 4
                && rows
                    .iter()
                    .all(|(id, status)| (status == "missing") == (*id == stopped));
            ok.then_some(rows)
        },
        || net.logs(),
    );
    println!("validators on screen: {rows:?}");

    let shot = net.dir.path().join("dashboard.png");
    run_chromium(
        &profile,
        &format!("http://{}/dashboard", net.nodes[0].rpc),
        &[
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    println!(
        "screenshot ({} bytes, {}): {}",
        png.len(),
        browser.display(),
        shot.display()
    );

    // The testnet's page lists every node with its dashboard.
    let page = net.path().join("network.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for node in &net.nodes {
        let url = format!("http://{}/dashboard", node.rpc);
        assert_eq!(html.matches(&url).count(), 2, "{url} not linked and framed");
    }
    let shot = net.dir.path().join("network.png");
    run_chromium(
        &profile,
        &format!("file://{}", page.display()),
        &[
            "--window-size=1400,1000",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
    println!("network page screenshot: {}", shot.display());
}

/// Every metric the Grafana board queries is one the node exports: the names in the board's
/// PromQL expressions against the `# TYPE` lines of a running node's `/metrics` (with the
/// `_total`, `_bucket`, `_sum` and `_count` series of counters and histograms).
#[test]
fn grafana_board_queries_only_exported_metrics() {
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&board, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries: {exprs:?}", exprs.len());

    let mut net = Testnet::generate(1, 0, 33700, 100);
    net.start_all();
    net.wait_height(&[0], 1, Duration::from_secs(30));
    let exported = exported_series(&http_get(net.nodes[0].rpc, "/metrics"));
    let mut queried = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        queried.extend(names);
    }
    let unknown: Vec<&String> = queried.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the board queries metrics the node does not export: {unknown:?}"
    );
    for wanted in [
        "timed_height",
        "timed_round",
        "timed_finalization_seconds_bucket",
        "timed_phase_seconds_bucket",
        "timed_gossip_messages_total",
        "timed_mempool_transactions",
        "timed_peers",
        "timed_equivocations_total",
        "timecoin_net_refused_connections_total",
    ] {
        assert!(queried.contains(wanted), "the board does not show {wanted}");
    }
}

/// Every `expr` string in the board.
fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item {
                    Value::String(expr) if key == "expr" => out.push(expr.clone()),
                    _ => collect_exprs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// The series names a `/metrics` text exports, from its `# TYPE` lines.
fn exported_series(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "gauge" => &[""],
            _ => &["", "_total", "_count", "_sum", "_bucket"],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// The metric names in a PromQL expression: identifiers outside label matchers, ranges and
/// strings that are neither functions (followed by `(`), keywords nor grouping labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Words after which a parenthesised list of labels follows.
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' | '"' => {
                let close = match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if after_grouping => {
                // The label list of `by (...)` / `without (...)`.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                after_grouping = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next] == ' ' {
                    next += 1;
                }
                let is_call = chars.get(next) == Some(&'(');
                if GROUPING.contains(&word.as_str()) {
                    after_grouping = true;
                } else if !is_call && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers (and units such as the `m` of 5m, inside ranges anyway).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(timed_finalization_seconds_bucket{instance=~"$node"}[5m]))) * 1000 + timed_round offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["timed_finalization_seconds_bucket", "timed_round"]
    );
}

/// A minimal WebSocket client (text frames, masked as RFC 6455 requires of clients): enough
/// to call `subscribe` and read notifications without a client library.
struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    fn connect(addr: SocketAddr) -> WebSocket {
        let mut stream = connect(addr);
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        WebSocket { stream }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next text message (control frames skipped).
    fn recv(&mut self) -> Value {
        use std::io::Read;
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).unwrap();
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b).unwrap();
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b).unwrap();
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).unwrap();
            match head[0] & 0x0f {
                0x1 => return serde_json::from_slice(&payload).unwrap(),
                0x8 => panic!("the server closed the WebSocket"),
                _ => continue,
            }
        }
    }
}

/// `subscribe ["newBlocks"]` over WebSocket: the call answers a subscription id, then one
/// notification per finalized block arrives, heights consecutive; an unknown topic is refused.
#[test]
fn new_blocks_subscription_over_websocket() {
    let mut net = Testnet::generate(1, 0, 33900, 100);
    net.start_all();
    net.wait_height(&[0], 1, Duration::from_secs(30));
    let mut ws = WebSocket::connect(net.nodes[0].rpc);
    ws.send(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":["oldBlocks"]}"#);
    let refused = ws.recv();
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    ws.send(r#"{"jsonrpc":"2.0","id":2,"method":"subscribe","params":["newBlocks"]}"#);
    let answer = ws.recv();
    let id = answer["result"].clone();
    assert!(id.is_string() || id.is_u64(), "{answer}");
    let mut heights = Vec::new();
    while heights.len() < 5 {
        let note = ws.recv();
        assert_eq!(note["method"], "subscription", "{note}");
        assert_eq!(note["params"]["subscription"], id, "{note}");
        let block = &note["params"]["result"];
        assert_eq!(block["hash"].as_str().map(str::len), Some(64), "{note}");
        heights.push(block["height"].as_u64().unwrap());
    }
    assert!(heights.windows(2).all(|w| w[1] == w[0] + 1), "{heights:?}");
    assert!(
        net.nodes[0].stop(),
        "node0 did not exit cleanly within 20 s with a subscription open\n{}",
        net.logs()
    );
}
