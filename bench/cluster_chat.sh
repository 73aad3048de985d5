#!/usr/bin/env bash
# Chat in cluster mode, two measurements in one run:
#
# 1. Cost per chat delivery: `loadtest chat` (ROOMS rooms of customer, agent and two
#    supervisors, RATE messages/s for SECONDS) against one edge alone and against
#    one edge in cluster mode on a three-server NATS cluster (JetStream, R3), where
#    every entry is written to JetStream before it is delivered. Rooms live on the
#    node that holds them, so a three-node cluster carries three times the rooms at
#    this per-node cost. Prints the edge's and the NATS servers' CPU seconds and
#    µs per delivery, and the ratio cluster / single (edge + NATS).
# 2. A node kill with FAILOVER_ROOMS live chats: `loadtest chat-failover` starts the
#    chats on node A (each customer writes a message a second, each acknowledged
#    before the next), A is killed with SIGKILL KILL_AFTER seconds later, every
#    customer resumes on node B and checks that no acknowledged message is missing.
#
#   bench/cluster_chat.sh [ROOMS] [RATE] [SECONDS] [FAILOVER_ROOMS]
#                                    (default 500 rooms, 5000 msg/s, 20 s, 1000)
# RELAYED=1 adds a third cost mode: two nodes in cluster mode, customers on the
# first, agents and supervisors on the second (their consoles linked to the first:
# every staff frame crosses the nodes; both edges' CPU counted).
# ONLY=cost|failover runs one part. Needs release builds of edge and loadtest
# (built if missing) and nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
ROOMS=${1:-500}
RATE=${2:-5000}
SECS=${3:-20}
FROOMS=${4:-1000}
KILL_AFTER=${KILL_AFTER:-20}
release_bins_and_nats
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
trap 'kill -INT $(jobs -p) 2>/dev/null || true; sleep 1; kill -9 $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
NATS_PORTS=(17322 17323 17324)
ROUTE_PORTS=(17332 17333 17334)
NATS_PIDS=()

stop() { for p in "$@"; do kill -INT "$p" 2>/dev/null || true; done; for p in "$@"; do wait "$p" 2>/dev/null || true; done; }

# edge_config NAME SIP_PORT HTTP_PORT RTP_FIRST CLUSTER(0|1) AGENTS
edge_config() {
  {
    cat <<TOML
[sip]
listen = ["udp:127.0.0.1:$2"]
[media]
address = "127.0.0.1"
rtp_ports = "$4-$(( $4 + 999 ))"
[http]
listen = "127.0.0.1:$3"
max_connections = 100000
[storage]
dir = "$WORK/$1-data"
TOML
    if [ "$5" = 1 ]; then
      printf '[cluster]\nnode = "%s"\nnats = %s\nadvertise_sip = "127.0.0.1:%s"\n' "$1" "$NATS_URLS" "$2"
    fi
    printf '[[queues]]\nname = "load"\nchannel = "chat"\nagents = ['
    for ((i = 0; i < $6; i++)); do printf '"lt-agent-%d",' "$i"; done
    printf '"lt-idle"]\n'
    for ((i = 0; i < $6; i++)); do
      printf '[[users]]\nname = "lt-agent-%d"\nrole = "agent"\ntoken = "lt-agent-token-%d"\nmax_chats = 1\n' "$i" "$i"
    done
    printf '[[users]]\nname = "lt-idle"\nrole = "agent"\ntoken = "lt-idle-token"\n'
    printf '[[users]]\nname = "lt-supervisor"\nrole = "supervisor"\ntoken = "lt-supervisor-token"\n'
  } > "$WORK/$1.toml"
}

