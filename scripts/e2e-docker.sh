#!/usr/bin/env bash
# Fault-injection suite on real containers (issue 5): builds the timed:local image, generates a
# fresh 4-validator + 1-full-node testnet in a temp dir, brings it up with docker-compose under a
# unique project name and applies, one at a time:
#
#   kill (SIGKILL + start), pause/unpause, disconnect/reconnect from the network, restart
#   (SIGTERM, must exit 0 + start), a 2/2 split (no finality on either side, no fork), a 3/1 split
#   (majority goes on, minority catches up), garbage on a node's p2p and RPC ports,
#
# each followed by: finality resumes, the perturbed nodes catch up, all nodes agree on every
# block hash (getblockhash on every node for every height). Two transfers submitted during the
# perturbations (one while a validator is down, one during the 2/2 split) must land exactly once.
# Prints a table at the end. Everything is torn down by a trap, also on failure; a failing run
# prints the docker logs of every node.
#
#   scripts/e2e-docker.sh
#
# Env: E2E_BLOCK_INTERVAL_MS (500), E2E_SKIP_IMAGE=1 (use the existing timed:local image),
#      E2E_KEEP_LOGS=DIR (save every node's full log there), E2E_LOG_TAIL (lines per node
#      printed on failure: 1000, or "all"), COMPOSE ("docker-compose" or "docker compose"; auto-detected),
#      E2E_SELFTEST_FAIL=1 (fail right after start-up, to see the failure path: logs + teardown),
#      E2E_ADDRESS_CHANGE=1 (also heal a 2/2 split with new addresses; see that step),
#      E2E_SPLIT_S (20: seconds the 2/2 split lasts).
# Needs: docker (engine + docker-compose v1 or compose v2), python3. Partitions use extra docker
# networks and `docker network disconnect`, never iptables; the only traffic goes to 127.0.0.1
# and to the project's own containers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
suite_start=$(date +%s)
interval=${E2E_BLOCK_INTERVAL_MS:-500}
triple=x86_64-unknown-linux-gnu

if [[ ${E2E_SKIP_IMAGE:-0} != 1 ]]; then
  DOCKER_IMAGE_QUIET=1 scripts/docker-image.sh timed:local
fi
timed=$root/${STATIC_TARGET_DIR:-target/static}/$triple/release/timed
[[ -x $timed ]] || { echo "error: $timed missing (run scripts/docker-image.sh)" >&2; exit 1; }

if [[ -n ${COMPOSE:-} ]]; then
  read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi

project=timede2e$$r$RANDOM
work=$(mktemp -d "${TMPDIR:-/tmp}/timed-e2e.XXXXXX")
compose_file=$work/net/docker-compose.yml
dc() { "${compose[@]}" -p "$project" -f "$compose_file" -f "$work/net/e2e-network.yml" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ $rc != 0 ]]; then
    echo "== FAILED (exit $rc): docker logs of every node (last ${E2E_LOG_TAIL:-1000} lines each)"
    for i in 0 1 2 3 4; do
      local cid
      cid=$(dc ps -q "node$i" 2>/dev/null)
      [[ -n $cid ]] || continue
      echo "----- node$i ($(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}' "$cid" 2>/dev/null))"
      docker logs --tail "${E2E_LOG_TAIL:-1000}" "$cid" 2>&1
    done
  fi
  if [[ -n ${E2E_KEEP_LOGS:-} ]]; then
    mkdir -p "$E2E_KEEP_LOGS"
    for i in 0 1 2 3 4; do
      local cid
      cid=$(dc ps -q "node$i" 2>/dev/null)
      [[ -n $cid ]] && docker logs "$cid" >"$E2E_KEEP_LOGS/node$i.log" 2>&1
    done
    echo "full logs in $E2E_KEEP_LOGS"
  fi
  echo "== teardown of $project"
  if [[ -f $work/net/e2e-network.yml ]]; then
    dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || dc down -v --remove-orphans -t 5
  fi
  for net in $(docker network ls -q --filter "label=timed-e2e=$project"); do
    docker network rm "$net" >/dev/null
  done
  rm -rf "$work"
  echo "suite wall time: $(($(date +%s) - suite_start)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Four free loopback ports for RPC (base+100 .. base+104); p2p ports are container-internal.
