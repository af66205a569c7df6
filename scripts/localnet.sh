#!/usr/bin/env bash
# Builds timed, writes a fresh N-validator testnet under ./localnet and runs every node on
# loopback, printing each finalized block. Ctrl-C stops them all.
#
#   scripts/localnet.sh [VALIDATORS] [BLOCK_INTERVAL_MS]
set -euo pipefail
cd "$(dirname "$0")/.."
validators=${1:-4}
interval=${2:-1000}
out=${LOCALNET_DIR:-localnet}
base_port=${BASE_PORT:-26600}

cargo build --release --bin timed
bin=target/release/timed
rm -rf "$out"
"$bin" testnet --validators "$validators" --out "$out" --base-port "$base_port" \
  --block-interval-ms "$interval"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping ${#pids[@]} nodes"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

for ((i = 0; i < validators; i++)); do
  RUST_LOG=${RUST_LOG:-info} "$bin" start --home "$out/node$i" >"$out/node$i/node.log" 2>&1 &
  pids+=($!)
done
echo "logs: $out/node*/node.log   rpc: http://127.0.0.1:$((base_port + 100))/ …"
echo "faucet key: $out/faucet.key   try: $bin wallet balance --address \$($bin wallet address --key $out/faucet.key) --rpc http://127.0.0.1:$((base_port + 100))/"
# Show node0's finalized blocks as they come; the other nodes log the same heights.
tail -n +1 -F "$out/node0/node.log" | grep --line-buffered -E "finalized block|WARN|ERROR" &
pids+=($!)
wait "${pids[0]}"
