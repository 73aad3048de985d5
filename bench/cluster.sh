#!/usr/bin/env bash
# Cost of cluster mode per queue call: the same load against one edge alone and
# against three edges in cluster mode on a three-server NATS cluster (JetStream,
# R3), in one run. Each call goes to queue 1000 with AGENTS agents (static
# contacts on one `loadtest answer`, which answers at once); in cluster mode every
# offer first claims its agent in JetStream (create), the call's end shares the
# agent's idle time (put) and releases it (delete), and every node follows the
# other nodes' writes. All processes share this machine's cores, so the figure is
# CPU per call, not a speed-up.
#
#   bench/cluster.sh [SECONDS] [RATE] [AGENTS] [RUNS]   (default 20 s, 300 calls/s, 600, 1)
#
# RUNS > 1 alternates the modes (single, cluster, single, cluster, …) and ends with
# the median µs per call of each mode and their ratio: on this shared machine one
# run's single-node figure alone moved between 550 and 1070 µs within an hour.
#
# Cluster mode spreads the calls evenly: three `loadtest call`, one per node, at
# RATE/3 each. Calls are held 1 s, no RTP (signalling and shared state only).
# Prints per mode: calls answered and failed, the edges' CPU seconds (summed) and
# µs per answered call, the NATS servers' CPU, and the ratio cluster / single.
# Needs release builds of edge and loadtest (built if missing), nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
STEP=${1:-20}
RATE=${2:-300}
AGENTS=${3:-600}
RUNS=${4:-1}
release_bins_and_nats
CALLS=$(( RATE * STEP ))
PER_NODE=$(( CALLS / 3 ))
CALLS=$(( PER_NODE * 3 ))

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
AGENT_PORT=17090
NATS_PORTS=(17222 17223 17224)
ROUTE_PORTS=(17232 17233 17234)

agents_toml() {
  echo '[[queues]]'
  echo 'name = "q"'
  echo 'numbers = ["1000"]'
  printf 'agents = ['
  for i in $(seq 1 "$AGENTS"); do printf '"a%d"%s' "$i" "$([ "$i" -lt "$AGENTS" ] && echo ', ')"; done
  echo ']'
  echo 'max_wait = "60s"'
  for i in $(seq 1 "$AGENTS"); do
    printf '[[agents]]\nid = "a%d"\ncontact = "sip:a%d@127.0.0.1:%d"\n' "$i" "$i" "$AGENT_PORT"
  done
}
agents_toml > "$WORK/agents.toml"

# edge_config NAME SIP_PORT HTTP_PORT RTP_FIRST [CLUSTER_TOML]
edge_config() {
  cat > "$WORK/$1.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$2"]
max_calls = 100000
session_expires = "0s"
agent_ring_timeout = "10s"
[media]
address = "127.0.0.1"
rtp_ports = "$4-$(( $4 + 9999 ))"
[http]
listen = "127.0.0.1:$3"
[storage]
dir = "$WORK/$1-data"
[[trunks]]
name = "loadtest"
sources = ["127.0.0.1/32"]
${5:-}
TOML
  cat "$WORK/agents.toml" >> "$WORK/$1.toml"
}

