#!/usr/bin/env bash
# New calls when a node dies: Kamailio with the repo's deploy/kamailio/edge-dispatcher.cfg
# (OPTIONS probes every 2 s, a node that does not answer an INVITE within 2 s is
# marked down and the next one is tried) in front of three edges in cluster mode on
# three NATS servers (JetStream). `loadtest call` sends RATE calls/s through
# Kamailio to a route answered by `loadtest answer` (held 1 s, no RTP); KILL_AT
# seconds in, node edge-1 is killed with SIGKILL.
#
#   bench/cluster_kill.sh [SECONDS] [RATE] [KILL_AT]   (default 30 s, 200 calls/s, 10 s)
#
# Prints the calls per second around the kill (by the second they started:
# started, answered, failed, slow = answered with a setup over 1 s, i.e. the proxy
# first waited for the dead node), the calls the dead node had up (their BYE got
# no 200), and "new calls clean after": from the kill to the end of the last second
# in which a new call failed or was slow. Needs release builds of edge and loadtest
# (built if missing), nats-server and kamailio.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECONDS_RUN=${1:-30}
RATE=${2:-200}
KILL_AT=${3:-10}
release_bins_and_nats
command -v kamailio > /dev/null || bench/deps.sh

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -KILL -f "kamailio -f .*edge-dispatcher.cfg .*$WORK" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
ANS_PORT=17390
KAM_PORT=17360
NATS_PORTS=(17322 17323 17324)
ROUTE_PORTS=(17332 17333 17334)
CALLS=$(( RATE * SECONDS_RUN ))

start_nats
edges=()
: > "$WORK/nodes.list"
for i in 0 1 2; do
  sip=$(( 17160 + i )); http=$(( 17180 + i ))
  cat > "$WORK/edge-$i.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$sip"]
max_calls = 100000
session_expires = "0s"
[media]
address = "127.0.0.1"
rtp_ports = "$(( 30000 + i * 10000 ))-$(( 39999 + i * 10000 ))"
[http]
listen = "127.0.0.1:$http"
[storage]
dir = "$WORK/edge-$i-data"
[cluster]
node = "edge-$i"
nats = $NATS_URLS
advertise_sip = "127.0.0.1:$sip"
[[trunks]]
name = "proxy"
sources = ["127.0.0.1/32"]
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:$ANS_PORT"
TOML
  echo "1 sip:127.0.0.1:$sip" >> "$WORK/nodes.list"
  "$EDGE_BIN" --config "$WORK/edge-$i.toml" --log warn > "$WORK/edge-$i.log" 2>&1 &
  edges+=($!)
done
# Every node joined (healthz 200 once its first JetStream write went through).
for i in 0 1 2; do
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$(( 17180 + i ))/healthz" > /dev/null && break
    sleep 0.2
  done
done
kamailio -f deploy/kamailio/edge-dispatcher.cfg -DD -E -w "$WORK" -Y "$WORK" \
  -A "KAM_LISTEN=udp:127.0.0.1:$KAM_PORT" -A "DS_LIST=\"$WORK/nodes.list\"" \
  -m 256 -M 16 > /dev/null 2> "$WORK/kamailio.log" &
kam=$!
"$LT" answer --listen 127.0.0.1:$ANS_PORT --calls "$CALLS" --quiet > "$WORK/answer.json" 2> "$WORK/answer.err" &
ans=$!
# Two probe rounds: every node in the dispatcher's set.
sleep 5
t0=$(date +%s.%N)
"$LT" call --target 127.0.0.1:$KAM_PORT --to service --rate "$RATE" --calls "$CALLS" \
  --duration 1s --quiet --max-failed 1000000 > "$WORK/caller.json" 2> "$WORK/caller.err" &
caller=$!
sleep "$KILL_AT"
kill -9 "${edges[1]}"
tk=$(date +%s.%N)
wait "$caller" || true
timeout 20 tail --pid=$ans -f /dev/null || kill $ans 2>/dev/null || true
python3 - "$WORK/caller.json" "$(awk -v a="$tk" -v b="$t0" 'BEGIN {print a-b}')" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
kill = float(sys.argv[2])
per = d.get("per_second", [])
c = d["calls"]
print(f"calls: {c['attempted']} attempted, {c['answered']} answered, {c['failed']} failed; "
      f"killed edge-1 at {kill:.2f} s")
print(f"{'second':>6} {'started':>8} {'answered':>9} {'failed':>7} {'slow':>5} {'setup_max_ms':>13} {'bye_failed':>11}")
k = int(kill)
for i, b in enumerate(per):
    if k - 2 <= i <= k + 8:
        print(f"{i:>6} {b['started']:>8} {b['answered']:>9} {b['failed']:>7} {b['slow']:>5} "
              f"{b['setup_max_ms']:>13} {b['bye_failed']:>11}")
bad = [i for i, b in enumerate(per) if i >= k and (b["failed"] or b["slow"])]
after = (bad[-1] + 1 - kill) if bad else 0.0
lost_up = sum(b["bye_failed"] for b in per)
before = sum(b["failed"] + b["slow"] for i, b in enumerate(per) if i < k)
print(f"new calls clean after: {max(after, 0.0):.2f} s from the kill "
      f"(failed or slow new calls: {sum(b['failed'] for b in per if True)} failed, "
      f"{sum(b['slow'] for b in per)} slow; before the kill: {before})")
print(f"calls up on the dead node (BYE without 200): {lost_up}")
PY
kill -INT "${edges[0]}" "${edges[2]}" 2>/dev/null || true
sleep 1
kill "$kam" "${NATS_PIDS[@]}" 2>/dev/null || true
wait 2>/dev/null || true
