#!/usr/bin/env bash
# Time for a new node to join a chain of HEIGHT blocks: by full sync (every block fetched,
# its certificate verified and applied) and by state sync (`timed start --state-sync`: a
# snapshot verified against a header certified from the genesis, then the blocks after it).
# The validators write a snapshot every SNAPSHOT_INTERVAL heights; blocks are empty but for
# their reward outputs, so the state grows with the chain (two outputs per height).
#
#   scripts/join_bench.sh            # HEIGHT=100000 VALIDATORS=1 SNAPSHOT_INTERVAL=10000
#
# Prints one line per join: the wall time until the new node's tip reached HEIGHT.
set -euo pipefail
cd "$(dirname "$0")/.."
height=${HEIGHT:-100000}
validators=${VALIDATORS:-1}
interval=${SNAPSHOT_INTERVAL:-10000}
base_port=${BASE_PORT:-27600}

cargo build --release --bin timed
bin=$PWD/target/release/timed
dir=$(mktemp -d "${TMPDIR:-/tmp}/join-bench.XXXXXX")
pids=()
stop() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT

"$bin" testnet --validators "$validators" --full-nodes 2 --out "$dir/net" \
  --base-port "$base_port" --block-interval-ms 1 >/dev/null
for home in "$dir"/net/node*; do
  sed -i "s/^snapshot_interval = .*/snapshot_interval = $interval/" "$home/config.toml"
done

tip() {
  curl -s -m 2 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"getblockchaininfo","params":[]}' \
    "http://127.0.0.1:$1/" | jq -r '.result.height // 0' 2>/dev/null || echo 0
}

for ((i = 0; i < validators; i++)); do
  RUST_LOG=warn "$bin" start --home "$dir/net/node$i" >"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
rpc0=$((base_port + 100))
started=$(date +%s)
while (($(tip "$rpc0") < height)); do
  sleep 5
  echo "building the chain: height $(tip "$rpc0") of $height ($(($(date +%s) - started)) s)"
done

# Joins node $1 (a full-node home) with extra flags, printing the time to reach $height.
join() {
  local node=$1 label=$2
  shift 2
  local rpc=$((base_port + 100 + node))
  local t0
  t0=$(date +%s.%N)
  RUST_LOG=info "$bin" start --home "$dir/net/node$node" "$@" >"$dir/node$node.log" 2>&1 &
  pids+=($!)
  while (($(tip "$rpc") < height)); do
    sleep 0.2
  done
  local secs
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  printf '%-11s joined a chain of %s blocks in %6.1f s\n' "$label" "$height" "$secs"
  grep -E "state sync: (snapshot installed|state restored)|caught up" "$dir/node$node.log" | tail -3 || true
}

join "$validators" "full sync"
join $((validators + 1)) "state sync" --state-sync
