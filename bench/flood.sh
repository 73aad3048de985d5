#!/usr/bin/env bash
# Hostile traffic against the edge, one flood at a time, with the edge's peak RSS
# and the HTTP API's latency (GET /healthz every 50 ms) during each:
#   strangers  N INVITE/s over UDP from 127.0.0.2, which is no trunk: once with the
#              per-source rate limit off (every INVITE gets its one stateless 403),
#              once with the default rate_limit (the source is ignored after 100/s)
#   tcp_idle   N idle SIP TCP connections from one address
#   http_slow  N HTTP connections sending their headers a byte a second
#
#   bench/flood.sh [SECONDS] [STRANGER_RATE] [TCP_CONNS] [SLOW_CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}; RATE=${2:-4000}; TCP=${3:-10000}; SLOW=${4:-3000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
EDGE_BIN="$TARGET_DIR/release/edge"
[ -x "$EDGE_BIN" ] || cargo build --release -p edge
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
SUT=16060; HTTP=18280
start_edge() { # extra [sip] lines
  cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT", "tcp:127.0.0.1:$SUT"]
$1
[media]
address = "127.0.0.1"
rtp_ports = "20000-29999"
[http]
listen = "127.0.0.1:$HTTP"
[storage]
dir = "$WORK/data"
[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:15999"
TOML
  "$EDGE_BIN" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 &
  EDGE=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done
}
stop_edge() { kill "$EDGE" 2>/dev/null || true; wait "$EDGE" 2>/dev/null || true; }
flood() { python3 bench/flood.py "$EDGE" "127.0.0.1:$SUT" "127.0.0.1:$HTTP" "$@"; }

start_edge "rate_limit = 0"
flood strangers "$SECS" "$RATE"
stop_edge
start_edge ""
flood strangers "$SECS" "$RATE"
flood tcp_idle "$SECS" "$TCP"
flood http_slow "$SECS" "$SLOW"
stop_edge
