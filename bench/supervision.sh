#!/usr/bin/env bash
# Supervised + recorded calls: N concurrent G.711 calls through the edge, each
# recorded (route `record = true`, stereo WAV handed to the fs upload target) and
# each monitored by a supervisor (POST /api/v1/calls/{id}/monitors, listen mode):
#   loadtest call -> edge -> loadtest answer (agent, tone 1100 Hz)
#                     \---> loadtest answer (supervisor phone, tone 1700 Hz)
# Per step: calls answered, monitors active, loss each way on the parties' streams
# and on the supervisor streams the edge generates, the edge's CPU (cores) in the
# steady window, its RSS per call, and recordings archived.
#
#   bench/supervision.sh [HOLD_SECONDS] [CONCURRENCY...]
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-30}
shift || true
STEPS=${*:-"500 1000"}
RATE=${RATE:-200}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LT="$TARGET_DIR/release/loadtest"; EDGE="$TARGET_DIR/release/edge"
[ -x "$LT" ] && [ -x "$EDGE" ] || cargo build --release -p loadtest -p edge
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
cleanup() { pkill -f "$WORK" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
source bench/common.sh
ANS=17190; SUP=17192; SUT=17160; HTTP=18181; TOKEN=bench-admin-token

cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT"]
max_calls = 100000
[media]
address = "127.0.0.1"
rtp_ports = "10000-30999"
[http]
listen = "127.0.0.1:$HTTP"
[storage]
dir = "$WORK/data"
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:$ANS"
record = true
[[users]]
name = "root"
role = "admin"
token = "$TOKEN"
[[users]]
name = "sam"
role = "supervisor"
token = "bench-sam-token"
contact = "sip:sam@127.0.0.1:$SUP"
TOML

"$EDGE" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
EPID=$!
sleep 1
for n in $STEPS; do
  "$LT" answer --listen 127.0.0.1:$ANS --rtp tone:1100 --calls "$n" --quiet > "$WORK/ans.json" 2> "$WORK/ans.err" &
  APID=$!
  "$LT" answer --listen 127.0.0.1:$SUP --rtp tone:1700 --calls "$n" --quiet > "$WORK/sup.json" 2> "$WORK/sup.err" &
  SPID=$!
  sleep 0.5
  rss0=$(rss_kb $EPID)
  archived0=$(ls "$WORK/data/archive" 2>/dev/null | grep -c '\.wav$' || true)
  "$LT" call --target 127.0.0.1:$SUT --rate $RATE --calls "$n" --concurrency "$n" --duration "${HOLD}s" --rtp --quiet \
    > "$WORK/call.json" 2> "$WORK/call.err" &
  CPID=$!
  sleep $(( n / RATE + 2 ))
  post_all monitors '{"user":"sam","mode":"listen"}' 1 201
  for _ in $(seq 100); do [ "$(metric edge_monitors_active)" -ge "$n" ] 2>/dev/null && break; sleep 0.1; done
  mons=$(metric edge_monitors_active); recs=$(metric edge_recordings_active)
  t0=$(ticks $EPID); w0=$(date +%s.%N); rss1=$(rss_kb $EPID)
  sleep $(( HOLD / 3 ))
  t1=$(ticks $EPID); w1=$(date +%s.%N)
  wait $CPID || true
  for pid in $APID $SPID; do
    for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
    kill -TERM $pid 2>/dev/null || true; wait $pid || true
  done
  for _ in $(seq 300); do
    a=$(ls "$WORK/data/archive" 2>/dev/null | grep -c '\.wav$' || true)
    [ "$a" -ge $(( archived0 + n )) ] && break; sleep 1
  done
  cores=$(cores "$t1" "$t0" "$w1" "$w0")
  rss=$(awk -v a="$rss1" -v b="$rss0" -v n="$n" 'BEGIN {printf "%.1f", (a-b)/n}')
  echo "edge supervised+recorded concurrent=$n answered=$(json "$WORK/call.json" "['calls']['answered']") monitors_active=$mons recordings_active=$recs" \
    "loss_to_caller_pct=$(json "$WORK/call.json" "['rtp']['loss_pct']") loss_to_agent_pct=$(json "$WORK/ans.json" "['rtp']['loss_pct']")" \
    "loss_to_supervisor_pct=$(json "$WORK/sup.json" "['rtp']['loss_pct']") supervisor_jitter_p99_ms=$(json "$WORK/sup.json" "['rtp']['jitter_ms']['p99']")" \
    "caller_jitter_p99_ms=$(json "$WORK/call.json" "['rtp']['jitter_ms']['p99']") edge_cores=$cores rss_kb_per_call=$rss" \
    "recordings_archived=$(( $(ls "$WORK/data/archive" 2>/dev/null | grep -c '\.wav$' || true) - archived0 ))"
  sleep 2
done
