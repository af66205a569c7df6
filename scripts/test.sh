#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, the consensus simulator, and the
# multi-process network tests (real timed binaries over loopback TCP).
set -euo pipefail
cd "$(dirname "$0")/.."
# The dashboard test (node/tests/observe.rs) opens the page in headless Chromium; it fails
# without it, so install Debian's package when it is missing (and apt-get can).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  for attempt in 1 2 3; do
    if $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium; then
      break
    fi
    echo "apt-get install chromium failed (attempt $attempt)" >&2
    sleep $((attempt * 5))
  done
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "WARNING: chromium is not installed; the dashboard browser test will fail" >&2
fi
# The second-language light client (scripts/light_verify.py, run by node/tests/join.rs
# against a live network) needs PyNaCl and blake3 from PyPI.
if ! python3 -c 'import nacl.signing, blake3' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pynacl blake3 ||
    echo "WARNING: pip could not install pynacl and blake3; the Python light-client check will fail" >&2
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
profile=default
[ "${CI:-}" = "true" ] && profile=ci
exec cargo nextest run --workspace --all-targets --profile "$profile" "$@"
