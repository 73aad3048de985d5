#!/usr/bin/env bash
# Highest call rate with zero failed calls: SIPp uac -> SUT -> SIPp uas (calls with
# SDP, immediate BYE), for the edge (B2BUA) and Kamailio (stateful proxy, tm, two
# children), stepping the rate up in the same run with the same SIPp load.
#
#   bench/cps.sh [SECONDS_PER_STEP] [RATES...]
#
# Needs: sipp (sip-tester), kamailio, a release build of edge (built if missing).
# Prints one line per step and a summary; everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
shift || true
RATES=${*:-"500 1000 1500 2000 3000 4000 5000 6000 8000"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
EDGE_BIN="$TARGET_DIR/release/edge"
[ -x "$EDGE_BIN" ] || cargo build --release -p edge
for t in sipp kamailio; do command -v $t >/dev/null || { echo "missing $t (apt-get install sip-tester kamailio)"; exit 1; }; done

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

UAS_PORT=15090; SUT_PORT=15060; UAC_PORT=15061
cat > "$WORK/edge.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:$SUT_PORT"]
max_calls = 100000
[media]
address = "127.0.0.1"
rtp_ports = "20000-59999"
[http]
listen = "127.0.0.1:18080"
[storage]
dir = "$WORK/data"
[[trunks]]
name = "sipp"
sources = ["127.0.0.1/32"]
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:$UAS_PORT"
TOML

start_sut() {
  case $1 in
    edge) "$EDGE_BIN" --config "$WORK/edge.toml" --log warn > "$WORK/edge.log" 2>&1 & echo $! > "$WORK/sut.pid" ;;
    kamailio)
      kamailio -f bench/kamailio.cfg -P "$WORK/kamailio.pid" -Y "$WORK" -w "$WORK" \
        -A "KAM_LISTEN=udp:127.0.0.1:$SUT_PORT" -A "KAM_TARGET=\"sip:127.0.0.1:$UAS_PORT\"" \
        -m 512 -M 16 > "$WORK/kamailio.log" 2>&1
      sleep 1; cp "$WORK/kamailio.pid" "$WORK/sut.pid" ;;
  esac
  sleep 1
}
stop_sut() {
  # SIGINT: the edge stops at once (SIGTERM would drain: after a failing step it
  # kept the port while its calls ended, and Kamailio then could not bind it).
  if [ "$1" = kamailio ]; then pkill -f "kamailio -f bench/kamailio.cfg" || true; else kill -INT "$(cat "$WORK/sut.pid")" 2>/dev/null || true; fi
  for _ in $(seq 50); do kill -0 "$(cat "$WORK/sut.pid")" 2>/dev/null || break; sleep 0.2; done
  sleep 1
}

# run_step SUT RATE -> prints "failed successful cpu_seconds"
run_step() {
  local sut=$1 rate=$2 calls=$(( $2 * STEP ))
  # (sipp -bg exits 99 after forking)
  ( cd "$WORK" && sipp -sn uas -i 127.0.0.1 -p $UAS_PORT -bg -nostdin > /dev/null 2>&1 ) || true
  sleep 0.3
  local pid; pid=$(cat "$WORK/sut.pid")
  local pids; pids=$( [ "$sut" = kamailio ] && pgrep -d, -f "kamailio -f bench/kamailio.cfg" || echo "$pid")
  local before; before=$(for p in ${pids//,/ }; do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}')
  ( cd "$WORK" && timeout $(( STEP * 4 + 60 )) sipp -sn uac -s service 127.0.0.1:$SUT_PORT -i 127.0.0.1 -p $UAC_PORT \
      -r "$rate" -m "$calls" -l $(( rate * 5 )) -nostdin -timeout $(( STEP * 3 + 30 ))s \
      -trace_stat -stf "$WORK/uac.csv" > /dev/null 2>&1 ) || true
  local after; after=$(for p in ${pids//,/ }; do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}')
  pkill -f "sipp -sn uas -i 127.0.0.1 -p $UAS_PORT" || true
  # The next step's UAS needs the port: wait for this one to be gone.
  while pgrep -f "sipp -sn uas -i 127.0.0.1 -p $UAS_PORT" > /dev/null; do sleep 0.2; done
  local hz; hz=$(getconf CLK_TCK)
  local last; last=$(tail -n 1 "$WORK/uac.csv")
  local head; head=$(head -n 1 "$WORK/uac.csv")
  col() { echo "$head" | tr ';' '\n' | grep -nx "$1" | cut -d: -f1; }
  local ok fail
  ok=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
  fail=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')")
  rm -f "$WORK/uac.csv"
  echo "$fail $ok $(awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN {printf "%.2f", (a-b)/hz}')"
}

declare -A BEST
for sut in edge kamailio; do
  start_sut $sut
  BEST[$sut]=0
  misses=0
  for rate in $RATES; do
    read -r fail ok cpu < <(run_step $sut "$rate")
    echo "$sut rate=$rate calls=$(( rate * STEP )) successful=$ok failed=$fail sut_cpu_s=$cpu"
    # The clean rate is the highest rate without a single failed call; stepping
    # stops after two failing steps in a row (one failure can be noise).
    if [ "$fail" = 0 ] && [ "$ok" = $(( rate * STEP )) ]; then BEST[$sut]=$rate; misses=0; else misses=$(( ${misses:-0} + 1 )); fi
    [ "${misses:-0}" -ge 2 ] && break
  done
  stop_sut $sut
done
echo "clean_rate edge=${BEST[edge]} kamailio=${BEST[kamailio]} (calls/s, ${STEP}s per step, $(date -u +%F))"
