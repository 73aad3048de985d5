#!/usr/bin/env bash
# Five-party conferences: N concurrent G.711 calls through the edge, each turned
# into a conference of five (POST /api/v1/calls/{id}/participants three times):
#   loadtest call (customer, tone 440 Hz) -> edge -> loadtest answer (agent, 1100 Hz)
#                                              \--> loadtest answer (3 members each, 1700 Hz)
# Every party sends a tone and gets the edge's mix. Per step: conferences up, loss,
# jitter and MOS as each kind of party receives it (customer, agent, members), the
# edge's CPU (cores) in the steady window and its RSS per conference.
#
#   bench/conference.sh [HOLD_SECONDS] [CONFERENCES...]      (default 40 s, 100 400)
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-40}
shift || true
STEPS=${*:-"100 400"}
RATE=${RATE:-100}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LT="$TARGET_DIR/release/loadtest"; EDGE="$TARGET_DIR/release/edge"
[ -x "$LT" ] && [ -x "$EDGE" ] || cargo build --release -p loadtest -p edge
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
cleanup() { pkill -f "$WORK" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
source bench/common.sh
ANS=17290; MEM=17292; SUT=17260; HTTP=18281; TOKEN=bench-admin-token

cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT"]
max_calls = 100000
session_expires = "0s"
[media]
address = "127.0.0.1"
rtp_ports = "10000-40999"
[http]
listen = "127.0.0.1:$HTTP"
[storage]
dir = "$WORK/data"
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:$ANS"
[[routes]]
number = "member"
target = "sip:member@127.0.0.1:$MEM"
[[users]]
name = "root"
role = "admin"
token = "$TOKEN"
TOML

"$EDGE" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
EPID=$!
sleep 1
for n in $STEPS; do
  "$LT" answer --listen 127.0.0.1:$ANS --rtp tone:1100 --calls "$n" --quiet > "$WORK/ans.json" 2> "$WORK/ans.err" &
  APID=$!
  "$LT" answer --listen 127.0.0.1:$MEM --rtp tone:1700 --calls $(( 3 * n )) --quiet > "$WORK/mem.json" 2> "$WORK/mem.err" &
  MPID=$!
  sleep 0.5
  rss0=$(rss_kb $EPID)
  "$LT" call --target 127.0.0.1:$SUT --rate $RATE --calls "$n" --concurrency "$n" --duration "${HOLD}s" --rtp --quiet \
    > "$WORK/call.json" 2> "$WORK/call.err" &
  CPID=$!
  sleep $(( n / RATE + 2 ))
  post_all participants '{"to":"member"}' 3 201 2>> "$WORK/driver.err"
  for _ in $(seq 100); do [ "$(metric edge_monitors_active)" -ge $(( 3 * n )) ] 2>/dev/null && break; sleep 0.1; done
  members=$(metric edge_monitors_active)
  t0=$(ticks $EPID); w0=$(date +%s.%N); rss1=$(rss_kb $EPID)
  sleep $(( HOLD / 3 ))
  t1=$(ticks $EPID); w1=$(date +%s.%N)
  wait $CPID || true
  for pid in $APID $MPID; do
    for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
    kill -TERM $pid 2>/dev/null || true; wait $pid || true
  done
  cores=$(cores "$t1" "$t0" "$w1" "$w0")
  rss=$(awk -v a="$rss1" -v b="$rss0" -v n="$n" 'BEGIN {printf "%.1f", (a-b)/n}')
  echo "edge conferences=$n answered=$(json "$WORK/call.json" "['calls']['answered']") members_active=$members ($(tail -n1 "$WORK/driver.err"))" \
    "loss_customer_pct=$(json "$WORK/call.json" "['rtp']['loss_pct']") loss_agent_pct=$(json "$WORK/ans.json" "['rtp']['loss_pct']") loss_members_pct=$(json "$WORK/mem.json" "['rtp']['loss_pct']")" \
    "mos_p5_customer=$(json "$WORK/call.json" "['rtp']['mos']['p5']") mos_p5_agent=$(json "$WORK/ans.json" "['rtp']['mos']['p5']") mos_p5_members=$(json "$WORK/mem.json" "['rtp']['mos']['p5']")" \
    "jitter_p99_ms_customer=$(json "$WORK/call.json" "['rtp']['jitter_ms']['p99']") members=$(json "$WORK/mem.json" "['rtp']['jitter_ms']['p99']")" \
    "edge_cores=$cores rss_kb_per_conference=$rss"
  sleep 2
done
