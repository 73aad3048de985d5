# Helpers shared by the bench scripts (sourced, not run).

HZ=$(getconf CLK_TCK)
# Release builds of edge and loadtest (built if missing) in EDGE_BIN and LT, and
# nats-server (installed if missing): release_bins_and_nats.
release_bins_and_nats() {
  local dir=${CARGO_TARGET_DIR:-target}
  EDGE_BIN="$dir/release/edge"
  LT="$dir/release/loadtest"
  [ -x "$EDGE_BIN" ] && [ -x "$LT" ] || cargo build --release -p edge -p loadtest
  command -v nats-server > /dev/null || bench/deps.sh
}
# Three nats-servers with JetStream in one cluster, client ports NATS_PORTS[0..2],
# route ports ROUTE_PORTS[0..2], data and logs under $WORK (data wiped first):
# start_nats. Sets NATS_PIDS, and NATS_URLS (a TOML array for `[cluster] nats`).
start_nats() {
  local routes i
  routes=$(printf 'nats://127.0.0.1:%s,' "${ROUTE_PORTS[@]}"); routes=${routes%,}
  NATS_URLS=$(printf '"nats://127.0.0.1:%s", ' "${NATS_PORTS[@]}"); NATS_URLS="[${NATS_URLS%, }]"
  rm -rf "$WORK"/js-*
  NATS_PIDS=()
  for i in 0 1 2; do
    nats-server -a 127.0.0.1 -p "${NATS_PORTS[$i]}" -n "nats-$i" -js -sd "$WORK/js-$i" \
      --cluster_name bench --cluster "nats://127.0.0.1:${ROUTE_PORTS[$i]}" --routes "$routes" \
      -l "$WORK/nats-$i.log" &
    NATS_PIDS+=($!)
  done
}
# Stop processes with signal SIG and wait for them (at most 10 s each, then
# SIGKILL): stop_pids SIG PID...
stop_pids() {
  local sig=$1 p; shift
  kill "-$sig" "$@" 2>/dev/null || true
  for p in "$@"; do timeout 10 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true; done
}
# CPU ticks (user + sys) of the given processes, summed; a gone process counts 0.
ticks() { local s=0; for p in "$@"; do s=$(( s + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo $s; }
# Resident memory of a process in KiB.
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Cores used between two samples: cores TICKS1 TICKS0 WALL1 WALL0 (wall in seconds).
cores() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v w1="$3" -v w0="$4" 'BEGIN {printf "%.3f", (a-b)/hz/(w1-w0)}'; }
# A field of a JSON file: json FILE "['calls']['answered']" ("?" when missing).
json() { python3 -c "import json,sys; d=json.load(open('$1')); print(eval('d'+sys.argv[1]))" "$2" 2>/dev/null || echo "?"; }
# A metric of the edge at http://127.0.0.1:$HTTP (no labels): metric NAME.
metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
# POST BODY to /api/v1/calls/{id}/SUB for every live call, TIMES times each, 32
# requests in flight, with token $TOKEN at $HTTP: post_all SUB BODY TIMES STATUS.
# Prints on stderr how many were requested and how many got STATUS.
post_all() {
  python3 - "$HTTP" "$TOKEN" "$1" "$2" "$3" "$4" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, token, sub, body, times, want = sys.argv[1:7]
base = f"http://127.0.0.1:{port}/api/v1/calls"
h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
calls = json.load(urllib.request.urlopen(urllib.request.Request(base, headers=h)))["calls"]
def post(c):
    r = urllib.request.Request(f"{base}/{c['id']}/{sub}", data=body.encode(), headers=h, method="POST")
    try:
        return urllib.request.urlopen(r).status
    except Exception as e:
        return str(e)
with ThreadPoolExecutor(32) as ex:
    res = list(ex.map(post, [c for c in calls for _ in range(int(times))]))
print(f"{sub} requested={len(res)} created={sum(1 for r in res if r == int(want))}", file=sys.stderr)
PY
}
