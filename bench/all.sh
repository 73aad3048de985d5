#!/usr/bin/env bash
# Every side-by-side comparison of README's benchmark table, with short steps, one
# after another on this machine, then one Markdown table of the figures (edge, the
# peer measured in the same run, their ratio, the target) built by bench/table.py.
#
#   bench/all.sh [OUT_DIR]        (default: bench-results/DATE-TIME)
#
# Each script's own output is kept in OUT_DIR/NAME.log; the table goes to
# OUT_DIR/table.md and to stdout. About 30 minutes on the 2-core machine. ONLY=
# "cps chat ..." runs a subset. Installs what is missing of what the scripts
# need (bench/deps.sh: sip-tester, kamailio, rtpengine-daemon, nats-server, moto);
# release builds of edge and loadtest are built if missing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
bench/deps.sh
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[ -x "$TARGET_DIR/release/edge" ] && [ -x "$TARGET_DIR/release/loadtest" ] \
  || cargo build --release -p edge -p loadtest

# name | command (each prints key=value lines that table.py reads)
BENCHES=(
  "cps|bench/cps.sh 10 2000 3000 4000 5000"
  "generator|bench/generator.sh 10 4000 6000 8000"
  "register|bench/register.sh 100000 10 4000 6000 8000"
  "relay|env SYSTEMS='edge rtpengine' bench/relay.sh 20 1000"
  "supervision|bench/supervision.sh 30 1000"
  "webrtc|bench/webrtc.sh 30 1000"
  "chat|bench/chat.sh 2500 10000 20"
  "upload|bench/upload.sh 500"
  "transfer|bench/transfer.sh 10 1000"
  "conference|bench/conference.sh 30 400"
)
start=$(date +%s)
for entry in "${BENCHES[@]}"; do
  name=${entry%%|*}; cmd=${entry#*|}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  echo "== $name: $cmd" >&2
  t0=$(date +%s)
  { echo "\$ $cmd"; bash -c "$cmd" 2>&1; echo "exit=$? seconds=$(( $(date +%s) - t0 ))"; } > "$OUT/$name.log"
  tail -n 3 "$OUT/$name.log" >&2
  # Let sockets in TIME_WAIT and the previous run's processes go.
  sleep 5
done
echo "total_seconds=$(( $(date +%s) - start ))" > "$OUT/total.log"
python3 bench/table.py "$OUT" | tee "$OUT/table.md"
