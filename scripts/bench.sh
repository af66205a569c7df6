#!/usr/bin/env bash
# Builds timed in release mode and benchmarks 4 and 16 validators on loopback with back-to-back
# blocks: finalization latency (proposal -> finalized on all nodes), blocks/s, finalized tx/s
# under a load of signed transfers, bytes on the wire per block, CPU and RSS per node. Each
# size runs RUNS times on a fresh testnet; the table shows every run and the median.
#
#   scripts/bench.sh [extra `timed bench` flags, e.g. --seconds 20 --rate 4000 --json]
#
# Environment: RUNS (default 3), SIZES (default "4 16"), TMPDIR (where the testnets live;
# /dev/shm takes the disk's fsync cost out of the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
sizes=${SIZES:-"4 16"}

cargo build --release --bin timed
for n in $sizes; do
  echo
  target/release/timed bench --validators "$n" --runs "$runs" "$@"
done
