#!/usr/bin/env bash
# Overload: established calls with RTP both ways, then new calls from a trunk at
# RATE/s (meant as 10x the clean rate of bench/cps.sh) for SECONDS. Reports what
# the flood got (answered, 503, timed out), the established calls' RTP loss, the
# edge's peak RSS and the HTTP API's latency (GET /healthz every 50 ms) meanwhile.
#
#   bench/overload.sh [SECONDS] [RATE] [ESTABLISHED]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}; RATE=${2:-30000}; HELD=${3:-200}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
EDGE_BIN="$TARGET_DIR/release/edge"; LT="$TARGET_DIR/release/loadtest"
[ -x "$EDGE_BIN" ] && [ -x "$LT" ] || cargo build --release -p edge -p loadtest
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
SUT=16160; HTTP=18380; CALLEE=16199
cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT"]
max_calls = 50000
[media]
address = "127.0.0.1"
rtp_ports = "20000-59999"
[http]
listen = "127.0.0.1:$HTTP"
[storage]
dir = "$WORK/data"
[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
[[routes]]
number = "held"
target = "sip:held@127.0.0.1:$CALLEE"
[[routes]]
number = "flood"
target = "sip:flood@127.0.0.1:$CALLEE"
TOML
"$EDGE_BIN" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
EDGE=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done
nice -n 10 "$LT" answer --listen "127.0.0.1:$CALLEE" --rtp echo --quiet > "$WORK/answer.json" 2>&1 &
sleep 0.5
# The established calls: up before the flood, held through it, RTP both ways.
HOLD=$(( SECS + 25 ))
"$LT" call --target "127.0.0.1:$SUT" --to held --rate 50 --calls "$HELD" \
  --duration "${HOLD}s" --rtp --quiet --max-failed 1000000 > "$WORK/held.json" 2>/dev/null &
HELDPID=$!
sleep $(( HELD / 50 + 5 ))
# The flood: short calls (answered ones hang up at once), no media. The
# generators share the edge's two cores: they run niced, so that what is measured
# is the edge under load, not the edge starved of CPU by its own load generator.
nice -n 10 "$LT" call --target "127.0.0.1:$SUT" --to flood --rate "$RATE" --calls $(( RATE * SECS )) \
  --answer-timeout 10s --quiet --max-failed 100000000 > "$WORK/flood.json" 2>/dev/null &
FLOOD=$!
W=$(python3 bench/flood.py "$EDGE" "127.0.0.1:$SUT" "127.0.0.1:$HTTP" watch "$SECS")
wait "$FLOOD" || true
M=$(curl -s "http://127.0.0.1:$HTTP/metrics")
wait "$HELDPID" || true
python3 - "$WORK" "$RATE" "$SECS" "$W" "$M" <<'PY'
import json, sys
work, rate, secs, watch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
after = {l.split()[0]: float(l.split()[1]) for l in sys.argv[5].splitlines()
         if l.startswith(("edge_calls_shed_total", "edge_calls_rejected_overload_total", "edge_sip_inbound_dropped_total"))}
f = json.load(open(f"{work}/flood.json")); h = json.load(open(f"{work}/held.json"))
def outcomes(d):
    c = d.get("calls", {})
    return {k: c.get(k) for k in ("attempted", "answered", "failed", "timeouts", "by_status", "rate_per_s")}
r = h.get("rtp", {})
print(json.dumps({"offered_rate": rate, "seconds": secs, "flood_calls": outcomes(f),
                  "held": outcomes(h),
                  "held_rtp": {k: r.get(k) for k in ("streams", "packets_expected", "lost", "loss_pct", "jitter_ms")},
                  **{k: v for k, v in watch.items() if k != "flood"}, "after_flood": after}, indent=1))
PY
