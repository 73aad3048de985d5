#!/usr/bin/env bash
# Installs the peers and tools the benchmarks run beside the edge (Debian
# packages, and moto from PyPI for the s3 upload target), only what is missing.
#
#   bench/deps.sh
set -euo pipefail
need=()
for t in sipp:sip-tester kamailio:kamailio rtpengine:rtpengine-daemon nats-server:nats-server curl:curl python3:python3; do
  command -v "${t%%:*}" > /dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v moto_server > /dev/null || python3 -m pip install -q 'moto[server]'
