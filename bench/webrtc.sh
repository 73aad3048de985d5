#!/usr/bin/env bash
# Trunk ↔ WebRTC calls: N concurrent calls from `loadtest call` (plain G.711 over
# UDP, the trunk) through the edge to agents in "browsers" — `loadtest
# answer-webrtc`: one SIP WebSocket per agent with digest REGISTER, every call
# answered with ICE (controlling), DTLS-SRTP and a tone — and, in the same run, the
# same calls to a plain RTP answerer (`loadtest answer` on a route) to give the
# edge's CPU per call a baseline. Per step and system: calls answered, new calls
# per second, loss each way, the edge's CPU (cores, and per call) in the steady
# window, its RSS per call, and the edge's WebRTC leg counters.
#
#   bench/webrtc.sh [HOLD_SECONDS] [CONCURRENCY...]      (RATE=new calls/s, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-30}
shift || true
STEPS=${*:-"500 1000"}
RATE=${RATE:-200}
SYSTEMS=${SYSTEMS:-"plain webrtc"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LT="$TARGET_DIR/release/loadtest"; EDGE="$TARGET_DIR/release/edge"
[ -x "$LT" ] && [ -x "$EDGE" ] || cargo build --release -p loadtest -p edge
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
cleanup() { pkill -f "$WORK" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
source bench/common.sh
ANS=17490; SUT=17460; HTTP=18481
MAX=$(echo $STEPS | tr ' ' '\n' | sort -n | tail -1)

# Agents 100000.. (passwords secret-{id}) in queue 5000; route `service` → the
# plain answerer. No ring timeout to speak of: agents answer at once.
python3 - "$WORK" "$MAX" "$SUT" "$HTTP" "$ANS" <<'PY'
import sys
work, n, sut, http, ans = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
with open(f"{work}/edge.toml", "w") as f:
    f.write(f'[sip]\nlisten = ["udp:127.0.0.1:{sut}"]\nmax_calls = 100000\nrate_limit = 0\n'
            f'[media]\naddress = "127.0.0.1"\nrtp_ports = "10000-30999"\n'
            f'[http]\nlisten = "127.0.0.1:{http}"\nmax_connections = 100000\n[storage]\ndir = "{work}/data"\n'
            f'[[routes]]\nnumber = "service"\ntarget = "sip:service@127.0.0.1:{ans}"\n'
            f'[[queues]]\nname = "web"\nnumbers = ["5000"]\nmax_wait = "60s"\nagents = [' +
            ", ".join(f'"{100000 + i}"' for i in range(n)) + ']\n')
    for i in range(n):
        f.write(f'[[agents]]\nid = "{100000 + i}"\npassword = "secret-{100000 + i}"\n')
PY


"$EDGE" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
EPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.2; done

for sys in $SYSTEMS; do
  for n in $STEPS; do
    if [ "$sys" = webrtc ]; then
      "$LT" answer-webrtc --ws "ws://127.0.0.1:$HTTP/ws/sip" --count "$n" --first 100000 --rate 500 \
        --calls "$n" --quiet > "$WORK/ans.json" 2> "$WORK/ans.err" &
      APID=$!
      for _ in $(seq 300); do [ "$( metric edge_sip_registrations 2>/dev/null || echo 0)" = "$n" ] && break; sleep 0.2; done
      TO=5000
    else
      "$LT" answer --listen 127.0.0.1:$ANS --rtp tone:1000 --calls "$n" --quiet > "$WORK/ans.json" 2> "$WORK/ans.err" &
      APID=$!
      sleep 0.5
      TO=service
    fi
    c0=$(metric edge_webrtc_legs_connected_total); f0=$(metric edge_webrtc_legs_failed_total)
    r0=$(metric edge_webrtc_srtp_refused_total); n0=$(metric edge_webrtc_not_ready_total); d0=$(metric edge_rtp_dropped_packets_total)
    rss0=$(rss_kb $EPID)
    s0=$(date +%s.%N)
    "$LT" call --target 127.0.0.1:$SUT --to $TO --rate $RATE --calls "$n" --concurrency "$n" --duration "${HOLD}s" \
      --rtp --quiet > "$WORK/call.json" 2> "$WORK/call.err" &
    CPID=$!
    # Steady window: after every call is up (n/RATE s + 3 s), for half the hold.
    sleep $(( n / RATE + 3 ))
    t0=$(ticks $EPID); w0=$(date +%s.%N)
    rss1=$(rss_kb $EPID)
    sleep $(( HOLD / 2 ))
    t1=$(ticks $EPID); w1=$(date +%s.%N)
    wait $CPID || true
    for _ in $(seq 50); do kill -0 $APID 2>/dev/null || break; sleep 0.2; done
    kill -TERM $APID 2>/dev/null || true
    wait $APID || true
    cores=$(cores "$t1" "$t0" "$w1" "$w0")
    per_call=$(awk -v c="$cores" -v n="$n" 'BEGIN {printf "%.1f", c*1e6/n}')
    rss=$(awk -v a="$rss1" -v b="$rss0" -v n="$n" 'BEGIN {printf "%.1f", (a-b)/n}')
    c1=$(metric edge_webrtc_legs_connected_total); f1=$(metric edge_webrtc_legs_failed_total)
    r1=$(metric edge_webrtc_srtp_refused_total); n1=$(metric edge_webrtc_not_ready_total); d1=$(metric edge_rtp_dropped_packets_total)
    delta() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN{print a-b}'; }
    echo "$sys concurrent=$n answered=$(json "$WORK/call.json" "['calls']['answered']") failed=$(json "$WORK/call.json" "['calls']['failed']")" \
      "offered_rate_per_s=$RATE setup_p50_ms=$(json "$WORK/call.json" "['setup_ms']['p50']") setup_p99_ms=$(json "$WORK/call.json" "['setup_ms']['p99']") setup_max_ms=$(json "$WORK/call.json" "['setup_ms']['max']")" \
      "loss_to_trunk_pct=$(json "$WORK/call.json" "['rtp']['loss_pct']") loss_to_agent_pct=$(json "$WORK/ans.json" "['rtp']['loss_pct']")" \
      "agent_streams=$(json "$WORK/ans.json" "['rtp']['streams']") webrtc_connected=$(awk -v a="${c1:-0}" -v b="${c0:-0}" 'BEGIN{print a-b}')" \
      "webrtc_failed=$(delta "$f1" "$f0") srtp_refused=$(delta "$r1" "$r0") not_ready=$(delta "$n1" "$n0") edge_dropped=$(delta "$d1" "$d0")" \
      "agent_sent=$(json "$WORK/ans.json" "['rtp']['packets_sent']") trunk_received=$(json "$WORK/call.json" "['rtp']['packets_received']")" \
      "trunk_sent=$(json "$WORK/call.json" "['rtp']['packets_sent']") agent_received=$(json "$WORK/ans.json" "['rtp']['packets_received']")" \
      "agent_first_packet_p50_ms=$(json "$WORK/ans.json" "['rtp']['first_packet_ms']['p50']") agent_first_packet_p90_ms=$(json "$WORK/ans.json" "['rtp']['first_packet_ms']['p90']")" \
      "edge_cores=$cores edge_cpu_per_call_ppm_core=$per_call rss_kb_per_call=$rss"
    sleep 3
  done
done
