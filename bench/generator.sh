#!/usr/bin/env bash
# Generator efficiency: the highest zero-failure call rate of `loadtest call` and of
# SIPp `uac`, each against the same SIPp `uas`, stepping the rate up in one run
# (calls with SDP, immediate BYE, UDP, loopback).
#
#   bench/generator.sh [SECONDS_PER_STEP] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
shift || true
RATES=${*:-"2000 4000 5000 6000 7000 8000 10000"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LT="$TARGET_DIR/release/loadtest"
[ -x "$LT" ] || cargo build --release -p loadtest
command -v sipp >/dev/null || { echo "missing sipp (apt-get install sip-tester)"; exit 1; }
WORK=$(mktemp -d)
trap 'pkill -f "sipp -sn uas -i 127.0.0.1 -p 16090" 2>/dev/null || true; rm -rf "$WORK"' EXIT
UAS=16090

cpu_of() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

start_uas() {
  ( cd "$WORK" && sipp -sn uas -i 127.0.0.1 -p $UAS -bg -nostdin > /dev/null 2>&1 ) || true
  sleep 0.3
}
stop_uas() {
  pkill -f "sipp -sn uas -i 127.0.0.1 -p $UAS" || true
  while pgrep -f "sipp -sn uas -i 127.0.0.1 -p $UAS" > /dev/null; do sleep 0.2; done
}

declare -A BEST=([loadtest]=0 [sipp]=0)
declare -A MISSES=([loadtest]=0 [sipp]=0)
for rate in $RATES; do
  calls=$(( rate * STEP ))
  for gen in loadtest sipp; do
    [ "${MISSES[$gen]}" -ge 2 ] && continue
    start_uas
    if [ $gen = loadtest ]; then
      set +e
      /usr/bin/time -f "%U %S" -o "$WORK/time" "$LT" call --target 127.0.0.1:$UAS --rate "$rate" --calls "$calls" \
        --concurrency $(( rate * 5 )) --quiet > "$WORK/lt.json" 2> "$WORK/lt.err"
      set -e
      ok=$(python3 -c "import json;d=json.load(open('$WORK/lt.json'));print(d['calls']['answered'])" 2>/dev/null || echo 0)
      failed=$(( calls - ok ))
    else
      set +e
      ( cd "$WORK" && /usr/bin/time -f "%U %S" -o "$WORK/time" sipp -sn uac 127.0.0.1:$UAS -i 127.0.0.1 -p 16061 -r "$rate" -m "$calls" \
          -l $(( rate * 5 )) -nostdin -timeout $(( STEP * 3 + 30 ))s -trace_stat -stf "$WORK/uac.csv" > /dev/null 2>&1 )
      set -e
      head=$(head -n1 "$WORK/uac.csv"); last=$(tail -n1 "$WORK/uac.csv")
      col() { echo "$head" | tr ';' '\n' | grep -nx "$1" | cut -d: -f1; }
      ok=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
      failed=$(( calls - ok ))
      rm -f "$WORK/uac.csv"
    fi
    cpu=$(tail -n1 "$WORK/time" | awk '{printf "%.2f", $1+$2}')
    stop_uas
    echo "$gen rate=$rate calls=$calls successful=$ok failed=$failed generator_cpu_s=$cpu"
    if [ "$failed" = 0 ]; then BEST[$gen]=$rate; MISSES[$gen]=0; else MISSES[$gen]=$(( ${MISSES[$gen]} + 1 )); fi
  done
done
echo "clean_rate loadtest=${BEST[loadtest]} sipp=${BEST[sipp]} (calls/s, ${STEP}s per step, $(date -u +%F))"
