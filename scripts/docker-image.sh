#!/usr/bin/env bash
# Builds the `timed:local` image (testnet/Dockerfile) without pulling anything: compiles a
# statically linked timed (glibc with +crt-static) into its own target directory, checks with
# ldd that it is static, and runs `docker build` on a context holding only that binary and an
# empty data directory. Idempotent: cargo and docker reuse their caches.
#
#   scripts/docker-image.sh [TAG]        (default timed:local)
#
# Env: STATIC_TARGET_DIR (default target/static), DOCKER_IMAGE_QUIET=1 for a quiet docker build.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-timed:local}
triple=x86_64-unknown-linux-gnu
target_dir=${STATIC_TARGET_DIR:-target/static}

echo "== static build of timed ($triple, target dir $target_dir)"
start=$(date +%s)
# With --target, RUSTFLAGS reach only the target crates: build scripts and proc macros stay
# dynamic, as they must.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release \
  --target "$triple" --target-dir "$target_dir" -p timed
echo "static build took $(($(date +%s) - start)) s"
bin=$target_dir/$triple/release/timed

ldd_out=$(ldd "$bin" 2>&1 || true)
if ! grep -Eq "not a dynamic executable|statically linked" <<<"$ldd_out"; then
  echo "error: $bin is not statically linked:" >&2
  echo "$ldd_out" >&2
  exit 1
fi
echo "ldd: ${ldd_out}"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/timed"
mkdir "$ctx/data"
echo "== docker build -t $tag"
quiet=()
[[ ${DOCKER_IMAGE_QUIET:-0} == 1 ]] && quiet=(--quiet)
docker build "${quiet[@]}" -t "$tag" -f testnet/Dockerfile "$ctx"
