#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, the consensus simulator, and the
# multi-process network tests (real timed binaries over loopback TCP).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
profile=default
[ "${CI:-}" = "true" ] && profile=ci
exec cargo nextest run --workspace --all-targets --profile "$profile" "$@"