base_port=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 40000)
    socks = []
    try:
        for i in range(5):
            s = socket.socket(); s.bind(("127.0.0.1", base + 100 + i)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break
else:
    raise SystemExit("no free port range")
PY
)
"$timed" testnet --validators 4 --full-nodes 1 --out "$work/net" --base-port "$base_port" \
  --block-interval-ms "$interval" --chain-id "$project" >"$work/testnet.txt"
# The project network gets a fixed free subnet so that a node cut off from it comes back with
# its old address (`docker network connect --ip`): partitions then behave like a real network
# partition (addresses stay, connections stall and resume). See testnet/README.md for why.
subnet=$(python3 - <<'PY'
import ipaddress, json, random, subprocess
used = []
ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
if ids:
    for net in json.loads(subprocess.run(["docker", "network", "inspect", *ids], capture_output=True, text=True).stdout):
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
try:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.splitlines()
except OSError:
    routes = []
for line in routes:
    dest = line.split()[0]
    if dest != "default":
        try:
            used.append(ipaddress.ip_network(dest, strict=False))
        except ValueError:
            pass
for _ in range(500):
    cand = ipaddress.ip_network(f"10.{random.randrange(100, 250)}.{random.randrange(256)}.0/24")
    if not any(cand.overlaps(u) for u in used):
        print(cand); break
else:
    raise SystemExit("no free /24 for the test network")
PY
)
cat >"$work/net/e2e-network.yml" <<EOF
networks:
  timednet:
    ipam:
      config:
        - subnet: $subnet
EOF

echo "== up: project $project, ${compose[*]}, block interval $interval ms, RPC 127.0.0.1:$((base_port + 100))-$((base_port + 104))"
dc up -d

export E2E_PROJECT=$project E2E_BASE_PORT=$base_port E2E_WORK=$work E2E_TIMED=$timed \
  E2E_INTERVAL_MS=$interval E2E_COMPOSE="${compose[*]}" E2E_COMPOSE_FILES="$compose_file $work/net/e2e-network.yml"
python3 - <<'PY'
import http.client, json, os, random, shlex, socket, subprocess, sys, time

PROJECT = os.environ["E2E_PROJECT"]
BASE = int(os.environ["E2E_BASE_PORT"])
WORK = os.environ["E2E_WORK"]
TIMED = os.environ["E2E_TIMED"]
INTERVAL = int(os.environ["E2E_INTERVAL_MS"]) / 1000
COMPOSE = shlex.split(os.environ["E2E_COMPOSE"]) + ["-p", PROJECT]
for f in os.environ["E2E_COMPOSE_FILES"].split():
    COMPOSE += ["-f", f]
NODES = [f"node{i}" for i in range(5)]
VALIDATORS = NODES[:4]
PORT = {n: BASE + 100 + i for i, n in enumerate(NODES)}
HOLD_BLOCKS = 6          # blocks the rest of the network finalizes while a node is out
# Seconds a 2/2 split is watched for (no) finality: by default long enough that every
# connection across it fails (5 s of unacknowledged data) and redials reach their cap.
HALT_WINDOW = float(os.environ.get("E2E_SPLIT_S", "20"))
T0 = time.time()


