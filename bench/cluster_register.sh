#!/usr/bin/env bash
# Cost of cluster mode per registration: AGENTS distinct agents sign in
# (`loadtest register`: REGISTER, 401, REGISTER with MD5 digest, 200) at RATE/s
# against one edge alone, then against three edges in cluster mode on three
# nats-servers (JetStream R3), the load split evenly over the nodes (three
# generators, disjoint agents). In cluster mode every node writes the bindings it
# holds into the bucket `edge_registrations` and follows the others'. All
# processes share this machine's cores, so the figure is CPU per registration.
#
#   bench/cluster_register.sh [AGENTS] [RATE]     (default 30000, 1500/s)
#
# Prints per mode: registrations ok and failed, the edges' CPU seconds (summed)
# and µs per registration, the NATS servers' CPU, the ratio cluster / single, and
# (cluster mode) how many of the agents node edge-2's API lists with a binding.
# Needs release builds of edge and loadtest (built if missing), nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
AGENTS=${1:-30000}
RATE=${2:-1500}
release_bins_and_nats
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PER_NODE=$(( AGENTS / 3 ))
AGENTS=$(( PER_NODE * 3 ))

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
NATS_PORTS=(17422 17423 17424)
ROUTE_PORTS=(17432 17433 17434)

python3 - "$WORK" "$AGENTS" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
with open(f"{work}/agents.toml", "w") as f:
    f.write('[[users]]\nname = "bench-admin"\nrole = "admin"\ntoken = "bench-admin-token"\n')
    for i in range(n):
        f.write(f'[[agents]]\nid = "{1000000 + i}"\npassword = "secret-{1000000 + i}"\n')
PY

# edge_config NAME SIP_PORT HTTP_PORT RTP_FIRST [CLUSTER_TOML]
edge_config() {
  {
    cat <<TOML
[sip]
listen = ["udp:127.0.0.1:$2"]
rate_limit = 0
auth_max_failures = 0
[media]
address = "127.0.0.1"
rtp_ports = "$4-$(( $4 + 999 ))"
[http]
listen = "127.0.0.1:$3"
[storage]
dir = "$WORK/$1-data"
TOML
    [ -z "${5:-}" ] || echo "$5"
    cat "$WORK/agents.toml"
  } > "$WORK/$1.toml"
}

run() {
  local mode=$1 n=1 pids=() gens=()
  NATS_PIDS=()
  if [ "$mode" = cluster ]; then
    n=3
    start_nats
  fi
  for i in $(seq 0 $(( n - 1 ))); do
    local cl=""
    [ "$mode" = cluster ] && cl=$(printf '[cluster]\nnode = "edge-%s"\nnats = %s\nadvertise_sip = "127.0.0.1:%s"' "$i" "$NATS_URLS" $(( 16560 + i )))
    edge_config "edge-$i" $(( 16560 + i )) $(( 18580 + i )) $(( 24000 + i * 1000 )) "$cl"
    "$EDGE_BIN" --config "$WORK/edge-$i.toml" --log warn > "$WORK/$mode-edge-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 0 $(( n - 1 ))); do
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$(( 18580 + i ))/healthz" > /dev/null && break; sleep 0.2; done
  done
  local e0 n0 e1 n1
  e0=$(ticks "${pids[@]}"); n0=$(ticks "${NATS_PIDS[@]}")
  local per=$(( AGENTS / n )) rate=$(( RATE / n ))
  for i in $(seq 0 $(( n - 1 ))); do
    "$LT" register --target 127.0.0.1:$(( 16560 + i )) --rate "$rate" --count "$per" \
      --first $(( 1000000 + i * per )) --password 'secret-{user}' --local 127.0.0.1:$(( 16570 + i )) \
      --max-failed 1000000000 > "$WORK/$mode-reg-$i.json" 2> /dev/null &
    gens+=($!)
  done
  for g in "${gens[@]}"; do wait "$g" || true; done
  # The writes into JetStream and the other nodes' watches finish after the
  # last 200: give them a few seconds inside the measured window.
  sleep 5
  e1=$(ticks "${pids[@]}"); n1=$(ticks "${NATS_PIDS[@]}")
  local ok=0 failed=0 f v
  for f in "$WORK/$mode"-reg-*.json; do
    v=$(json "$f" "['registrations']['ok']"); ok=$(( ok + ${v/\?/0} ))
    v=$(json "$f" "['registrations']['failed']"); failed=$(( failed + ${v/\?/0} ))
  done
  local ecpu ncpu us seen=""
  ecpu=$(awk -v a="$e1" -v b="$e0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  ncpu=$(awk -v a="$n1" -v b="$n0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  us=$(awk -v c="$ecpu" -v n="$ok" 'BEGIN {if (n > 0) printf "%.0f", c * 1e6 / n; else print "-"}')
  if [ "$mode" = cluster ]; then
    seen=$(curl -s -H "Authorization: Bearer bench-admin-token" "http://127.0.0.1:18582/api/v1/registrations" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(len({r["agent"] for r in d.get("registrations", [])}), "unreachable:", d.get("unreachable"))' 2>/dev/null || echo "?")
    seen=" listed_by_edge-2=$seen"
  fi
  printf "%-8s %9s %8s %11s %9s %11s%s\n" "$mode" "$ok" "$failed" "$ecpu" "$us" "$ncpu" "$seen"
  echo "$us" > "$WORK/$mode.us"
  stop_pids INT "${pids[@]}"
  [ ${#NATS_PIDS[@]} -eq 0 ] || stop_pids TERM "${NATS_PIDS[@]}"
  sleep 1
}

echo "registrations: $AGENTS agents at $RATE/s"
printf "%-8s %9s %8s %11s %9s %11s\n" mode ok failed edge_cpu_s us/reg nats_cpu_s
run single
run cluster
s=$(cat "$WORK/single.us"); c=$(cat "$WORK/cluster.us")
echo "cluster_cpu_per_registration_ratio=$(awk -v s="$s" -v c="$c" 'BEGIN {if (s > 0) printf "%.2f", c / s; else print "-"}')"
