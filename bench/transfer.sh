#!/usr/bin/env bash
# Blind-transfer rate: loadtest callers -> edge -> route `first` (loadtest answer as
# agents that REFER every answered call to route `second`) -> edge calls `second`
# (loadtest answer). A transfer counts when its REFER got 202 and the final NOTIFY
# said 200 (the new leg answered). Each step places RATE calls/s for SECONDS; every
# call is held HOLD (the REFER goes REFER_AFTER into it), so RATE transfers/s are
# asked in steady state. Prints per step: transfers asked, completed, failed, the
# REFER -> final NOTIFY latency (p50/p99 ms), callers' failures, edge CPU seconds
# and CPU per transfer.
#
#   bench/transfer.sh [SECONDS] [RATES...]       (default 10 s, 250 500 750 1000)
#
# Needs a release build of edge and loadtest (built if missing). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
STEP=${1:-10}
shift || true
RATES=${*:-"250 500 750 1000"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
EDGE_BIN="$TARGET_DIR/release/edge"
LT="$TARGET_DIR/release/loadtest"
[ -x "$EDGE_BIN" ] && [ -x "$LT" ] || cargo build --release -p edge -p loadtest
HOLD=3s
REFER_AFTER=1s

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
SUT_PORT=16060; FIRST_PORT=16090; SECOND_PORT=16092; HTTP_PORT=18082
cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT_PORT"]
max_calls = 100000
session_expires = "0s"
[media]
address = "127.0.0.1"
rtp_ports = "20000-59999"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[storage]
dir = "$WORK/data"
[[trunks]]
name = "loadtest"
sources = ["127.0.0.1/32"]
[[routes]]
number = "first"
target = "sip:first@127.0.0.1:$FIRST_PORT"
[[routes]]
number = "second"
target = "sip:second@127.0.0.1:$SECOND_PORT"
TOML
"$EDGE_BIN" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
EDGE=$!
sleep 1

printf "%-6s %8s %9s %7s %9s %9s %8s %9s %12s\n" rate asked completed failed p50_ms p99_ms callers edge_cpu_s cpu_us/xfer
for rate in $RATES; do
  calls=$(( rate * STEP ))
  "$LT" answer --listen 127.0.0.1:$FIRST_PORT --calls "$calls" --quiet \
    --refer-to "sip:second@127.0.0.1:$SUT_PORT" --refer-after $REFER_AFTER > "$WORK/agents.json" 2> "$WORK/agents.err" &
  A=$!
  "$LT" answer --listen 127.0.0.1:$SECOND_PORT --calls "$calls" --quiet > "$WORK/target.json" 2> "$WORK/target.err" &
  T=$!
  sleep 0.5
  t0=$(ticks $EDGE)
  "$LT" call --target 127.0.0.1:$SUT_PORT --to first --rate "$rate" --calls "$calls" \
    --duration $HOLD --quiet > "$WORK/caller.json" 2> "$WORK/caller.err" || true
  # The answerers exit once every call has finished (or are stopped here).
  for p in $A $T; do timeout 30 tail --pid=$p -f /dev/null || kill $p 2>/dev/null || true; done
  t1=$(ticks $EDGE)
  asked=$(json "$WORK/agents.json" "['transfers']['referred']")
  done_=$(json "$WORK/agents.json" "['transfers']['completed']")
  failed=$(json "$WORK/agents.json" "['transfers']['failed']")
  p50=$(json "$WORK/agents.json" "['transfers']['refer_to_final_ms']['p50']")
  p99=$(json "$WORK/agents.json" "['transfers']['refer_to_final_ms']['p99']")
  cfail=$(json "$WORK/caller.json" "['calls']['failed']")
  cpu=$(awk -v a="$t1" -v b="$t0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  per=$(awk -v c="$cpu" -v n="$done_" 'BEGIN {if (n > 0) printf "%.0f", c * 1e6 / n; else print "-"}')
  printf "%-6s %8s %9s %7s %9.9s %9.9s %8s %9s %12s\n" "$rate" "$asked" "$done_" "$failed" "$p50" "$p99" "$cfail" "$cpu" "$per"
  sleep 2
done
