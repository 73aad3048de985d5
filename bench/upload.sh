#!/usr/bin/env bash
# Recording upload throughput of the edge versus a plain loopback copy of the same
# bytes, in one run: http target (bench/sink.py) vs `curl -T` to the same sink, and
# s3 target (moto) vs one plain PUT of the file to moto with curl. Also the edge's
# CPU per uploaded GB.
#
#   bench/upload.sh [MB]
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-500}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
EDGE="$TARGET_DIR/release/edge"
[ -x "$EDGE" ] || cargo build --release -p edge
for t in curl moto_server python3; do command -v $t > /dev/null || { echo "missing $t"; exit 1; }; done
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
SINK=18190; S3=18191; HTTP=18192
source bench/common.sh
python3 bench/sink.py $SINK & 
moto_server -H 127.0.0.1 -p $S3 > /dev/null 2>&1 &
head -c $(( MB * 1000000 )) /dev/urandom > "$WORK/rec.wav"
for _ in $(seq 100); do curl -s -o /dev/null -X PUT -H "Content-Length: 0" "http://127.0.0.1:$S3/bench" && break; sleep 0.2; done
python3 - "$S3" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/bench", method="PUT", data=b"")
urllib.request.urlopen(req)
PY
now() { date +%s.%N; }

run_edge() { # $1 = target lines; prints "seconds cpu_seconds"
  local name=$1; shift
  mkdir -p "$WORK/$name/inbox"
  cat > "$WORK/$name.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:18160"]
[http]
listen = "127.0.0.1:$HTTP"
[storage]
dir = "$WORK/$name"
chunk_size = "50MB"
$*
TOML
  "$EDGE" --config "$WORK/$name.toml" --log warn > "$WORK/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" > /dev/null && break; sleep 0.1; done
  cp "$WORK/rec.wav" "$WORK/$name/inbox/rec.wav"
  local t0 c0; t0=$(now); c0=$(ticks $pid)
  echo '{"recording_id": "rec"}' > "$WORK/$name/inbox/.rec.json" && mv "$WORK/$name/inbox/.rec.json" "$WORK/$name/inbox/rec.json"
  # Spooled (copied in, hashed, journaled): the upload itself starts here.
  until [ -f "$WORK/$name/spool/rec/journal.json" ]; do sleep 0.01; done
  local ts cs; ts=$(now); cs=$(ticks $pid)
  until curl -s "http://127.0.0.1:$HTTP/metrics" | grep -q '^edge_recordings_uploaded_total 1$'; do sleep 0.05; done
  local t1 c1; t1=$(now); c1=$(ticks $pid)
  kill $pid; wait $pid 2>/dev/null || true
  awk -v a="$t1" -v b="$t0" -v s="$ts" -v c="$c1" -v cs="$cs" -v d="$c0" -v hz="$HZ" 'BEGIN {printf "%.3f %.3f %.3f %.3f\n", a-b, a-s, (c-d)/hz, (c-cs)/hz}'
}

plain_http() { local t0; t0=$(now); curl -s -o /dev/null -T "$WORK/rec.wav" "http://127.0.0.1:$SINK/plain"; awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f", a-b}'; }
plain_s3() { local t0; t0=$(now); curl -s -o /dev/null -T "$WORK/rec.wav" "http://127.0.0.1:$S3/bench/plain.wav"; awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f", a-b}'; }

p_http=$(plain_http)
read -r t_http e_http cpu_http ucpu_http < <(run_edge http "[storage.upload]
target = \"http\"
url = \"http://127.0.0.1:$SINK/recordings\"")
p_s3=$(plain_s3)
read -r t_s3 e_s3 cpu_s3 ucpu_s3 < <(run_edge s3 "[storage.upload]
target = \"s3\"
endpoint = \"http://127.0.0.1:$S3\"
bucket = \"bench\"
access_key_id = \"test\"
secret_access_key = \"test\"")
report() { # name total_s upload_s plain_s cpu_total cpu_upload
  awk -v name="$1" -v mb="$MB" -v t="$2" -v e="$3" -v p="$4" -v cpu="$5" -v ucpu="$6" 'BEGIN {
    printf "%s: upload %.1f MB/s (%.2f s; %.2f s with spooling), plain copy %.1f MB/s (%.2f s), ratio %.2f; edge CPU %.2f s/GB uploading, %.2f s/GB with spooling\n",
      name, mb/e, e, t, mb/p, p, p/e, ucpu/(mb/1000), cpu/(mb/1000) }'
}
report http "$t_http" "$e_http" "$p_http" "$cpu_http" "$ucpu_http"
report s3 "$t_s3" "$e_s3" "$p_s3" "$cpu_s3" "$ucpu_s3"
echo "($MB MB file, 50 MB chunks, $(date -u +%F))"