# run MODE: prints one result line; the edges' and NATS servers' PIDs in EDGES/NATS.
run() {
  local mode=$1 pids=() nats=() callers=()
  if [ "$mode" = cluster ]; then
    start_nats
    nats=("${NATS_PIDS[@]}")
    for i in 0 1 2; do
      edge_config "edge-$i" $(( 16160 + i )) $(( 18180 + i )) $(( 20000 + i * 10000 )) \
        "[cluster]
node = \"edge-$i\"
nats = $NATS_URLS
advertise_sip = \"127.0.0.1:$(( 16160 + i ))\""
    done
  else
    edge_config edge-0 16160 18180 20000
  fi
  local n=1; [ "$mode" = cluster ] && n=3
  for i in $(seq 0 $(( n - 1 ))); do
    "$EDGE_BIN" --config "$WORK/edge-$i.toml" --log warn > "$WORK/$mode-edge-$i.log" 2>&1 &
    pids+=($!)
  done
  # Every node up (and joined, in cluster mode).
  for i in $(seq 0 $(( n - 1 ))); do
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$(( 18180 + i ))/healthz" > /dev/null && break
      sleep 0.2
    done
  done
  "$LT" answer --listen 127.0.0.1:$AGENT_PORT --calls "$CALLS" --quiet > "$WORK/$mode-agents.json" 2> "$WORK/$mode-agents.err" &
  local ans=$!
  sleep 0.5
  local e0 n0 w0 e1 n1 w1
  e0=$(ticks "${pids[@]}"); n0=$(ticks "${nats[@]}"); w0=$(date +%s.%N)
  if [ "$mode" = cluster ]; then
    for i in 0 1 2; do
      "$LT" call --target 127.0.0.1:$(( 16160 + i )) --to 1000 --rate $(( RATE / 3 )) --calls "$PER_NODE" \
        --duration 1s --quiet --max-failed 1000000 > "$WORK/$mode-caller-$i.json" 2> "$WORK/$mode-caller-$i.err" &
      callers+=($!)
    done
  else
    "$LT" call --target 127.0.0.1:16160 --to 1000 --rate "$RATE" --calls "$CALLS" \
      --duration 1s --quiet --max-failed 1000000 > "$WORK/$mode-caller-0.json" 2> "$WORK/$mode-caller-0.err" &
    callers+=($!)
  fi
  for p in "${callers[@]}"; do wait "$p" || true; done
  timeout 30 tail --pid=$ans -f /dev/null || kill $ans 2>/dev/null || true
  e1=$(ticks "${pids[@]}"); n1=$(ticks "${nats[@]}"); w1=$(date +%s.%N)
  local answered=0 failed=0 f a
  for f in "$WORK/$mode"-caller-*.json; do
    a=$(json "$f" "['calls']['answered']"); answered=$(( answered + ${a/\?/0} ))
    a=$(json "$f" "['calls']['failed']"); failed=$(( failed + ${a/\?/0} ))
  done
  local ecpu ncpu per
  ecpu=$(awk -v a="$e1" -v b="$e0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  ncpu=$(awk -v a="$n1" -v b="$n0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  per=$(awk -v c="$ecpu" -v n="$answered" 'BEGIN {if (n > 0) printf "%.0f", c * 1e6 / n; else print "-"}')
  printf "%-8s %9s %8s %7s %11s %11s %9s\n" "$mode" "$answered" "$failed" "$n" "$ecpu" "$per" "$ncpu"
  echo "$per" >> "$WORK/$mode.per"
  if [ "$mode" = cluster ]; then
    local o out=""
    for o in granted taken failed; do
      local sum=0 v
      for i in 0 1 2; do
        v=$(curl -s "http://127.0.0.1:$(( 18180 + i ))/metrics" | awk -v m="edge_cluster_claims_total{outcome=\"$o\"}" '$1==m {print $2}')
        sum=$(( sum + ${v:-0} ))
      done
      out="$out $o=$sum"
    done
    local holdbacks=0
    for i in 0 1 2; do
      v=$(curl -s "http://127.0.0.1:$(( 18180 + i ))/metrics" | awk '$1=="edge_cluster_fifo_holdbacks_total" {print $2}')
      holdbacks=$(( holdbacks + ${v:-0} ))
    done
    echo "cluster claims:$out fifo_holdbacks=$holdbacks"
  fi
  # SIGINT: stop at once (SIGTERM would drain, waiting for calls to end); the
  # edges before NATS, so they leave the cluster cleanly. Nothing may outlive the
  # run: the next one binds the same ports.
  stop_pids INT "${pids[@]}"
  [ ${#nats[@]} -eq 0 ] || stop_pids TERM "${nats[@]}"
  sleep 1
}

echo "queue calls: $CALLS at $RATE/s over $STEP s, held 1 s, $AGENTS agents"
printf "%-8s %9s %8s %7s %11s %11s %9s\n" mode answered failed nodes edge_cpu_s us/call nats_cpu_s
for _ in $(seq 1 "$RUNS"); do
  [ "${ONLY:-}" = cluster ] || run single
  [ "${ONLY:-}" = single ] || run cluster
done
[ -z "${ONLY:-}" ] || exit 0
# The median of a mode's runs ("-" when a run answered nothing).
median() {
  if grep -qv '^[0-9]' "$WORK/$1.per"; then echo -; return; fi
  sort -n "$WORK/$1.per" | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
s=$(median single); c=$(median cluster)
ratio=$(awk -v s="$s" -v c="$c" 'BEGIN {if (s > 0) printf "%.2f", c / s; else print "-"}')
[ "$RUNS" -eq 1 ] || echo "median of $RUNS runs: single $s us/call, cluster $c us/call"
echo "cluster_cpu_per_call_ratio=$ratio (target <= 1.3)"