wait_up() { for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$1/healthz" > /dev/null && return 0; sleep 0.2; done; echo "node on $1 did not come up"; return 1; }

cost() {
  local mode=$1 cl=0 staff=()
  [ "$mode" != single ] && { cl=1; start_nats; }
  edge_config "$mode" 16260 18290 30000 "$cl" "$ROOMS"
  "$EDGE_BIN" --config "$WORK/$mode.toml" --log warn > "$WORK/$mode-edge.log" 2>&1 &
  local epids=($!)
  wait_up 18290
  if [ "$mode" = relayed ]; then
    # The agents and supervisors sign in at a second node: their consoles are
    # linked to the first, where the customers start the chats.
    edge_config "$mode-b" 16261 18291 31000 1 "$ROOMS"
    "$EDGE_BIN" --config "$WORK/$mode-b.toml" --log warn > "$WORK/$mode-b-edge.log" 2>&1 &
    epids+=($!)
    wait_up 18291
    for _ in $(seq 1 100); do
      [ "$(curl -s http://127.0.0.1:18291/metrics | awk '$1=="edge_cluster_nodes" {print $2}')" = 2 ] && break
      sleep 0.1
    done
    staff=(--staff-target 127.0.0.1:18291)
  fi
  local e0 n0 e1 n1
  e0=$(ticks "${epids[@]}"); n0=$(ticks "${NATS_PIDS[@]}")
  "$LT" chat --target 127.0.0.1:18290 "${staff[@]}" --server edge --rooms "$ROOMS" --rate "$RATE" \
    --duration "${SECS}s" > "$WORK/$mode-chat.txt" 2>&1 || true
  e1=$(ticks "${epids[@]}"); n1=$(ticks "${NATS_PIDS[@]}")
  stop "${epids[@]}"
  [ "$mode" != single ] && stop "${NATS_PIDS[@]}"
  NATS_PIDS=()
  local del lost ecpu ncpu per
  del=$(awk '/^deliveries:/ {print $2}' "$WORK/$mode-chat.txt")
  lost=$(awk '/^lost:/ {print $2}' "$WORK/$mode-chat.txt")
  ecpu=$(awk -v a="$e1" -v b="$e0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  ncpu=$(awk -v a="$n1" -v b="$n0" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}')
  per=$(awk -v c="$ecpu" -v n="$ncpu" -v d="${del:-0}" 'BEGIN {if (d > 0) printf "%.2f", (c + n) * 1e6 / d; else print "-"}')
  printf "%-8s %11s %6s %9s %9s %17s  %s\n" "$mode" "${del:-?}" "${lost:-?}" "$ecpu" "$ncpu" "$per" \
    "$(awk '/^deliveries:/ {print "p50 " $7 " ms, p99 " $10 " ms"}' "$WORK/$mode-chat.txt")"
  echo "$per" > "$WORK/$mode.per"
}

failover() {
  start_nats
  edge_config edge-a 16270 18300 32000 1 0
  edge_config edge-b 16271 18301 34000 1 0
  "$EDGE_BIN" --config "$WORK/edge-a.toml" --log info > "$WORK/edge-a.log" 2>&1 &
  local a=$!
  "$EDGE_BIN" --config "$WORK/edge-b.toml" --log info > "$WORK/edge-b.log" 2>&1 &
  local b=$!
  wait_up 18300; wait_up 18301
  echo "== kill -9 of node A with $FROOMS live chats (A killed ${KILL_AFTER} s after they start)"
  "$LT" chat-failover --first 127.0.0.1:18300 --then 127.0.0.1:18301 --queue load \
    --rooms "$FROOMS" --interval 1s --resume-within 60s > "$WORK/failover.txt" 2>&1 &
  local lt=$!
  sleep "$KILL_AFTER"
  kill -9 "$a"
  local killed; killed=$(date +%s.%N)
  wait "$lt" || true
  cat "$WORK/failover.txt"
  local m; m=$(curl -s http://127.0.0.1:18301/metrics)
  echo "taken over by B: $(awk '$1=="edge_cluster_chats_taken_over_total" {print $2}' <<< "$m") chats (fenced: $(awk '$1=="edge_cluster_chats_fenced_total" {print $2}' <<< "$m")); loadtest ended $(awk -v a="$(date +%s.%N)" -v b="$killed" 'BEGIN {printf "%.1f", a-b}') s after the kill"
  stop "$b" "${NATS_PIDS[@]}"
}

if [ "${ONLY:-cost}" != failover ]; then
  echo "== cost per chat delivery: $ROOMS rooms (4 connections each), $RATE msg/s for ${SECS} s"
  printf "%-8s %11s %6s %9s %9s %17s  %s\n" mode deliveries lost "edge CPU" "NATS CPU" "µs CPU/delivery" latency
  cost single
  cost cluster
  awk -v s="$(cat "$WORK/single.per")" -v c="$(cat "$WORK/cluster.per")" 'BEGIN {if (s > 0) printf "cluster / single CPU per delivery (edge + NATS): %.2fx\n", c / s}'
  if [ -n "${RELAYED:-}" ]; then
    cost relayed
    awk -v s="$(cat "$WORK/single.per")" -v c="$(cat "$WORK/relayed.per")" 'BEGIN {if (s > 0) printf "relayed / single CPU per delivery (edges + NATS): %.2fx\n", c / s}'
  fi
fi
if [ "${ONLY:-failover}" != cost ]; then
  failover
fi
