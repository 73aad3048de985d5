#!/usr/bin/env bash
# Fuzz every target (or the ones named) for SECONDS each, or for RUNS executions
# each with RUNS=N, with libFuzzer through cargo-fuzz (nightly). Prints one line per
# target: executions, seconds, corpus size. Exits non-zero on the first crash
# (the input is in fuzz/artifacts/TARGET/).
#
#   fuzz/run.sh 60                     # every target, 60 s each
#   RUNS=10000000 fuzz/run.sh 0 sip_message
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-30}
shift || true
TARGETS=${*:-$(cargo +nightly fuzz list)}
# Built once (release, sanitizer on) into a persistent dir when CI gives one.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-target}
cargo +nightly fuzz build -O >/dev/null
for t in $TARGETS; do
  mkdir -p "corpus/$t"
  args=(-max_len=65536 -print_final_stats=1)
  if [ -n "${RUNS:-}" ]; then args+=(-runs="$RUNS"); else args+=(-max_total_time="$SECS"); fi
  log=$(mktemp)
  # Built first, so a build failure is not reported as a crash.
  cargo +nightly fuzz build -O "$t" >"$log" 2>&1 || { tail -20 "$log"; echo "FUZZ BUILD FAILED for $t"; exit 2; }
  start=$(date +%s)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
    tail -40 "$log"
    echo "FUZZ CRASH in $t (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "$t runs=$runs seconds=$(( $(date +%s) - start )) corpus=$(ls "corpus/$t" | wc -l) crashes=0"
  rm -f "$log"
done
