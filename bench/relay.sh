#!/usr/bin/env bash
# RTP relay capacity: N concurrent G.711 calls (50 packets/s each way) through
#   direct   loadtest call -> loadtest answer (baseline: what the generator adds)
#   edge     loadtest call -> edge (B2BUA + relay) -> loadtest answer
#   rtpengine loadtest call -> Kamailio + rtpengine (userspace) -> loadtest answer
# stepping N up in one run. RTP port ranges sit below the kernel's ephemeral range
# (32768+), where loadtest's own sockets are. Per step: loss each way, jitter p99, the media
# process's CPU (cores) in the steady window, per call, and the edge's RSS per call.
#
#   bench/relay.sh [HOLD_SECONDS] [CONCURRENCY...]
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-30}
shift || true
STEPS=${*:-"500 1000 2000"}
SYSTEMS=${SYSTEMS:-"direct edge rtpengine"}
RATE=${RATE:-250}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LT="$TARGET_DIR/release/loadtest"; EDGE="$TARGET_DIR/release/edge"
[ -x "$LT" ] && [ -x "$EDGE" ] || cargo build --release -p loadtest -p edge
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
cleanup() {
  pkill -f "$WORK" 2>/dev/null || true
  pkill -f "kamailio -f bench/kamailio-rtpengine.cfg" 2>/dev/null || true
  pkill -f "rtpengine --config-file=none" 2>/dev/null || true
  pkill -f "loadtest answer --listen 127.0.0.1:17090" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source bench/common.sh
ANS=17090; SUT=17060

cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT"]
max_calls = 100000
[media]
address = "127.0.0.1"
rtp_ports = "10000-30999"
[http]
listen = "127.0.0.1:18081"
[storage]
dir = "$WORK/data"
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:$ANS"
TOML

start_system() {
  case $1 in
    direct) TARGET=127.0.0.1:$ANS; PIDS="" ;;
    edge)
      "$EDGE" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
      PIDS=$!; TARGET=127.0.0.1:$SUT ;;
    rtpengine)
      command -v rtpengine > /dev/null || { echo "missing rtpengine (apt-get install rtpengine-daemon)"; return 1; }
      rtpengine --config-file=none --interface=127.0.0.1 --listen-ng=127.0.0.1:22223 --port-min=10000 --port-max=30999 \
        --table=-1 --foreground --log-level=3 --num-threads=2 --pidfile="$WORK/rtpengine.pid" > "$WORK/rtpengine.log" 2>&1 &
      PIDS=$!
      kamailio -f bench/kamailio-rtpengine.cfg -P "$WORK/kam.pid" -Y "$WORK" -w "$WORK" \
        -A "KAM_LISTEN=udp:127.0.0.1:$SUT" -A "KAM_TARGET=\"sip:127.0.0.1:$ANS\"" -m 1024 -M 32 > "$WORK/kam.log" 2>&1
      TARGET=127.0.0.1:$SUT ;;
  esac
  sleep 1
}
stop_system() {
  [ -n "$PIDS" ] && kill $PIDS 2>/dev/null || true
  pkill -f "kamailio -f bench/kamailio-rtpengine.cfg" 2>/dev/null || true
  sleep 1
}


for sys in $SYSTEMS; do
  start_system "$sys" || continue
  for n in $STEPS; do
    "$LT" answer --listen 127.0.0.1:$ANS --rtp tone:1000 --calls "$n" --quiet > "$WORK/ans.json" 2> "$WORK/ans.err" &
    APID=$!
    sleep 0.5
    rss0=$( [ "$sys" = edge ] && rss_kb $PIDS || echo 0 )
    "$LT" call --target "$TARGET" --rate $RATE --calls "$n" --concurrency "$n" --duration "${HOLD}s" --rtp --quiet \
      > "$WORK/call.json" 2> "$WORK/call.err" &
    CPID=$!
    # Steady window: after every call is up (ramp n/RATE s + 2 s), for half the hold.
    sleep $(( n / RATE + 2 ))
    t0=$(ticks $PIDS); w0=$(date +%s.%N)
    rss1=$( [ "$sys" = edge ] && rss_kb $PIDS || echo 0 )
    sleep $(( HOLD / 2 ))
    t1=$(ticks $PIDS); w1=$(date +%s.%N)
    wait $CPID || true
    # Calls whose BYE was lost never finish at the answerer: stop it (it prints its
    # summary on SIGTERM) if it has not exited 10 s after the caller.
    for _ in $(seq 50); do kill -0 $APID 2>/dev/null || break; sleep 0.2; done
    kill -TERM $APID 2>/dev/null || true
    wait $APID || true
    cores=$(cores "$t1" "$t0" "$w1" "$w0")
    per_call=$(awk -v c="$cores" -v n="$n" 'BEGIN {printf "%.2f", c*1e6/n}')
    rss=$(awk -v a="$rss1" -v b="$rss0" -v n="$n" 'BEGIN {printf "%.1f", (a-b)/n}')
    echo "$sys concurrent=$n answered=$(json "$WORK/call.json" "['calls']['answered']")" \
      "loss_to_caller_pct=$(json "$WORK/call.json" "['rtp']['loss_pct']") loss_to_callee_pct=$(json "$WORK/ans.json" "['rtp']['loss_pct']")" \
      "jitter_p99_ms=$(json "$WORK/call.json" "['rtp']['jitter_ms']['p99']") delay_p50_ms=$(json "$WORK/call.json" "['rtp']['delay_ms']['p50']")" \
      "mos_mean=$(json "$WORK/call.json" "['rtp']['mos']['mean']") media_cores=$cores media_cpu_per_call_ppm_core=$per_call rss_kb_per_call=$rss"
    sleep 2
  done
  stop_system
done
