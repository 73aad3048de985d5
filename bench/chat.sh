#!/usr/bin/env bash
# Web chat fan-out, edge vs nats-server, side by side in one run: ROOMS rooms of a
# customer, an agent and two supervisors (4 WebSocket connections each), customers
# and agents writing RATE messages/s in all for SECONDS; every connection receives
# every message of its room (4 deliveries per message). loadtest checks order,
# loss and duplicates per room and sender and measures delivery latency; server
# memory per idle connection is its RSS growth once all rooms are up.
# nats-server (Debian package) carries the same pattern over its WebSocket
# listener: a subject per room, all four connections subscribed, two publishing.
#
#   bench/chat.sh [ROOMS] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOMS=${1:-2500}
RATE=${2:-60000}
SECS=${3:-30}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LT="$TARGET_DIR/release/loadtest"; EDGE="$TARGET_DIR/release/edge"
[ -x "$LT" ] && [ -x "$EDGE" ] || cargo build --release -p loadtest -p edge
command -v nats-server >/dev/null || { echo "nats-server is required (apt-get install nats-server)"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
HTTP=18281; NATSWS=18282; NATS=18283

{
  cat <<TOML
[sip]
listen = ["udp:127.0.0.1:18260"]
[media]
address = "127.0.0.1"
[http]
listen = "127.0.0.1:$HTTP"
[storage]
dir = "$WORK/data"
[[queues]]
name = "load"
channel = "chat"
TOML
  printf 'agents = ['
  for ((i = 0; i < ROOMS; i++)); do printf '"lt-agent-%d",' "$i"; done
  printf ']\n'
  for ((i = 0; i < ROOMS; i++)); do
    printf '[[users]]\nname = "lt-agent-%d"\nrole = "agent"\ntoken = "lt-agent-token-%d"\nmax_chats = 1\n' "$i" "$i"
  done
  printf '[[users]]\nname = "lt-supervisor"\nrole = "supervisor"\ntoken = "lt-supervisor-token"\n'
} > "$WORK/edge.toml"

echo "== edge: $ROOMS rooms, $((ROOMS * 4)) connections, $RATE msg/s for ${SECS}s"
RUST_LOG=warn "$EDGE" --config "$WORK/edge.toml" > "$WORK/edge.log" 2>&1 &
EPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done
/usr/bin/time -f "loadtest CPU: %U s user + %S s sys" "$LT" chat --target "127.0.0.1:$HTTP" --server edge --rooms "$ROOMS" --rate "$RATE" \
  --duration "${SECS}s" --server-pid "$EPID" || echo "(edge run exit $?)"
echo "edge CPU: $(ps -o cputime= -p "$EPID")"
kill "$EPID"; wait "$EPID" 2>/dev/null || true

cat > "$WORK/nats.conf" <<CONF
listen: 127.0.0.1:$NATS
max_connections: 100000
websocket { listen: "127.0.0.1:$NATSWS", no_tls: true, compression: false }
CONF
echo "== nats-server $(nats-server --version | awk '{print $NF}'): same pattern"
nats-server -c "$WORK/nats.conf" > "$WORK/nats.log" 2>&1 &
NPID=$!
sleep 1
/usr/bin/time -f "loadtest CPU: %U s user + %S s sys" "$LT" chat --target "127.0.0.1:$NATSWS" --server nats --rooms "$ROOMS" --rate "$RATE" \
  --duration "${SECS}s" --server-pid "$NPID" || echo "(nats run exit $?)"
echo "nats CPU: $(ps -o cputime= -p "$NPID")"
kill "$NPID"; wait "$NPID" 2>/dev/null || true
