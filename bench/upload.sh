#!/usr/bin/env bash
# Recording upload throughput of the edge versus a plain loopback copy of the same
# bytes, in one run: http target (bench/sink.py) vs `curl -T` to the same sink, and
# s3 target (moto) vs a plain multipart upload of the same 50 MB parts to moto
# with curl (one plain PUT of the whole file shown for reference). Also the edge's
# CPU per uploaded GB and its peak RSS.
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
  # Peak RSS of the whole edge process over its life (spooling and upload).
  local hwm; hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  kill $pid; wait $pid 2>/dev/null || true
  awk -v a="$t1" -v b="$t0" -v s="$ts" -v c="$c1" -v cs="$cs" -v d="$c0" -v hz="$HZ" -v h="$hwm" 'BEGIN {printf "%.3f %.3f %.3f %.3f %d\n", a-b, a-s, (c-d)/hz, (c-cs)/hz, h}'
}

plain_http() { local t0; t0=$(now); curl -s -o /dev/null -T "$WORK/rec.wav" "http://127.0.0.1:$SINK/plain"; awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f", a-b}'; }
plain_s3() { local t0; t0=$(now); curl -s -o /dev/null -T "$WORK/rec.wav" "http://127.0.0.1:$S3/bench/plain.wav"; awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f", a-b}'; }
# The same server's plain multipart upload of the same 50 MB parts, one after
# another with curl (create, PUT each part, complete): what the s3 target is
# compared with (moto assembles parts slowly, so one plain PUT is no fair peer).
split -b 50000000 -d -a 3 "$WORK/rec.wav" "$WORK/part."
plain_s3_multipart() {
  local t0 url id n etag parts=""; t0=$(now); url="http://127.0.0.1:$S3/bench/plain-mp.wav"
  id=$(curl -s -X POST "$url?uploads" | sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
  n=0
  for f in "$WORK"/part.*; do
    n=$(( n + 1 ))
    etag=$(curl -s -D - -o /dev/null -T "$f" "$url?partNumber=$n&uploadId=$id" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" {print $2}')
    parts="$parts<Part><PartNumber>$n</PartNumber><ETag>$etag</ETag></Part>"
  done
  curl -s -o "$WORK/complete.xml" -X POST -H "Content-Type: application/xml" --data "<CompleteMultipartUpload>$parts</CompleteMultipartUpload>" "$url?uploadId=$id"
  grep -q "<CompleteMultipartUpload.*<ETag>" "$WORK/complete.xml" || { echo "plain multipart upload failed: $(head -c 300 "$WORK/complete.xml")" >&2; exit 1; }
  awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f", a-b}'
}

p_http=$(plain_http)
read -r t_http e_http cpu_http ucpu_http hwm_http < <(run_edge http "[storage.upload]
target = \"http\"
url = \"http://127.0.0.1:$SINK/recordings\"")
p_s3=$(plain_s3)
p_s3mp=$(plain_s3_multipart)
read -r t_s3 e_s3 cpu_s3 ucpu_s3 hwm_s3 < <(run_edge s3 "[storage.upload]
target = \"s3\"
endpoint = \"http://127.0.0.1:$S3\"
bucket = \"bench\"
access_key_id = \"test\"
secret_access_key = \"test\"")
report() { # name total_s upload_s plain_s cpu_total cpu_upload peak_rss_kb
  awk -v name="$1" -v mb="$MB" -v t="$2" -v e="$3" -v p="$4" -v cpu="$5" -v ucpu="$6" -v h="$7" 'BEGIN {
    printf "%s: upload %.1f MB/s (%.2f s; %.2f s with spooling), plain copy %.1f MB/s (%.2f s), ratio %.2f; edge CPU %.2f s/GB uploading, %.2f s/GB with spooling; edge peak RSS %.1f MB\n",
      name, mb/e, e, t, mb/p, p, p/e, ucpu/(mb/1000), cpu/(mb/1000), h/1024 }'
}
report http "$t_http" "$e_http" "$p_http" "$cpu_http" "$ucpu_http" "$hwm_http"
report s3 "$t_s3" "$e_s3" "$p_s3mp" "$cpu_s3" "$ucpu_s3" "$hwm_s3"
awk -v mb="$MB" -v p="$p_s3" 'BEGIN {printf "s3 (for reference) one plain PUT of the whole file: %.1f MB/s (%.2f s)\n", mb/p, p}'
echo "($MB MB file, 50 MB chunks, $(date -u +%F))"
