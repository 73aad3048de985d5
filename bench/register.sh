#!/usr/bin/env bash
# Authenticated registrations per second with zero failures: `loadtest register`
# signs distinct agents in (each registration = REGISTER, 401 challenge, REGISTER
# with MD5 digest credentials, 200) against the edge and, in the same run with the
# same load, against Kamailio (registrar + auth, the password derived from the
# user: see bench/kamailio-registrar.cfg; usrloc in memory). And the edge's memory per registered agent: RSS growth while
# all AGENTS register, divided by AGENTS. (SIPp 3.6 cannot take a per-user
# password from an injection file, so loadtest is the generator for both.)
#
#   bench/register.sh [AGENTS] [SECONDS_PER_STEP] [RATES...]
#
# Needs: kamailio, release builds of edge and loadtest (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source bench/common.sh
AGENTS=${1:-100000}
STEP=${2:-10}
shift 2 || true
RATES=${*:-"1000 2000 3000 4000 5000 6000 8000"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
EDGE_BIN="$TARGET_DIR/release/edge"; LT="$TARGET_DIR/release/loadtest"
[ -x "$EDGE_BIN" ] && [ -x "$LT" ] || cargo build --release -p edge -p loadtest
command -v kamailio >/dev/null || { echo "missing kamailio (apt-get install kamailio)"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$WORK" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
SUT_PORT=15260; UAC_PORT=15261; HTTP=18480

# AGENTS agents 1000000.. with passwords secret-{id}, as edge config.
python3 - "$WORK" "$AGENTS" "$SUT_PORT" "$HTTP" <<'PY'
import os, sys
work, n, port, http = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
users = [(str(1000000 + i), f"secret-{1000000 + i}") for i in range(n)]
with open(f"{work}/edge.toml", "w") as f:
    f.write(f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\nrate_limit = 0\nauth_max_failures = 0\n'
            f'[media]\naddress = "127.0.0.1"\nrtp_ports = "20000-20999"\n'
            f'[http]\nlisten = "127.0.0.1:{http}"\n[storage]\ndir = "{work}/data"\n')
    for u, p in users:
        f.write(f'[[agents]]\nid = "{u}"\npassword = "{p}"\n')
PY

start_sut() {
  case $1 in
    edge)
      "$EDGE_BIN" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 & echo $! > "$WORK/sut.pid"
      for _ in $(seq 300); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.2; done
      # Another program on the ports would answer in its place: measure nothing then.
      sleep 1; kill -0 "$(cat "$WORK/sut.pid")" 2>/dev/null || { echo "the edge did not start:"; tail -5 "$WORK/edge.log"; exit 1; } ;;
    kamailio)
      kamailio -f bench/kamailio-registrar.cfg -P "$WORK/kamailio.pid" -Y "$WORK" -w "$WORK" \
        -A "KAM_LISTEN=udp:127.0.0.1:$SUT_PORT" \
        -m 1024 -M 16 > "$WORK/kamailio.log" 2>&1
      sleep 2; cp "$WORK/kamailio.pid" "$WORK/sut.pid" ;;
  esac
  sleep 1
}
stop_sut() {
  if [ "$1" = kamailio ]; then pkill -f "kamailio -f bench/kamailio-registrar.cfg" || true; else kill "$(cat "$WORK/sut.pid")" 2>/dev/null || true; fi
  sleep 1
}
sut_pids() { [ "$1" = kamailio ] && pgrep -f "kamailio -f bench/kamailio-registrar.cfg" || cat "$WORK/sut.pid"; }

# run_step SUT RATE COUNT -> "failed successful cpu_seconds achieved_rate"
run_step() {
  local sut=$1 rate=$2 n=$3
  local pids; pids=$(sut_pids "$sut")
  local before; before=$(ticks $pids)
  timeout $(( n / rate * 4 + 120 )) "$LT" register --target 127.0.0.1:$SUT_PORT --rate "$rate" --count "$n" \
    --first 1000000 --password 'secret-{user}' --local 127.0.0.1:$UAC_PORT --max-failed 1000000000 \
    > "$WORK/reg.json" 2>/dev/null || true
  local after; after=$(ticks $pids)
  local ok fail
  ok=$(json "$WORK/reg.json" "['registrations']['ok']")
  fail=$(json "$WORK/reg.json" "['registrations']['failed']")
  local achieved; achieved=$(json "$WORK/reg.json" "['registrations']['ok'] / d['elapsed_s']")
  echo "$fail $ok $(awk -v a="$after" -v b="$before" -v hz="$HZ" 'BEGIN {printf "%.2f", (a-b)/hz}') $(printf '%.0f' "$achieved")"
}

declare -A BEST CPU
for sut in edge kamailio; do
  start_sut $sut
  # First every agent registers once (at 2000/s): the edge's memory per
  # registered agent is its RSS growth over it. Both SUTs then hold AGENTS
  # registrations while the rate steps re-register them.
  # The baseline is taken once start-up has settled: parsing a config of AGENTS
  # agents leaves ~150 MB freed that the allocator returns within its 10 s decay.
  [ "$sut" = edge ] && sleep 15
  pid=$(sut_pids $sut | head -n 1); r0=$(rss_kb "$pid")
  read -r fail ok cpu achieved < <(run_step $sut 2000 "$AGENTS")
  if [ "$sut" = edge ]; then
    # The registrations' transactions linger for Timer J (32 s): measure after.
    sleep 35
    r1=$(rss_kb "$pid"); regs=$(curl -s "http://127.0.0.1:$HTTP/metrics" | awk '/^edge_sip_registrations / {print $2}')
    echo "edge memory: $AGENTS agents registered (failed=$fail, bindings=$regs), RSS $r0 -> $r1 KiB = $(awk -v a="$r1" -v b="$r0" -v n="$AGENTS" 'BEGIN {printf "%.0f", (a-b)*1024/n}') bytes per registration"
  else
    echo "kamailio: $AGENTS agents registered (failed=$fail)"
  fi
  BEST[$sut]=0; CPU[$sut]="-"; misses=0
  for rate in $RATES; do
    n=$(( rate * STEP )); [ "$n" -gt "$AGENTS" ] && n=$AGENTS
    read -r fail ok cpu achieved < <(run_step $sut "$rate" "$n")
    per=$(awk -v c="$cpu" -v n="$ok" 'BEGIN {if (n > 0) printf "%.1f", c / n * 1e6; else print "-"}')
    echo "$sut rate=$rate registrations=$n successful=$ok failed=$fail achieved=${achieved}/s sut_cpu_s=$cpu cpu_per_registration_us=$per"
    # Clean: nothing failed and the SUT kept pace (registrations done at 90 % of
    # the offered rate or better, retransmissions not carrying it along).
    if [ "$fail" = 0 ] && [ "$ok" = "$n" ] && [ "$achieved" -ge $(( rate * 9 / 10 )) ]; then BEST[$sut]=$rate; CPU[$sut]=$per; misses=0; else misses=$(( misses + 1 )); fi
    [ "$misses" -ge 2 ] && break
  done
  stop_sut $sut
done
echo "clean_rate edge=${BEST[edge]} (${CPU[edge]} us CPU each) kamailio=${BEST[kamailio]} (${CPU[kamailio]} us) registrations/s, ${STEP}s per step, $(date -u +%F)"