class Fail(Exception):
    pass


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def run(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise Fail(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


CID = {n: run(*COMPOSE, "ps", "-q", n) for n in NODES}
if not all(CID.values()):
    raise Fail(f"missing containers: {CID}")
NETWORKS = json.loads(run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", CID["node0"]))
if len(NETWORKS) != 1:
    raise Fail(f"expected one project network, got {list(NETWORKS)}")
MAIN_NET = next(iter(NETWORKS))
# Each node's address on the project network, restored when it is reconnected.
ADDRESS = {n: json.loads(run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", CID[n]))[MAIN_NET]["IPAddress"]
           for n in NODES}


class RpcError(Exception):
    pass


_conns = {}


def rpc(node, method, params=(), timeout=2.0):
    """One JSON-RPC call over a kept-alive connection to the node's published loopback port."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    for attempt in (0, 1):
        conn = _conns.get(node)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", PORT[node], timeout=timeout)
            _conns[node] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request("POST", "/", body, {"Content-Type": "application/json"})
            reply = json.loads(conn.getresponse().read())
            break
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
            _conns.pop(node, None)
            if attempt == 1:
                raise
    if "error" in reply:
        raise RpcError(f"{node} {method}{list(params)}: {reply['error']}")
    return reply["result"]


def height(node, timeout=1.0):
    try:
        return rpc(node, "getblockchaininfo", timeout=timeout)["height"]
    except Exception:
        return None


def height_inside(node):
    """The node's height asked from inside its container (works whatever networks it is on)."""
    r = subprocess.run(["docker", "exec", CID[node], "/timed", "status", "--rpc", "http://127.0.0.1:8545/"],
                       capture_output=True, text=True, timeout=10)
    try:
        return json.loads(r.stdout)["height"] if r.returncode == 0 else None
    except ValueError:
        return None


def heights(nodes=NODES):
    return {n: height(n) for n in nodes}


def wait_for(what, cond, timeout):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise Fail(f"timed out after {timeout:.0f}s waiting for {what}; heights {heights()}")
        time.sleep(0.1)


def min_height(nodes):
    hs = [height(n) for n in nodes]
    return None if any(h is None for h in hs) else min(hs)


def max_height(nodes):
    hs = [h for h in (height(n) for n in nodes) if h is not None]
    return max(hs) if hs else None


# ---- agreement: every node's hash at every height against one canonical map ----------------
canonical = {}          # height -> (hash, first node that reported it)
checked = {n: -1 for n in NODES}
forks = []


def check_agreement(nodes=NODES, full=False):
    """Compares every node's getblockhash for every height it has. Returns forks found now."""
    found = 0
    for n in nodes:
        top = height(n, timeout=3)
        if top is None:
            raise Fail(f"{n} does not answer getblockchaininfo")
        start = 0 if full else checked[n] + 1
        for h in range(start, top + 1):
            got = rpc(n, "getblockhash", [h], timeout=3)
            if h not in canonical:
                canonical[h] = (got, n)
            elif canonical[h][0] != got:
                found += 1
                forks.append((h, n, got, canonical[h]))
                print(f"FORK at height {h}: {n} has {got}, {canonical[h][1]} has {canonical[h][0]}", flush=True)
        checked[n] = max(checked[n], top)
    return found


def running(node):
    state = json.loads(run("docker", "inspect", "-f", "{{json .State}}", CID[node]))
    return state


def assert_all_running(since_started=None):
    for n in NODES:
        st = running(n)
        if not st["Running"] or st["Paused"]:
            raise Fail(f"{n} is not running: {st}")
        if since_started and st["StartedAt"] != since_started[n]:
            raise Fail(f"{n} restarted (started at {st['StartedAt']}, was {since_started[n]})")


def connect(node, net, address=None):
    """Connects the node to `net` under its service name; on the project network with its old
    address unless `address` names another one."""
    address = address or (ADDRESS[node] if net == MAIN_NET else None)
    ip = ["--ip", address] if address else []
    run("docker", "network", "connect", "--alias", node, *ip, net, CID[node])


def disconnect(node, net):
    run("docker", "network", "disconnect", net, CID[node])


def new_split_net(tag):
    name = f"{PROJECT}_{tag}"
    run("docker", "network", "create", "--label", f"timed-e2e={PROJECT}", name)
    return name


def move(nodes, src, dst):
    for n in nodes:
        connect(n, dst)
    for n in nodes:
        disconnect(n, src)


results = []


def perturbation(name, out, apply, heal, *, halt=False, majority=None, hold=HOLD_BLOCKS,
                 during=None, isolated=False, min_hold_s=0.0, catchup_timeout=120):
    """Applies one fault, holds it while the rest of the network moves on (or, for `halt`,
    checks that nobody finalizes), heals it, then measures resumption and catch-up and checks
    that every node agrees on every hash."""
    majority = majority if majority is not None else [n for n in NODES if n not in out]
    log(f"--- {name}: perturbing {','.join(out)}")
    before = heights()
    if any(h is None for h in before.values()):
        raise Fail(f"not every node answers before {name}: {before}")
    out_height = min(before[n] for n in out)
    apply()
    applied = time.time()
    if halt:
        # Moving nodes between networks takes a few docker calls, during which the network may
        # legitimately finalize: the baseline is taken once the split is complete.
        at_split = {n: height_inside(n) for n in NODES}
        top_at_apply = max(h for h in at_split.values() if h is not None)
        limit = top_at_apply + 1   # a block already precommitted may still finalize
        seen = {n: at_split[n] if at_split[n] is not None else before[n] for n in NODES}
        while time.time() - applied < HALT_WINDOW:
            for n in NODES:
                h = height_inside(n)
                if h is not None:
                    seen[n] = max(seen[n], h)
                if h is not None and h > limit:
                    raise Fail(f"{name}: {n} finalized {h} during a split without quorum (limit {limit})")
            time.sleep(0.2)
        log(f"{name}: no node finalized past {max(seen.values())} (limit {limit}) in "
            f"{HALT_WINDOW:.0f}s; highest seen {seen}")
        if during:
            during()
    else:
        # Baseline of a cut-off node once the cut is complete (moving it takes docker calls).
        iso_base = {n: height_inside(n) for n in out} if isolated else {}
        target = max(before.values()) + hold
        # Held until the others finalized `hold` more blocks (and at least `min_hold_s`: right
        # after a halt the chain catches up with its slot schedule in a burst of blocks).
        wait_for(f"{name}: {','.join(majority)} to reach {target}",
                 lambda: time.time() - applied >= min_hold_s and (min_height(majority) or 0) >= target, 60)
        if during:
            during()
        # A validator cut off from the rest cannot finalize on its own (if it still answers).
        if isolated:
            for n in out:
                h = height_inside(n)
                if h is None or iso_base[n] is None:
                    raise Fail(f"{name}: isolated {n} does not answer from inside its container")
                if h > iso_base[n] + 1:
                    raise Fail(f"{name}: isolated {n} finalized alone up to {h}")
    at_heal = [height(n, timeout=0.5) for n in out]
    out_at_heal = out_height if any(h is None for h in at_heal) else min(at_heal)
    heal_began = time.time()
    heal()
    healed = time.time()
    top = max_height(majority)
    wait_for(f"{name}: finality to resume past {top}",
             lambda: (max_height(majority) or 0) > top, 60)
    resumed = time.time() - healed
    wait_for(f"{name}: {','.join(out)} to catch up to {top + 1}",
             lambda: (min_height(out) or 0) >= top + 1, catchup_timeout)
    caught = time.time() - healed
    wait_for(f"{name}: every node to answer", lambda: min_height(NODES) is not None, 30)
    new_forks = check_agreement()
    behind = max(0, top - out_at_heal)
    log(f"{name}: finality resumed {resumed:.1f}s after heal ({healed - heal_began:.1f}s of docker "
        f"calls before), {','.join(out)} caught up "
        f"{behind} blocks in {caught:.1f}s, forks {new_forks}")
    results.append((name, resumed, behind, caught, new_forks))
    if new_forks:
        raise Fail(f"{name}: {new_forks} forked heights")


# ---- start ---------------------------------------------------------------------------------
log(f"waiting for every node to answer and finalize height 3 (project {PROJECT})")
wait_for("finality on every node", lambda: (min_height(NODES) or 0) >= 3, 120)
assert_all_running()
# The image's healthcheck (`timed status` inside the container) must report healthy, the root
# filesystem must be read-only, the user non-root and RPC published on loopback only.
wait_for("every container healthy",
         lambda: all((running(n).get("Health") or {}).get("Status") == "healthy" for n in NODES), 90)
for n in NODES:
    cfg = json.loads(run("docker", "inspect", "-f", "{{json .HostConfig}}", CID[n]))
    user = run("docker", "inspect", "-f", "{{.Config.User}}", CID[n])
    binds = [b["HostIp"] for b in (cfg.get("PortBindings") or {}).get("8545/tcp", [])]
    if not cfg.get("ReadonlyRootfs") or user.split(":")[0] in ("", "0", "root") or binds != ["127.0.0.1"]:
        raise Fail(f"{n}: read-only {cfg.get('ReadonlyRootfs')}, user {user!r}, RPC bound to {binds}")
log("every container healthy, read-only root filesystem, user 10001, RPC on 127.0.0.1 only")
if os.environ.get("E2E_SELFTEST_FAIL"):
    raise Fail("E2E_SELFTEST_FAIL is set: failing on purpose to exercise logs and teardown")
for n in NODES:
    peers = rpc(n, "getpeerinfo")
    log(f"{n}: height {height(n)}, {len(peers)} peers")
check_agreement()

faucet = os.path.join(WORK, "net", "faucet.key")
transfers = []   # (label, recipient address, amount units, txid)


def send(label, via, amount="12.5"):
    key = os.path.join(WORK, f"{label}.key")
    run(TIMED, "wallet", "new", "--out", key)
    addr = run(TIMED, "wallet", "address", "--key", key).split()[-1]
    txid = run(TIMED, "wallet", "send", "--key", faucet, "--to", addr, "--amount", amount,
               "--fee", "0.001", "--rpc", f"http://127.0.0.1:{PORT[via]}/").split()[-1]
    units = int(round(float(amount) * 100_000_000))
    transfers.append((label, addr, units, txid))
    log(f"transfer {label}: {amount} TIME to {addr} via {via}: {txid}")


# kill: SIGKILL a validator, transfer while it is down, start it again
perturbation(
    "kill (SIGKILL + start)", ["node0"],
    lambda: run("docker", "kill", "-s", "KILL", CID["node0"]),
    lambda: run("docker", "start", CID["node0"]),
    during=lambda: send("transfer-during-kill", "node1"),
)

perturbation(
    "pause/unpause", ["node1"],
    lambda: run("docker", "pause", CID["node1"]),
    lambda: run("docker", "unpause", CID["node1"]),
)

perturbation(
    "disconnect/reconnect", ["node2"],
    lambda: disconnect("node2", MAIN_NET),
    lambda: connect("node2", MAIN_NET),
    isolated=True,
)


def stop_cleanly(node):
    t = time.time()
    run("docker", "stop", "-t", "10", CID[node])
    took = time.time() - t
    code = running(node)["ExitCode"]
    if code != 0:
        raise Fail(f"{node} exited with {code} after SIGTERM (took {took:.1f}s): not a clean shutdown")
    log(f"{node} stopped on SIGTERM in {took:.1f}s with exit code 0")


perturbation(
    "restart (SIGTERM + start)", ["node3"],
    lambda: stop_cleanly("node3"),
    lambda: run("docker", "start", CID["node3"]),
)

# the non-validator bootstrap node: SIGKILL, start, it catches up by sync alone.
perturbation(
    "kill full node (SIGKILL)", ["node4"],
    lambda: run("docker", "kill", "-s", "KILL", CID["node4"]),
    lambda: run("docker", "start", CID["node4"]),
)

# 2/2 split: node0,node1 (+ the full node) stay on the project network, node2,node3 move to
# their own network. No side has 3 of 4 votes: nobody may finalize. A transfer sent to side A
# during the split must land exactly once after the heal.
split_b = new_split_net("split22")
perturbation(
    "2/2 split", ["node2", "node3"],
    lambda: move(["node2", "node3"], MAIN_NET, split_b),
    lambda: move(["node2", "node3"], split_b, MAIN_NET),
    halt=True, majority=NODES,
    during=lambda: send("transfer-during-split", "node0"),
)

# 3/1 split: node1 alone on its own network; node0,node2,node3 (+ the full node) go on.
split_c = new_split_net("split31")
perturbation(
    "3/1 split", ["node1"],
    lambda: move(["node1"], MAIN_NET, split_c),
    lambda: move(["node1"], split_c, MAIN_NET),
    hold=10, isolated=True, min_hold_s=5,
)

# Opt-in, last: the same 2/2 split, but node2 and node3 come back with each other's addresses
# (what `docker network connect` without --ip did in a run on the default subnet). The others
# resolve node2/node3 from their DNS cache (Docker's DNS answers with a TTL of 600 s) and dial
# the old addresses; nodes close connections whose pings fail and rediscover each other, so
# finality resumes after the ping and discovery timers (about 20 s).
if os.environ.get("E2E_ADDRESS_CHANGE") == "1":
    split_d = new_split_net("splitaddr")
    perturbation(
        "2/2 split + new addresses", ["node2", "node3"],
        lambda: move(["node2", "node3"], MAIN_NET, split_d),
        lambda: (connect("node2", MAIN_NET, ADDRESS["node3"]), connect("node3", MAIN_NET, ADDRESS["node2"]),
                 disconnect("node2", split_d), disconnect("node3", split_d)),
        halt=True, majority=NODES,
    )

# ---- garbage on p2p and RPC ports ------------------------------------------------------------
def junk_connection(address, payload, linger):
    """Sends `payload` on a fresh connection to `address` and reads what comes back for up to
    `linger` seconds. Returns whether the connection was made and the payload sent."""
    try:
        with socket.create_connection(address, timeout=3) as s:
            s.sendall(payload)
            s.settimeout(linger)
            try:
                s.recv(4096)
            except OSError:
                pass
        return True
    except OSError:
        return False


def garbage(node):
    ip = json.loads(run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", CID[node]))[MAIN_NET]["IPAddress"]
    rng = random.Random(5)
    payloads = [
        bytes(rng.randrange(256) for _ in range(4096)),
        b"\x13/multistream/1.0.0\n" + bytes(rng.randrange(256) for _ in range(512)),
        b"\x13/multistream/1.0.0\n\x07/noise\n" + b"\xff" * 70000,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00" * 65536,
    ]
    sent = 0
    # p2p: straight to the container's address on the project network.
    for p in payloads * 4:
        sent += junk_connection((ip, 26656), p, 0.5)
    # many half-open connections at once
    held = []
    for _ in range(64):
        try:
            held.append(socket.create_connection((ip, 26656), timeout=3))
        except OSError:
            break
    for s in held:
        s.close()
    # RPC through the published loopback port: raw junk, broken HTTP, broken JSON-RPC.
    rpc_payloads = [
        bytes(rng.randrange(256) for _ in range(2048)),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"jsonrp",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n" * 5000,
    ]
    for p in rpc_payloads:
        sent += junk_connection(("127.0.0.1", PORT[node]), p, 1)
    bad_calls = [
        ("getblockhash", ["x"]), ("getblock", [-1]), ("getblock", [10**12]),
        ("getbalance", ["nonsense"]), ("sendrawtransaction", ["zz"]),
        ("sendrawtransaction", ["00" * 5000]), ("gettransaction", ["00"]), ("nosuchmethod", []),
    ]
    for method, params in bad_calls:
        try:
            rpc(node, method, params)
        except RpcError:
            pass
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getblock", "params": ["a" * (2 << 20)]})
    try:
        c = http.client.HTTPConnection("127.0.0.1", PORT[node], timeout=5)
        c.request("POST", "/", big, {"Content-Type": "application/json"})
        c.getresponse().read()
        c.close()
    except (OSError, http.client.HTTPException):
        pass
    log(f"garbage: {sent} junk connections to {node} (p2p {ip}:26656, rpc 127.0.0.1:{PORT[node]}), "
        f"{len(bad_calls) + 1} malformed JSON-RPC calls")


def garbage_step(node):
    before = running(node)["StartedAt"]
    perturbation(f"garbage p2p+rpc ({node})", [node], lambda: garbage(node), lambda: None, hold=2)
    st = running(node)
    if not st["Running"] or st["StartedAt"] != before:
        raise Fail(f"{node} did not survive garbage: {st}")


garbage_step("node0")
garbage_step("node4")

# ---- transfers: exactly once ---------------------------------------------------------------
for label, addr, units, txid in transfers:
    seen_heights = set()
    for n in NODES:
        tx = wait_for(f"{label} finalized on {n}",
                      lambda: (lambda t: t if t.get("status") == "finalized" else None)(rpc(n, "gettransaction", [txid])), 60)
        seen_heights.add(tx["height"])
        bal = rpc(n, "getbalance", [addr])["balance"]
        if bal != units:
            raise Fail(f"{label}: {n} says {addr} holds {bal}, expected {units}")
    if len(seen_heights) != 1:
        raise Fail(f"{label}: nodes disagree on the height of {txid}: {seen_heights}")
# count occurrences in the whole chain of one node
top = height("node4")
counts = {t[3]: 0 for t in transfers}
for h in range(0, top + 1):
    block = rpc("node4", "getblock", [h], timeout=3)
    for tx in block.get("transactions", []):
        if tx.get("txid") in counts:
            counts[tx["txid"]] += 1
for label, addr, units, txid in transfers:
    if counts[txid] != 1:
        raise Fail(f"{label}: {txid} appears {counts[txid]} times in blocks 0..{top}")
    log(f"{label}: {txid} in the chain exactly once, balance {units} units on every node")

# ---- final full agreement check --------------------------------------------------------------
assert_all_running()
final = heights()
check_agreement(full=True)
log(f"final heights {final}; {len(canonical)} heights compared on {len(NODES)} nodes, forks {len(forks)}")
if forks:
    raise Fail(f"forks: {forks}")

print()
print(f"{'perturbation':<28} {'finality resumed (s)':>21} {'blocks caught up':>17} {'catch-up (s)':>13} {'forks':>6}")
for name, resumed, behind, caught, nforks in results:
    print(f"{name:<28} {resumed:>21.1f} {behind:>17} {caught:>13.1f} {nforks:>6}")
print(f"transfers landed exactly once: {len(transfers)}; total forks seen: {len(forks)}; "
      f"final height {max(final.values())}; python phase {time.time() - T0:.0f}s")
PY
echo "== e2e-docker: PASS"
