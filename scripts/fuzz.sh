#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer) of every decoder a peer or client reaches.
#   scripts/fuzz.sh                 # every target, 10 million executions each (README figures)
#   scripts/fuzz.sh smoke           # every target for 5 s (CI)
#   scripts/fuzz.sh TARGET [ARGS]   # one target, extra libFuzzer arguments
#   scripts/fuzz.sh pack            # minimise every working corpus and archive it for commit
# The corpus is kept in the repository as fuzz/corpus/<target>.tar.gz; a target's working
# corpus fuzz/corpus/<target>/ (not tracked) is unpacked from it when missing, and fuzzing
# adds what it finds there.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "SKIPPED fuzzing: no nightly toolchain (cargo fuzz needs one for the sanitizers)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=$(cargo +nightly fuzz list)
mode=${1:-full}
case "$mode" in
  full) args=(-runs=10000000) ;;
  smoke) args=(-max_total_time=5) ;;
  pack)
    for target in $targets; do
      cargo +nightly fuzz cmin -O "$target" "corpus/$target" >/dev/null 2>&1
      tar -czf "corpus/$target.tar.gz" -C corpus "$target"
      echo "corpus/$target.tar.gz: $(ls "corpus/$target" | wc -l) inputs"
    done
    exit 0
    ;;
  *) targets=$mode; shift; args=("$@") ;;
esac

for target in $targets; do
  if [[ ! -d corpus/$target && -f corpus/$target.tar.gz ]]; then
    tar -xzf "corpus/$target.tar.gz" -C corpus
  fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# `cargo fuzz build` takes one target or, with none, builds them all.
if [[ $(wc -w <<<"$targets") == 1 ]]; then
  cargo +nightly fuzz build -O "$targets"
else
  cargo +nightly fuzz build -O
fi
for target in $targets; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target ${args[*]}"
  # A crash, leak, timeout or out-of-memory ends the run non-zero and leaves the input in
  # fuzz/artifacts/<target>/.
  if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- "${args[@]}" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "FAILED: fuzz target $target (input in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
done
